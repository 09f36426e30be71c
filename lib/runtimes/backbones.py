"""Loaded backbones: TensorFlow (SavedModel / TF Hub) or TFLite feature extractors behind one ``embed``.

Resolving a backbone string is :mod:`lib.models.specs` (no TensorFlow); loading it is here, lazily.
``TFHUB_CACHE_DIR`` is set once by the entry point (:func:`lib.process.configure_process`).

    spec = resolve_backbone("../shared/models/mobilenet_v1_100_224_feature_vector")
    model = load_backbone(spec)
    feats = model.embed(uint8_batch, image_size=128, flip=False)   # float32 [B, 1024]
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from lib.errors import BackboneError, first_line
from lib.models.preprocess import preprocess
from lib.models.specs import REGISTRY, BackboneSpec, resolve_backbone
from lib.runtimes.registry import DEFAULT_RUNTIME, TFLITE_FILE

__all__ = ["REGISTRY", "BackboneSpec", "LoadedBackbone", "load_backbone", "resolve_backbone"]


# --------------------------------------------------------------------------- loaded backbones


class LoadedBackbone:
    """A loaded feature extractor: ``embed`` maps uint8 images to ``[B, D]`` float32 features."""

    def __init__(self, spec: BackboneSpec, forward: Callable[[Any], Any], fixed_size: int | None = None) -> None:
        self.spec = spec
        self._forward = forward  # float32 [B,H,W,3] in [0,1] -> [B, D]
        self.fixed_size = fixed_size
        self._embedders: dict[tuple[int, bool], Callable[[Any], Any]] = {}
        self.feature_dim: int = 0
        self.module: Any = None  # the loaded TF module, kept alive for its variables
        self.runtime = TFLITE_FILE if fixed_size is not None else DEFAULT_RUNTIME

    def check_size(self, image_size: int) -> None:
        """Raise if this backbone cannot run at ``image_size``."""
        if self.fixed_size is not None and image_size != self.fixed_size:
            raise BackboneError(
                f"{self.spec.name} only accepts {self.fixed_size}x{self.fixed_size} input; got --image-size "
                f"{image_size}."
            )

    def embed(self, images: np.ndarray, image_size: int, flip: bool = False) -> np.ndarray:
        """Features of a uint8 ``[B,H,W,3]`` batch, resized to ``image_size`` (and mirrored if ``flip``)."""
        self.check_size(image_size)
        fn = self._embedders.get((image_size, flip))
        if fn is None:
            fn = self._embedders[(image_size, flip)] = self._make_embedder(image_size, flip)
        return np.asarray(fn(np.ascontiguousarray(images)))

    @property
    def forward_fn(self) -> Callable[[Any], Any]:
        """The forward pass itself (float32 [B, H, W, 3] in [0, 1] -> [B, D]), for building graphs around it."""
        return self._forward

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """The bare forward pass on an already resized float32 batch in [0, 1] (for benchmarks)."""
        return np.asarray(self._forward(batch))

    def _make_embedder(self, image_size: int, flip: bool) -> Callable[[Any], Any]:
        """The resize (and mirror) and the forward pass as one graph.

        Every backbone ``tf.function`` (these, and the SavedModel's forward pass in :func:`_load_savedmodel`) is
        traced without AutoGraph; none has Python control flow on tensors. AutoGraph parses a function's source with
        :mod:`ast`, and CPython 3.11's AST constructor keeps its recursion depth in interpreter-wide state, so two
        threads tracing at once (two sessions searching by image, two extractions in one process) failed with
        "SystemError: AST constructor recursion depth mismatch" (seen in a clean-clone run of
        tests/tf/test_features.py::test_two_writers_of_the_same_key)."""
        import tensorflow as tf

        forward = self._forward

        signature = [tf.TensorSpec([None, None, None, 3], tf.uint8)]
        if isinstance(forward, tf.types.experimental.GenericFunction) or hasattr(forward, "get_concrete_function"):

            @tf.function(input_signature=signature, autograph=False)
            def fused(x: Any) -> Any:
                return forward(preprocess(x, image_size, flip))

            return fused
        prepare = tf.function(lambda x: preprocess(x, image_size, flip), input_signature=signature, autograph=False)
        return lambda x: forward(prepare(x).numpy())


def _classification_check(spec: BackboneSpec, dim: int) -> None:
    if dim in (1000, 1001):
        raise BackboneError(
            f"{spec.handle} outputs {dim} values per image: it looks like an ImageNet classification module, "
            "not a feature vector. Use the module's feature_vector variant."
        )


def load_backbone(spec: BackboneSpec) -> LoadedBackbone:
    """Load ``spec`` with TensorFlow and check it returns one feature vector per image."""
    loaded = LOADERS[spec.kind](spec)
    probe_size = loaded.fixed_size or spec.default_size()
    try:
        out = np.asarray(loaded._forward(np.full((2, probe_size, probe_size, 3), 0.5, np.float32)))
    except BackboneError:
        raise
    except Exception as err:
        raise BackboneError(
            f"Backbone {spec.handle} failed on a test batch of {probe_size}x{probe_size} RGB images: {first_line(err)}"
        ) from err
    if out.ndim != 2 or out.shape[0] != 2:
        raise BackboneError(
            f"Backbone {spec.handle} returns shape {list(out.shape)} for 2 images; a feature-vector module returns "
            "[batch, features]."
        )
    _classification_check(spec, out.shape[1])
    loaded.feature_dim = int(out.shape[1])
    return loaded


def _load_savedmodel(spec: BackboneSpec) -> LoadedBackbone:
    import tensorflow as tf

    try:
        import tensorflow_hub as hub

        module = hub.load(spec.handle)
    except Exception as err:
        hint = " Offline? Pass a local SavedModel folder or .tflite file instead." if spec.kind == "hub" else ""
        raise BackboneError(f"Could not load backbone {spec.handle!r}: {first_line(err)}.{hint}") from err

    if callable(module):  # both forward passes are traced without AutoGraph: see LoadedBackbone._make_embedder
        call: Callable[..., Any] = module

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)], autograph=False)
        def forward(x: Any) -> Any:
            try:
                out = call(x, training=False)
            except TypeError:
                out = call(x)
            return _single_output(out)

    elif "serving_default" in getattr(module, "signatures", {}):
        sig = module.signatures["serving_default"]
        arg = next(iter(sig.structured_input_signature[1]))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)], autograph=False)
        def forward(x: Any) -> Any:
            return _single_output(sig(**{arg: x}))

    else:
        raise BackboneError(
            f"{spec.handle} has neither __call__ nor a serving_default signature; it is not an image feature-vector "
            "module."
        )
    loaded = LoadedBackbone(spec, forward)
    loaded.module = module
    return loaded


def _single_output(out: Any) -> Any:
    import tensorflow as tf

    if isinstance(out, dict):
        if "feature_vector" in out:
            out = out["feature_vector"]
        elif len(out) == 1:
            out = next(iter(out.values()))
        else:
            raise BackboneError(f"Module returns several outputs ({', '.join(out)}) and none is named feature_vector.")
    if out.shape.rank == 4 and out.shape[1] == 1 and out.shape[2] == 1:
        out = tf.squeeze(out, axis=[1, 2])
    return out


def _load_tflite(spec: BackboneSpec) -> LoadedBackbone:
    # ai-edge-litert is the maintained interpreter (tf.lite.Interpreter is deprecated); it is in requirements.txt.
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            interp = Interpreter(model_path=spec.handle, num_threads=os.cpu_count() or 2)
        except Exception as err:
            raise BackboneError(f"Could not load TFLite backbone {spec.handle!r}: {first_line(err)}") from err
    inp = interp.get_input_details()[0]
    outp = interp.get_output_details()[0]
    if len(inp["shape"]) != 4 or inp["shape"][3] != 3:
        raise BackboneError(
            f"TFLite model {spec.handle} takes input of shape {list(inp['shape'])}; an image model takes [batch, H, "
            "W, 3]."
        )
    fixed = int(inp["shape"][1])
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = outp["quantization"]
    state = {"batch": -1}

    def forward(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.shape[1:3] != (fixed, fixed):
            raise BackboneError(f"TFLite model {spec.name} only accepts {fixed}x{fixed} input.")
        if state["batch"] != len(x):
            interp.resize_tensor_input(inp["index"], [len(x), fixed, fixed, 3])
            interp.allocate_tensors()
            state["batch"] = len(x)
        if inp["dtype"] == np.uint8:
            # Quantized models expect raw pixel values: their input scale maps 0..255 onto the trained range.
            feed = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
        elif inp["dtype"] == np.int8:
            feed = np.clip(np.round(x * 255.0) - 128, -128, 127).astype(np.int8)
        else:
            feed = x.astype(inp["dtype"])
        interp.set_tensor(inp["index"], feed)
        interp.invoke()
        out = interp.get_tensor(outp["index"])
        if np.issubdtype(out.dtype, np.integer) and out_scale:
            out = (out.astype(np.float32) - out_zero) * out_scale
        out = np.asarray(out, np.float32)
        if out.ndim == 4 and out.shape[1:3] == (1, 1):
            out = out[:, 0, 0, :]
        return out

    del in_scale, in_zero
    spec_fixed = (
        spec
        if spec.native_size == fixed
        else BackboneSpec(spec.name, spec.handle, spec.kind, spec.family, fixed, spec.feature_dim)
    )
    return LoadedBackbone(spec_fixed, forward, fixed_size=fixed)


def _load_stand_in(spec: BackboneSpec) -> LoadedBackbone:
    raise BackboneError(
        f"{spec.name} stands in for a backbone whose files did not travel with this hosting bundle: its features and "
        "LiteRT conversions are here, the model itself is not. Install the full bundle, or give the backbone's path."
    )


# How each backbone source (lib.models.specs.SOURCES) loads with TensorFlow, by its kind
LOADERS: dict[str, Callable[[BackboneSpec], LoadedBackbone]] = {
    "hub": _load_savedmodel,
    "savedmodel": _load_savedmodel,
    "tflite": _load_tflite,
    "stand-in": _load_stand_in,
}
