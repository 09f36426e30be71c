"""Does more calibration data recover litert-int8 accuracy? Best preset on the full sets, one backbone and size.

    python bench/int8_calibration.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --size 128 --per-class 200

Converts the backbone to full-integer int8 with the first ``--per-class`` training images of each class
as calibration data (the runtime's default is 30), extracts train and test (original and mirrored) with
it, trains the ``best`` preset head and prints the test accuracy. Compare with `python -m lib train
--protocol best --runtime tf|litert-int8`. Nothing is written to the cache.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, CacheLayout, data_args  # (puts the project on sys.path)


def main() -> int:
    """Convert, extract, train, print."""
    parser = data_args(argparse.ArgumentParser(), size_flag="--size", cache_dir=False)
    parser.add_argument("--per-class", type=int, default=200)
    args = parser.parse_args()

    from lib.data.sources import load_dataset, subset_indices
    from lib.models.protocols import PROTOCOLS
    from lib.models.specs import resolve_backbone
    from lib.pipeline.features import extract_features
    from lib.pipeline.training import FeatureBlock, fit_head
    from lib.process import machine_info
    from lib.runtimes import litert

    m = machine_info()
    print(
        f"machine: {m['cpu']}, {m['cores']} cores; calibration: first {args.per_class} training images per class",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        ds = load_dataset(args.source, CacheLayout(ROOT / "cache"))
        spec = resolve_backbone(args.backbone)
        calibration = ds.images("train")[subset_indices(ds.labels("train"), args.per_class)]
        t0 = time.perf_counter()
        from lib.runtimes.backbones import load_backbone

        flatbuffer = litert.convert_to_flatbuffer(
            spec, load_backbone(spec), args.size, "int8", tuple(ds.image_shape), calibration
        )
        path = Path(tmp) / "int8.tflite"
        path.write_bytes(flatbuffer)
        print(f"converted with {len(calibration):,} calibration images in {time.perf_counter() - t0:.1f}s", flush=True)
        model = litert.LiteRTBackbone(spec, path, "int8", args.size, tuple(ds.image_shape))  # type: ignore[arg-type]
        blocks = {}
        for split in ("train", "test"):
            images = ds.images(split)
            parts = {
                (args.size, view): extract_features(model, images, args.size, view == "flip", batch_size=64)
                for view in ("original", "flip")
            }
            labels = ds.labels(split)
            blocks[split] = FeatureBlock(parts, labels, np.arange(len(labels)), 0.0, 0)
        best = PROTOCOLS["best"]
        fit = fit_head(
            blocks["train"], blocks["test"], (args.size,), best.train_views, best.tta, best.head, len(ds.classes)
        )
        acc = float((fit.probs.argmax(1) == blocks["test"].labels).mean())
        print(f"best preset, litert-int8 with {args.per_class}/class calibration: test accuracy {acc:.2%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
