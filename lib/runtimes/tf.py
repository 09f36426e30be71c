"""TensorFlow as a runtime: the SavedModel or TF Hub module as loaded; and a ``.tflite`` backbone's implied runtime.

TFRuntime().load(spec, 128, None, layout)     # LoadedBackbone; one load serves every input size
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lib.runtimes import backbones
from lib.runtimes.registry import Runtime, TFBackboneFn

if TYPE_CHECKING:
    from lib.data.sources import Dataset
    from lib.models.specs import BackboneSpec
    from lib.store.layout import CacheLayout


class TFRuntime(Runtime):
    """The module run by TensorFlow, at any input size."""

    name = "tf"
    description = "TensorFlow: the SavedModel or TF Hub module as it is"
    any_size = True
    bench_order = 1

    def key_part(self, spec: BackboneSpec, dataset: Dataset | None) -> str | None:
        return None  # the keys features had before runtimes existed

    def load(
        self,
        spec: BackboneSpec,
        size: int,
        dataset: Dataset | None,
        layout: CacheLayout,
        tf_backbone: TFBackboneFn | None = None,
    ) -> Any:

        return tf_backbone() if tf_backbone else backbones.load_backbone(spec)


class TFLiteFileRuntime(TFRuntime):
    """A ``.tflite`` backbone runs as it is (LiteRT), at its own fixed size, whatever runtime was asked for."""

    name = "tflite"
    description = "a .tflite backbone, run as it is"
    selectable = False
    any_size = False
