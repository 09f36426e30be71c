"""Export a run as one self-contained SavedModel: raw uint8 images in, class probabilities out.

The export bundles the backbone, the resize, the head and (if the run used it) flip
test-time augmentation. It needs only TensorFlow to reload, not this project:

    import tensorflow as tf
    model = tf.saved_model.load("cache/exports/<run-id>")
    probs = model(images_uint8)                 # [N, H, W, 3] uint8, any H and W
    names = [n.decode() for n in model.class_names.numpy()]
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

from lib.atomic import atomic_dir, atomic_path
from lib.errors import RunError


def export_run(cache_dir: Path | str, run_id: str, out: Path | str) -> Path:
    """Write the run's full model to ``out`` (atomically) and return that path."""
    import tensorflow as tf

    from lib.backbones import load_backbone, resolve_backbone
    from lib.runs import load_run

    run = load_run(cache_dir, run_id)
    m = run.manifest
    spec = resolve_backbone(m["backbone"])
    if m.get("finetuned"):
        raise RunError("This run fine-tuned its backbone, and its fine-tuned weights are not stored; export a frozen-feature run instead.")
    if spec.kind == "tflite":
        raise RunError("Export needs a SavedModel or TF Hub backbone; a .tflite backbone cannot be embedded in a SavedModel.")
    if spec.identity() != m["backbone_identity"]:
        raise RunError(f"The backbone at {m['backbone']} is not the one run {run_id} was trained with (its contents changed).")
    backbone = load_backbone(spec, cache_dir)
    module = _ExportModule(backbone, run, m["image_sizes"], bool(m.get("tta")))
    signature = module.__call__.get_concrete_function(tf.TensorSpec([None, None, None, 3], tf.uint8, name="images"))
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    with atomic_dir(out) as tmp:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": signature})
        (tmp / "class_names.txt").write_text("\n".join(run.classes) + "\n")
        meta = {k: m.get(k) for k in ("run_id", "label", "backbone", "image_sizes", "tta", "classes", "metrics", "head")}
        (tmp / "run_manifest.json").write_text(json.dumps(meta, indent=2, default=str))
    return out


def _ExportModule(backbone: Any, run: Any, sizes: list[int], tta: bool) -> Any:  # noqa: N802 - a class factory
    import tensorflow as tf

    class ExportModule(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="transfer_model")
            self.backbone = backbone.module
            self._forward = backbone._forward
            self.mean = tf.constant(run.head.mean)
            self.scale = tf.constant(run.head.scale)
            self.head_weights = [tf.Variable(w, trainable=False) for w in run.head.weights]
            self.class_names = tf.Variable(run.classes, trainable=False)
            self.image_sizes = tf.Variable(sizes, trainable=False)

        @tf.function
        def __call__(self, images: Any) -> Any:
            x = tf.cast(images, tf.float32) / 255.0
            views = [x, tf.image.flip_left_right(x)] if tta else [x]
            probs = []
            for v in views:
                feats = tf.concat([self._forward(tf.image.resize(v, (s, s), method="bilinear")) for s in sizes], axis=1)
                h = (feats - self.mean) / self.scale
                for i in range(0, len(self.head_weights) - 2, 2):
                    h = tf.nn.relu(tf.matmul(h, self.head_weights[i]) + self.head_weights[i + 1])
                logits = tf.matmul(h, self.head_weights[-2]) + self.head_weights[-1]
                probs.append(tf.nn.softmax(logits))
            return tf.add_n(probs) / float(len(probs))

    return ExportModule()


def zip_folder(folder: Path | str, target: Path | str) -> Path:
    """Zip ``folder`` into ``target`` atomically (for downloads)."""
    folder, target = Path(folder), Path(target)
    with atomic_path(target, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    zf.write(p, Path(folder.name) / p.relative_to(folder))
    return target
