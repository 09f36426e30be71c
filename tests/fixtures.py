"""Tiny fixtures the tests make themselves: CIFAR-style archives, image folders, models.

make_cifar_tar(tmp_path / "cifar-10-python.tar.gz", per_class=6)
make_image_folder(tmp_path / "imgs")                    # mixed sizes/modes + one corrupt file
make_feature_savedmodel(tmp_path / "tiny_fv")           # TF Hub feature-vector interface
make_tflite(tmp_path / "tiny.tflite", quantized=True)
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def class_images(label: int, n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Synthetic images whose colour and stripes depend on the class, so a head can learn them."""
    rng = np.random.default_rng(seed * 100 + label)
    base = np.zeros((n, size, size, 3), np.float32)
    base[..., label % 3] = 120 + 12 * label
    stripes = (np.arange(size) // (2 + label % 4)) % 2
    base[:, :, : size // 2, (label + 1) % 3] += 80 * stripes[:, None]
    noise = rng.normal(0, 20, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def make_cifar_tar(path: Path, per_class: int = 6, test_per_class: int = 3) -> Path:
    """A ``cifar-10-python.tar.gz`` in the official pickle layout, with 5 train batches."""

    def batch(imgs: np.ndarray, labels: np.ndarray) -> bytes:
        data = imgs.transpose(0, 3, 1, 2).reshape(len(imgs), -1)
        return pickle.dumps({b"data": data, b"labels": labels.tolist(), b"batch_label": b"x"})

    train_x = np.concatenate([class_images(c, per_class) for c in range(10)])
    train_y = np.repeat(np.arange(10), per_class)
    order = np.random.default_rng(0).permutation(len(train_y))
    train_x, train_y = train_x[order], train_y[order]
    test_x = np.concatenate([class_images(c, test_per_class, seed=1) for c in range(10)])
    test_y = np.repeat(np.arange(10), test_per_class)
    files = {f"data_batch_{i + 1}": batch(train_x[i::5], train_y[i::5]) for i in range(5)}
    files["test_batch"] = batch(test_x, test_y)
    files["batches.meta"] = pickle.dumps({b"label_names": [c.encode() for c in CLASSES]})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def make_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog", "frog"),
    per_class: int = 8,
    test_per_class: int = 4,
    corrupt: bool = True,
    mixed: bool = True,
) -> Path:
    """``<split>/<class>/*.png|jpg`` with mixed sizes and modes (L, RGBA, P) and one corrupt file."""
    from PIL import Image

    modes = ["RGB", "L", "RGBA", "P"] if mixed else ["RGB"]
    for split, n in (("train", per_class), ("test", test_per_class)):
        for c, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            imgs = class_images(c, n, size=32, seed=0 if split == "train" else 1)
            for i, arr in enumerate(imgs):
                img = Image.fromarray(arr)
                if mixed and i % 3 == 1:
                    img = img.resize((48, 40))
                mode = modes[i % len(modes)]
                img = img.convert(mode)
                ext = "jpg" if mode in ("RGB", "L") and i % 2 == 0 else "png"
                img.save(folder / f"{i:04d}.{ext}")
    if corrupt:
        (root / "train" / classes[0] / "9999.jpg").write_bytes(b"this is not a jpeg")
    return root


def make_feature_savedmodel(path: Path, dim: int = 16, seed: int = 0) -> Path:
    """A tiny random SavedModel with the TF Hub reusable feature-vector interface.

    Like modules on tfhub.dev it exposes ``__call__(images, training=False)``, a
    ``serving_default`` signature returning ``{"feature_vector": ...}``, and the
    ``variables``/``trainable_variables`` lists that ``hub.KerasLayer`` fine-tunes.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    kernel = tf.Variable(rng.normal(0, 0.5, (3, 3, 3, dim)).astype(np.float32), name="kernel")
    bias = tf.Variable(np.zeros(dim, np.float32), name="bias")

    def features(images: Any) -> Any:
        h = tf.nn.relu(tf.nn.conv2d(images, kernel, strides=2, padding="SAME") + bias)
        return tf.reduce_mean(h, axis=[1, 2])

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([], tf.bool)])
    def call(images: Any, training: Any = False) -> Any:
        return features(images)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def serve(inputs: Any) -> Any:
        return {"feature_vector": features(inputs)}

    root = tf.train.Checkpoint()
    root.kernel, root.bias = kernel, bias
    root.variables = [kernel, bias]
    root.trainable_variables = [kernel, bias]
    root.__call__ = call
    tf.saved_model.save(root, str(path), signatures={"serving_default": serve})
    return path


def make_mobilenet_v1_savedmodel(path: Path, alpha: float = 0.25, seed: int = 0) -> Path:
    """A random MobileNet v1 (Keras layer names, as the shared ``mobilenet_v1_*_feature_vector`` modules carry) with
    the TF Hub feature-vector interface: [0, 1] images in, the normalisation inside, pooled features out. What the
    ``finetune`` preset rebuilds and cuts."""
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    net = keras.applications.MobileNet(
        input_shape=(None, None, 3), alpha=alpha, include_top=False, weights=None, pooling="avg"
    )
    net(tf.zeros((1, 32, 32, 3)))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([], tf.bool)])
    def call(images: Any, training: Any = False) -> Any:
        return net(images * 2.0 - 1.0, training=False)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def serve(inputs: Any) -> Any:
        return {"feature_vector": net(inputs * 2.0 - 1.0, training=False)}

    root = tf.train.Checkpoint()
    root.net = net
    root.variables = list(net.variables)
    root.trainable_variables = list(net.trainable_variables)
    root.__call__ = call
    tf.saved_model.save(root, str(path), signatures={"serving_default": serve})
    return path


def make_classifier_savedmodel(path: Path, classes: int = 1001) -> Path:
    """A tiny SavedModel that outputs ImageNet-style logits: must be rejected as a backbone."""
    import tensorflow as tf

    class Classifier(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(np.ones((3, classes), np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images: Any) -> Any:
            return tf.matmul(tf.reduce_mean(images, axis=[1, 2]), self.w)

    tf.saved_model.save(Classifier(), str(path))
    return path


def make_spatial_savedmodel(path: Path) -> Path:
    """A SavedModel that returns a spatial map ``[B, h, w, C]``: not a feature vector."""
    import tensorflow as tf

    class Spatial(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images: Any) -> Any:
            return tf.nn.avg_pool2d(images, 4, 4, "VALID")

    tf.saved_model.save(Spatial(), str(path))
    return path


def make_tflite(path: Path, size: int = 32, dim: int = 8, quantized: bool = True) -> Path:
    """A tiny ``.tflite`` feature extractor; quantized to uint8 input and output by default."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    kernel = tf.constant(rng.normal(0, 0.5, (3, 3, 3, dim)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32)])
    def fn(x: Any) -> Any:
        h = tf.nn.relu(tf.nn.conv2d(x, kernel, strides=2, padding="SAME"))
        return tf.reduce_mean(h, axis=[1, 2], keepdims=True)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    if quantized:

        def rep() -> Any:
            for _ in range(8):
                yield [rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = rep
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    path.write_bytes(converter.convert())
    return path


def get_features(
    ds: Any,
    split: str,
    spec: Any,
    cache_dir: Any,
    image_size: int | None = None,
    view: str = "original",
    limit: int | None = None,
    batch_size: int = 256,
    progress: Any = None,
    backbone: Any = None,
    runtime: str | None = None,
) -> Any:
    """The one door (:func:`lib.pipeline.features.ensure_features`) with this process as the engine, running
    ``backbone`` when given (a stand-in a test controls), else loading what ``runtime`` needs."""
    from lib.pipeline.engines import LocalEngine
    from lib.pipeline.features import ensure_features
    from lib.runtimes import DEFAULT_RUNTIME
    from lib.store.layout import CacheLayout

    layout = CacheLayout(cache_dir)
    engine = LocalEngine(layout, backbone)
    return ensure_features(
        ds, split, spec, layout, image_size, view, limit, batch_size, progress, runtime or DEFAULT_RUNTIME, engine
    )


def cli(*args: str, cache: Any, ok: bool = True, subprocess: bool = False) -> Any:
    """``python -m lib ARGS --cache-dir CACHE`` as a user runs it: its JSON (with ``--json``) or its text; with
    ``ok=False`` the finished process (``returncode``, ``stdout``, ``stderr``), for a test that expects a failure.

    It runs in this process through :func:`lib.cli.main.main` (the same parser, handlers, exit codes and one-line
    errors; no TensorFlow import per call), unless ``subprocess=True``: the few tests that keep the real process
    contract (a signal, a pipe, the environment a job's process starts with) ask for that."""
    import contextlib
    import io
    import json
    import os
    import subprocess as sp
    import sys

    argv = [*args, "--cache-dir", str(cache)]
    if subprocess:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = sp.run(
            [sys.executable, "-m", "lib", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
        )
    else:
        from lib.cli.main import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as stop:  # argparse's refusals and --help
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
        proc = sp.CompletedProcess([sys.executable, "-m", "lib", *argv], code, out.getvalue(), err.getvalue())
    if not ok:
        return proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout) if "--json" in args else proc.stdout
