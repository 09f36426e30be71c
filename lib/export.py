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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib.atomic import atomic_dir, atomic_path
from lib.errors import RunError


def export_run(cache_dir: Path | str, run_id: str, out: Path | str) -> Path:
    """Write the run's full model to ``out`` (atomically) and return that path."""
    from lib.backbones import load_backbone, resolve_backbone
    from lib.runs import MODEL_DIR, load_run

    run = load_run(cache_dir, run_id)
    m = run.manifest
    out = Path(out)
    if m.get("finetuned"):
        stored = run.path / MODEL_DIR
        if not (stored / "saved_model.pb").exists():
            raise RunError(f"Run {run_id} fine-tuned its backbone but holds no saved model (made by an older version); train it again to export it.")
        module = None
    else:
        spec = resolve_backbone(m["backbone"])
        if spec.kind == "tflite":
            raise RunError("Export needs a SavedModel or TF Hub backbone; a .tflite backbone cannot be embedded in a SavedModel.")
        if spec.identity() != m["backbone_identity"]:
            raise RunError(f"The backbone at {m['backbone']} is not the one run {run_id} was trained with (its contents changed).")
        module = _frozen_module(load_backbone(spec, cache_dir), run, m["image_sizes"], bool(m.get("tta")))
    if out.exists():
        shutil.rmtree(out)
    with atomic_dir(out) as tmp:
        if module is None:
            shutil.copytree(run.path / MODEL_DIR, tmp, dirs_exist_ok=True)
        else:
            save_module(module, tmp)
        (tmp / "class_names.txt").write_text("\n".join(run.classes) + "\n")
        meta = {k: m.get(k) for k in ("run_id", "label", "backbone", "image_sizes", "tta", "classes", "metrics", "head", "finetuned")}
        (tmp / "run_manifest.json").write_text(json.dumps(meta, indent=2, default=str))
    return out


def probability_module(fn: Callable[[Any], Any], classes: list[str], sizes: list[int], keep: Any) -> Any:
    """A tf.Module: ``__call__`` maps uint8 ``[N, H, W, 3]`` images to probabilities with ``fn``.

    ``keep`` holds whatever owns the variables ``fn`` uses (a Keras model, a backbone), so
    they are saved with it; ``class_names`` and ``image_sizes`` travel as variables.
    """
    import tensorflow as tf

    class ProbabilityModel(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="transfer_model")
            self.keep = keep
            self.class_names = tf.Variable(classes, trainable=False)
            self.image_sizes = tf.Variable(sizes, trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        def __call__(self, images: Any) -> Any:
            return fn(images)

    return ProbabilityModel()


def save_module(module: Any, path: Path | str) -> None:
    """Save a :func:`probability_module` as a SavedModel with a ``serving_default`` signature."""
    import tensorflow as tf

    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})


def _frozen_module(backbone: Any, run: Any, sizes: list[int], tta: bool) -> Any:
    import tensorflow as tf

    forward = backbone._forward
    mean, scale = tf.constant(run.head.mean), tf.constant(run.head.scale)
    weights = [tf.Variable(w, trainable=False) for w in run.head.weights]

    def probs_of(images: Any) -> Any:
        x = tf.cast(images, tf.float32) / 255.0
        views = [x, tf.image.flip_left_right(x)] if tta else [x]
        probs = []
        for v in views:
            feats = tf.concat([forward(tf.image.resize(v, (s, s), method="bilinear")) for s in sizes], axis=1)
            h = (feats - mean) / scale
            for i in range(0, len(weights) - 2, 2):
                h = tf.nn.relu(tf.matmul(h, weights[i]) + weights[i + 1])
            probs.append(tf.nn.softmax(tf.matmul(h, weights[-2]) + weights[-1]))
        return tf.add_n(probs) / float(len(probs))

    return probability_module(probs_of, list(run.classes), list(sizes), {"backbone": backbone.module, "head": weights})


def zip_folder(folder: Path | str, target: Path | str) -> Path:
    """Zip ``folder`` into ``target`` atomically (for downloads)."""
    folder, target = Path(folder), Path(target)
    with atomic_path(target, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(folder.rglob("*")):
                if p.is_file():
                    zf.write(p, Path(folder.name) / p.relative_to(folder))
    return target
