"""Extraction runtimes: TensorFlow, or the backbone converted once to LiteRT (float32, or full-integer int8).

``tf`` runs the SavedModel as loaded. ``litert`` converts the resize and the backbone's forward pass at one
input size (:func:`lib.models.preprocess.resize_view`, then the module) to a float32 LiteRT flatbuffer and
runs it with ai-edge-litert (XNNPACK, all cores), so no TensorFlow runs during extraction: the uint8 images
are scaled to [0, 1] (and mirrored, for the flip view) in numpy. ``litert-int8`` applies
full-integer post-training quantisation, calibrated on a few hundred *training* images of the active
dataset. Converted models are cache artifacts keyed by the backbone's identity, the size, the runtime
and the calibration data, written atomically. The preprocessing is the same code in every runtime. A ``.tflite`` backbone is already a LiteRT model and
runs as it is, whatever the runtime.

    loaded = load_for_runtime(spec, "litert", 128, dataset, cache_dir)   # LoadedBackbone, embed() as usual
    runtime_identity(spec, "litert-int8", dataset)                      # part of the feature cache key
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lib.errors import BackboneError, ConfigError, first_line

if TYPE_CHECKING:
    from collections.abc import Callable

    from lib.data.sources import Dataset
    from lib.models.backbones import LoadedBackbone
    from lib.models.specs import BackboneSpec

RUNTIMES = ("tf", "litert", "litert-int8")
DEFAULT_RUNTIME = "tf"  # litert is not yet 1.8x tf on the whole test split here (1.71-1.80x measured); see the README
CALIBRATION_PER_CLASS = 30  # training images per class for int8 calibration (300 for CIFAR-10)
MIN_CALIBRATION = 50  # fewer images than this cannot calibrate activation ranges reliably
CONVERTER_VERSION = 1  # bump when the conversion recipe changes


def check_runtime(runtime: str) -> str:
    """``runtime`` if known, else :class:`ConfigError` listing the choices."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"Unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}.")
    return runtime


def effective_runtime(spec: BackboneSpec, runtime: str) -> str:
    """What actually runs: a ``.tflite`` backbone is LiteRT already (``tflite``), else ``runtime``."""
    check_runtime(runtime)
    return "tflite" if spec.kind == "tflite" else runtime


def calibration_indices(dataset: Dataset) -> np.ndarray:
    """The training images that calibrate int8 quantisation: the first few of each class (never test images)."""
    from lib.data.sources import subset_indices

    split = "train" if "train" in dataset.splits else dataset.splits[0]
    idx = subset_indices(dataset.labels(split), CALIBRATION_PER_CLASS)
    if len(idx) < MIN_CALIBRATION:
        raise ConfigError(
            f"litert-int8 needs at least {MIN_CALIBRATION} training images to calibrate; the dataset's {split!r} split has {len(idx)}. "
            "Use --runtime litert (float) for a dataset this small."
        )
    return idx


def calibration_id(dataset: Dataset) -> str:
    """Identity of the calibration data: the dataset and which of its images were used."""
    return f"{dataset.fingerprint}/train/first{CALIBRATION_PER_CLASS}perclass"


def runtime_identity(spec: BackboneSpec, runtime: str, dataset: Dataset | None = None) -> str:
    """The part of a feature key that says which runtime (and calibration) produced the features."""
    actual = effective_runtime(spec, runtime)
    if actual in ("tf", "tflite"):
        return actual
    if actual == "litert-int8":
        if dataset is None:
            raise ConfigError("litert-int8 needs the dataset whose training images calibrate it.")
        return f"{actual}:{calibration_id(dataset)}:c{CONVERTER_VERSION}"
    return f"{actual}:c{CONVERTER_VERSION}"


def converted_key(spec: BackboneSpec, size: int, runtime: str, dataset: Dataset) -> str:
    """Cache key of a converted model: backbone, size, runtime (with calibration), input shape, preprocessing, TF version."""
    import importlib.metadata as md

    from lib.models.preprocess import PREPROCESSING_ID

    parts = {"backbone": spec.identity(), "size": int(size), "runtime": runtime_identity(spec, runtime, dataset), "tf": md.version("tensorflow"),
             "input": list(dataset.image_shape), "preprocessing": PREPROCESSING_ID}  # fmt: skip
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


