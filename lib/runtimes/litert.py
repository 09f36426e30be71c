"""LiteRT runtimes: the backbone converted once to a LiteRT flatbuffer, float32 (``litert``) or full-integer int8
(``litert-int8``), run with ai-edge-litert (XNNPACK, all cores), so no TensorFlow runs during extraction.

The resize and the backbone's forward pass at one input size (:func:`lib.models.preprocess.resize_view`, then the
module) are converted; the uint8 images are scaled to [0, 1] (and mirrored, for the flip view) in numpy. ``litert-int8``
is calibrated on a few hundred *training* images of the active dataset. Converted models are cache artifacts keyed by
the backbone's identity, the size, the runtime and the calibration data, written atomically.

    rt = LiteRTRuntime(quantized=False)
    model = rt.load(spec, 128, dataset, layout)          # converts once, then reads the cached file
    model.embed(uint8_batch, 128, flip=False)
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lib.data.sources import subset_indices
from lib.errors import BackboneError, ConfigError, first_line
from lib.models.preprocess import PREPROCESSING_ID, resize_view, to_unit_range
from lib.runtimes import backbones
from lib.runtimes.registry import Runtime, TFBackboneFn
from lib.store.atomic import atomic_path
from lib.store.layout import artifact_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from lib.data.sources import Dataset
    from lib.models.specs import BackboneSpec
    from lib.runtimes.backbones import LoadedBackbone
    from lib.store.layout import CacheLayout

CALIBRATION_PER_CLASS = 30  # training images per class for int8 calibration (300 for CIFAR-10)
MIN_CALIBRATION = 50  # fewer images than this cannot calibrate activation ranges reliably
CONVERTER_VERSION = 1  # bump when the conversion recipe changes


class LiteRTRuntime(Runtime):
    """The backbone converted to LiteRT at one input size: float32, or full-integer int8 calibrated on training
    images."""

    artifact_suffix = ".tflite"

    def __init__(self, quantized: bool, mixed: bool = False) -> None:
        self.quantized, self.mixed = quantized or mixed, mixed
        self.name = "litert-mixed" if mixed else "litert-int8" if quantized else "litert"
        self.exact = not self.quantized
        self.bench_order = (
            3 if mixed else 2 if quantized else 0
        )  # the faster float runtime extracts a benchmark's accuracy subset first
        self.description = (
            MIXED_DESCRIPTION
            if mixed
            else "LiteRT int8: full-integer quantised, calibrated on training images (fastest; features move slightly)"
            if quantized
            else "LiteRT float32: the backbone converted once (same features as tf, faster on most CPUs)"
        )

    def identity(self, spec: BackboneSpec, dataset: Dataset | None) -> str:
        if not self.quantized:
            return f"{self.name}:c{CONVERTER_VERSION}"
        if dataset is None:
            raise ConfigError(f"{self.name} needs the dataset whose training images calibrate it.")
        policy = f":prefix-rmse{MIXED_THRESHOLD:g}-in{MIXED_WITHIN:g}" if self.mixed else ""
        return f"{self.name}:{calibration_id(dataset)}{policy}:c{CONVERTER_VERSION}"

    def converted(self, spec: BackboneSpec, size: int, dataset: Dataset, layout: CacheLayout) -> Path:
        return layout.converted_model(converted_key(spec, size, self.identity(spec, dataset), dataset))

    def load(
        self,
        spec: BackboneSpec,
        size: int,
        dataset: Dataset | None,
        layout: CacheLayout,
        tf_backbone: TFBackboneFn | None = None,
    ) -> Any:
        if dataset is None:
            raise ConfigError(f"The {self.name} runtime converts for a dataset's image size; none was given.")
        path = self.convert(spec, size, dataset, layout, tf_backbone)
        return LiteRTBackbone(spec, path, self.name, size, tuple(dataset.image_shape))  # type: ignore[arg-type]

    def convert(
        self,
        spec: BackboneSpec,
        size: int,
        dataset: Dataset,
        layout: CacheLayout,
        tf_backbone: TFBackboneFn | None = None,
    ) -> Path:
        """The converted model of ``spec`` at ``size``; converted once, then read from the cache."""

        target = self.converted(spec, size, dataset, layout)
        if _loads(target):
            return target
        calibration = dataset.images("train")[calibration_indices(dataset)] if self.quantized else None
        loaded = tf_backbone() if tf_backbone else backbones.load_backbone(spec)
        flatbuffer = convert_to_flatbuffer(
            spec, loaded, size, self.name, tuple(dataset.image_shape), calibration, self.mixed
        )
        with atomic_path(target, suffix=self.artifact_suffix) as tmp:
            tmp.write_bytes(flatbuffer)
        return target


def calibration_indices(dataset: Dataset) -> np.ndarray:
    """The training images that calibrate int8 quantisation: the first few of each class (never test images)."""

    split = "train" if "train" in dataset.splits else dataset.splits[0]
    idx = subset_indices(dataset.labels(split), CALIBRATION_PER_CLASS)
    if len(idx) < MIN_CALIBRATION:
        raise ConfigError(
            f"litert-int8 needs at least {MIN_CALIBRATION} training images to calibrate; the dataset's {split!r} "
            f"split has {len(idx)}. Use --runtime litert (float) for a dataset this small."
        )
    return idx


def calibration_id(dataset: Dataset) -> str:
    """Identity of the calibration data: the dataset and which of its images were used."""
    return f"{dataset.fingerprint}/train/first{CALIBRATION_PER_CLASS}perclass"


def converted_key(spec: BackboneSpec, size: int, identity: str, dataset: Dataset) -> str:
    """Cache key of a converted model: backbone, size, runtime identity (with calibration), input shape, preprocessing,
    TF version."""
    import importlib.metadata as md

    parts = {
        "backbone": spec.identity(),
        "size": int(size),
        "runtime": identity,
        "tf": md.version("tensorflow"),
        "input": list(dataset.image_shape),
        "preprocessing": PREPROCESSING_ID,
    }
    return artifact_key(parts)


class LiteRTBackbone:
    """A converted backbone: ``embed`` scales (and mirrors) uint8 images in numpy and runs the LiteRT graph."""

    def __init__(
        self, spec: BackboneSpec, path: Path, runtime: str, size: int, input_shape: tuple[int, int, int]
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.spec, self.runtime, self.size, self.input_shape, self.path = spec, runtime, size, input_shape, path
        self.fixed_size = size
        self._interp = Interpreter(model_path=str(path), num_threads=threads())
        self._inp = self._interp.get_input_details()[0]["index"]
        self._out = self._interp.get_output_details()[0]["index"]
        self._batch = -1
        self._lock = threading.Lock()  # one interpreter, many threads (a server's sessions): one invoke at a time
        self.feature_dim = int(self._run(np.zeros((1, *input_shape), np.float32)).shape[1])
        self.module = None

    def check_size(self, image_size: int) -> None:
        """Raise if asked for another size than the one this model was converted at."""
        if image_size != self.size:
            raise BackboneError(
                f"This {self.runtime} model of {self.spec.name} was converted at {self.size}px, not {image_size}px."
            )

    def _run(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            if len(x) != self._batch:
                self._interp.resize_tensor_input(self._inp, list(x.shape))
                self._interp.allocate_tensors()
                self._batch = len(x)
            self._interp.set_tensor(self._inp, np.ascontiguousarray(x, np.float32))
            self._interp.invoke()
            return np.array(self._interp.get_tensor(self._out), np.float32).reshape(len(x), -1)

    def embed(self, images: np.ndarray, image_size: int, flip: bool = False) -> np.ndarray:
        """Features of a uint8 ``[B, H, W, 3]`` batch at the storage size the model was converted for."""

        self.check_size(image_size)
        if tuple(images.shape[1:]) != self.input_shape:
            raise BackboneError(
                f"This {self.runtime} model takes {self.input_shape} images, got {tuple(images.shape[1:])}."
            )
        # Mirroring the uint8 input equals mirroring after the (symmetric) bilinear resize.
        batch = np.asarray(images)[:, :, ::-1] if flip else np.asarray(images)
        return self._run(to_unit_range(batch))


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

    forward = loaded.forward_fn

    @tf.function(input_signature=[tf.TensorSpec([None, *input_shape], tf.float32)])
    def graph(x: Any) -> Any:
        return forward(resize_view(x, size))

    return tf.lite.TFLiteConverter.from_concrete_functions([graph.get_concrete_function()], loaded.module)


def representative_data(calibration: np.ndarray) -> Callable[[], Any]:
    """The calibration images one at a time, scaled as every runtime scales them."""

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


def convert_to_flatbuffer(
    spec: BackboneSpec,
    loaded: LoadedBackbone,
    size: int,
    name: str,
    input_shape: tuple[int, ...],
    calibration: np.ndarray | None,
    mixed: bool = False,
) -> bytes:
    """The LiteRT flatbuffer of ``loaded`` at ``size``: float32, or full-integer when ``calibration`` images are given
    (``mixed``: with the layers that quantise worst kept float, :func:`mixed_model`)."""
    converter = float_converter(loaded, size, input_shape)
    try:
        if calibration is not None and mixed:
            return mixed_model(lambda: float_converter(loaded, size, input_shape), calibration)
        if calibration is not None:
            set_full_integer(converter, calibration)
        # the frozen-graph path: the same model (outputs equal to the last bit, measured) in 0.8 s instead of 2.3 s,
        else:
            converter.experimental_lower_to_saved_model = False  # with no temporary SavedModel written and loaded back
        return bytes(converter.convert())
    except Exception as err:
        hint = " Use --runtime litert or tf." if calibration is not None else " Use --runtime tf."
        raise BackboneError(f"{spec.name} cannot be converted to {name} at {size}px: {first_line(err)}.{hint}") from err


MIXED_THRESHOLD = (
    2.0  # a layer whose quantised output is off by more than this many quantisation steps (RMS) is a suspect
)
MIXED_WITHIN = 0.5  # ... if it is in this first share of the graph: early errors compound through every later layer
MIXED_PROBE = 50  # calibration images the debugger compares float and int8 layers on
MIXED_DESCRIPTION = (
    "LiteRT mixed: int8 after a float input stage that ends at the last early layer quantising badly (chosen by "
    "TensorFlow's quantization debugger; fast, close to float)"
)


def float_layers(
    stats: list[dict[str, Any]], threshold: float = MIXED_THRESHOLD, within: float = MIXED_WITHIN
) -> list[str]:
    """The layers a mixed model keeps float: every layer up to the last one, among the first ``within`` share of the
    graph, whose RMS error is above ``threshold`` quantisation steps (a float prefix: one float-to-int8 boundary, and
    the early layers are the cheap ones). ``stats``: the debugger's rows, in graph order. Measured on MobileNet v1 at
    128 px: the suspects are the first depthwise and pointwise layers (2.7 and 2.5 steps; ReLU6 fixes their range to
    [0, 6] while their values are small); keeping the six layers up to them float takes the features' cosine to float
    from 0.877 to 0.988 at 2.7-3.0x float speed, where also keeping every layer above 1 step (0.992) ran at 1.85x."""
    early = int(len(stats) * within)
    bad = [
        i
        for i, r in enumerate(stats[:early])
        if float(r["scale"]) > 0 and np.sqrt(float(r["mean_squared_error"])) / float(r["scale"]) > threshold
    ]
    return [str(r["tensor_name"]) for r in stats[: bad[-1] + 1]] if bad else []


def mixed_model(new_converter: Callable[[], Any], calibration: np.ndarray) -> bytes:
    """Int8 with :func:`float_layers` kept float (TensorFlow's selective quantisation: the quantization debugger's
    per-layer error on ``MIXED_PROBE`` calibration images, then its model with those nodes denylisted)."""
    import csv
    import io

    import tensorflow as tf

    def converter() -> Any:
        c = new_converter()
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = representative_data(calibration)
        return c

    probe = representative_data(calibration[:: max(1, len(calibration) // MIXED_PROBE)])
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter(), debug_dataset=probe)
    debugger.run()
    out = io.StringIO()
    debugger.layer_statistics_dump(out)
    out.seek(0)
    keep = float_layers(list(csv.DictReader(out)))
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep)
    mixed = tf.lite.experimental.QuantizationDebugger(converter=converter(), debug_dataset=probe, debug_options=options)
    return bytes(mixed.get_nondebug_quantized_model())


def threads() -> int:
    """Interpreter threads: every core."""
    return os.cpu_count() or 2
