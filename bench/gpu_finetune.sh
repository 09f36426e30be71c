#!/usr/bin/env bash
# Fine-tune the best candidate on the full shared CIFAR-10 copy on one GPU, in under 8 minutes, and print
# test accuracy, epoch time and images/s. One prepared run: GPU time is scarce.
#
#   bash bench/gpu_finetune.sh                 # on a machine with a GPU (exits 2 if TensorFlow sees none)
#   DRY_RUN=1 bash bench/gpu_finetune.sh       # the same steps on CPU: 20 images per class, 1 epoch, 64 px
#
# Settings (environment): BACKBONE (default ../shared/models/efficientnet_lite0_224_feature_vector), SIZE (224),
# EPOCHS (6), BATCH (128), LR (0.0003 peak, after 0.5 epoch of warm-up, then cosine), SOURCE, CACHE (a fresh folder
# under /tmp), DEADLINE (seconds for the training command, default 450: the whole script stays under 8 minutes).
# Mixed precision and XLA are on with a GPU (--mixed-precision/--xla auto); set MP=off or XLA=off if either fails.
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE=${SOURCE:-../shared/data/cifar10-jpeg.tar.gz}
BACKBONE=${BACKBONE:-../shared/models/efficientnet_lite0_224_feature_vector}
SIZE=${SIZE:-224}; EPOCHS=${EPOCHS:-6}; BATCH=${BATCH:-128}; LR=${LR:-0.0003}
MP=${MP:-auto}; XLA=${XLA:-auto}; DEADLINE=${DEADLINE:-450}
CACHE=${CACHE:-$(mktemp -d /tmp/tlx-gpu-finetune.XXXXXX)}
LIMIT_ARGS=()
started=$(date +%s)

echo "== machine"
python - <<'PY'
import os, platform
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
print(f"python {platform.python_version()}, tensorflow {tf.__version__}, {os.cpu_count()} CPU cores, GPUs: {[g.name for g in gpus] or 'none'}")
if not gpus and os.environ.get("DRY_RUN") != "1":
    raise SystemExit("error: TensorFlow sees no GPU (check the driver with nvidia-smi, and that tensorflow[and-cuda] is installed); "
                     "DRY_RUN=1 runs the same steps on CPU")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

if [ "${DRY_RUN:-0}" = "1" ]; then
  echo "== DRY RUN on CPU: 20 images per class, 1 epoch, 64 px, batch 32"
  SIZE=64; EPOCHS=1; BATCH=32; LIMIT_ARGS=(--limit 20); DEADLINE=1800
fi

echo "== fine-tuning $(basename "$BACKBONE") at ${SIZE}px, $EPOCHS epochs, batch $BATCH, peak lr $LR (cache $CACHE)"
timeout "$DEADLINE" python -m lib train --source "$SOURCE" --backbone "$BACKBONE" --image-size "$SIZE" "${LIMIT_ARGS[@]}" \
  --finetune --finetune-epochs "$EPOCHS" --finetune-batch-size "$BATCH" --finetune-lr "$LR" --finetune-image-size "$SIZE" \
  --mixed-precision "$MP" --xla "$XLA" --cache-dir "$CACHE" --json > "$CACHE/result.json"

python - "$CACHE/result.json" "$started" <<'PY'
import json, sys, time
r = json.load(open(sys.argv[1]))
ft = r.get("finetune", {})
epochs = ft.get("epoch_seconds") or []
print("== result (CIFAR-10 (JPEG q75 copy), test split)")
print(f"test accuracy        {r['test_accuracy']:.2%}   (frozen-feature linear head first: {ft.get('frozen_head_test_accuracy', float('nan')):.2%})")
print(f"epochs               {len(epochs)} x {ft.get('image_size')} px, batch {ft.get('batch_size')}, GPU {ft.get('gpu')}, "
      f"mixed precision {ft.get('mixed_precision')}, XLA {ft.get('xla')}")
print(f"epoch time           {', '.join(f'{s:.1f}s' for s in epochs)}")
print(f"training images/s    {ft.get('images_per_second')}")
print(f"run id               {r['run_id']}")
print(f"wall time            {time.time() - float(sys.argv[2]):.0f}s for the whole script")
PY