class LiteRTBackbone:
    """A converted backbone: ``embed`` scales (and mirrors) uint8 images in numpy and runs the LiteRT graph."""

    def __init__(self, spec: BackboneSpec, path: Path, runtime: str, size: int, input_shape: tuple[int, int, int]) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.spec, self.runtime, self.size, self.input_shape, self.path = spec, runtime, size, input_shape, path
        self.fixed_size = size
        self._interp = Interpreter(model_path=str(path), num_threads=threads())
        self._inp = self._interp.get_input_details()[0]["index"]
        self._out = self._interp.get_output_details()[0]["index"]
        self._batch = -1
        self.feature_dim = int(self._run(np.zeros((1, *input_shape), np.float32)).shape[1])
        self.module = None

    def check_size(self, image_size: int) -> None:
        """Raise if asked for another size than the one this model was converted at."""
        if image_size != self.size:
            raise BackboneError(f"This {self.runtime} model of {self.spec.name} was converted at {self.size}px, not {image_size}px.")

    def _run(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self._batch:
            self._interp.resize_tensor_input(self._inp, list(x.shape))
            self._interp.allocate_tensors()
            self._batch = len(x)
        self._interp.set_tensor(self._inp, np.ascontiguousarray(x, np.float32))
        self._interp.invoke()
        return np.array(self._interp.get_tensor(self._out), np.float32).reshape(len(x), -1)

    def embed(self, images: np.ndarray, image_size: int, flip: bool = False) -> np.ndarray:
        """Features of a uint8 ``[B, H, W, 3]`` batch at the storage size the model was converted for."""
        from lib.models.preprocess import to_unit_range

        self.check_size(image_size)
        if tuple(images.shape[1:]) != self.input_shape:
            raise BackboneError(f"This {self.runtime} model takes {self.input_shape} images, got {tuple(images.shape[1:])}.")
        # Mirroring the uint8 input equals mirroring after the (symmetric) bilinear resize.
        batch = np.asarray(images)[:, :, ::-1] if flip else np.asarray(images)
        return self._run(to_unit_range(batch))


def load_for_runtime(spec: BackboneSpec, runtime: str, size: int, dataset: Dataset | None, cache_dir: Path | str,
                     tf_backbone: Callable[[], LoadedBackbone] | None = None) -> Any:  # fmt: skip
    """A loaded backbone that runs ``spec`` at ``size`` with ``runtime`` (converting and caching it first if needed).

    ``tf_backbone`` returns the TF-loaded backbone when a conversion needs it (default: load it), so a caller
    converting one backbone at several sizes loads it once.
    """
    from lib.models.backbones import load_backbone

    actual = effective_runtime(spec, runtime)
    if actual in ("tf", "tflite"):
        return tf_backbone() if tf_backbone else load_backbone(spec)
    if dataset is None:
        raise ConfigError(f"The {runtime} runtime converts for a dataset's image size; none was given.")
    path = convert(spec, size, runtime, dataset, cache_dir, tf_backbone)
    return LiteRTBackbone(spec, path, runtime, size, tuple(dataset.image_shape))  # type: ignore[arg-type]


def convert(spec: BackboneSpec, size: int, runtime: str, dataset: Dataset, cache_dir: Path | str,
            tf_backbone: Callable[[], LoadedBackbone] | None = None) -> Path:  # fmt: skip
    """The converted LiteRT model of ``spec`` at ``size`` for ``runtime``; converted once, then read from the cache."""
    from lib.store.atomic import atomic_path
    from lib.store.layout import CacheLayout

    target = CacheLayout(cache_dir).converted_model(converted_key(spec, size, runtime, dataset))
    if _loads(target):
        return target
    calibration = None
    if runtime == "litert-int8":
        calibration = dataset.images("train")[calibration_indices(dataset)]
    from lib.models.backbones import load_backbone

    loaded = tf_backbone() if tf_backbone else load_backbone(spec)
    flatbuffer = _convert(spec, loaded, size, runtime, tuple(dataset.image_shape), calibration)
    with atomic_path(target, suffix=".tflite") as tmp:
        tmp.write_bytes(flatbuffer)
    return target


def _loads(path: Path) -> bool:
    """Whether a cached flatbuffer exists and an interpreter accepts it (a damaged one is converted again)."""
    if not path.is_file():
        return False
    try:
        from ai_edge_litert.interpreter import Interpreter

        Interpreter(model_path=str(path)).allocate_tensors()
        return True
    except Exception:  # noqa: BLE001 - any failure means "convert again"
        path.unlink(missing_ok=True)
        return False


def float_converter(loaded: LoadedBackbone, size: int, input_shape: tuple[int, ...]) -> Any:
    """A ``TFLiteConverter`` for the resize plus the backbone's forward pass at ``size`` (float32, as is)."""
    import tensorflow as tf

    from lib.models.preprocess import resize_view

    forward = loaded.forward_fn

    @tf.function(input_signature=[tf.TensorSpec([None, *input_shape], tf.float32)])
    def graph(x: Any) -> Any:
        return forward(resize_view(x, size))

    return tf.lite.TFLiteConverter.from_concrete_functions([graph.get_concrete_function()], loaded.module)


def representative_data(calibration: np.ndarray) -> Callable[[], Any]:
    """The calibration images one at a time, scaled as every runtime scales them."""
    from lib.models.preprocess import to_unit_range

    def generate() -> Any:
        for i in range(len(calibration)):
            yield [to_unit_range(np.asarray(calibration[i : i + 1]))]

    return generate


def set_full_integer(converter: Any, calibration: np.ndarray) -> Any:
    """Configure full-integer post-training quantisation (per-channel weights, int8 activations)."""
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_data(calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter


def _convert(spec: BackboneSpec, loaded: LoadedBackbone, size: int, runtime: str, input_shape: tuple[int, ...], calibration: np.ndarray | None) -> bytes:
    converter = float_converter(loaded, size, input_shape)
    if runtime == "litert-int8":
        assert calibration is not None
        set_full_integer(converter, calibration)
    try:
        return bytes(converter.convert())
    except Exception as err:
        hint = " Use --runtime litert or tf." if runtime == "litert-int8" else " Use --runtime tf."
        raise BackboneError(f"{spec.name} cannot be converted to {runtime} at {size}px: {first_line(err)}.{hint}") from err


def threads() -> int:
    """Interpreter threads: every core."""
    return os.cpu_count() or 2
