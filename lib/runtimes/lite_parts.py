"""A run's prediction path without TensorFlow: every backbone part converted to float LiteRT (the resize inside, as the
``litert`` runtime makes it) and the head in numpy, through the same sizes + TTA path as everything else
(:func:`lib.models.predict.predict_images`). What the hosted demo classifies uploads and searches by image with.

    parts = lite_backbones(run.manifest, dataset, layout)   # BackboneError naming a part with no conversion here
    probs = predict_images(parts, run.head, images, run.manifest.part_keys(), run.manifest.tta)

The converted models are found through the installed bundle's ``converted`` map (``"<identity>@<size>"`` -> file), so
no TensorFlow is needed to find them either; in a full install they are the ``litert`` runtime's cached conversions.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lib.errors import BackboneError, UserFacingError
from lib.models.specs import resolve_backbone
from lib.runtimes.litert import LiteRTBackbone, LiteRTRuntime
from lib.store.installed import installed_bundle

if TYPE_CHECKING:
    from lib.data.sources import Dataset
    from lib.store.layout import CacheLayout


# images per invoke: an interpreter's buffers grow with the largest batch it has run (four parts: 131 MB at 1, 255 MB at
# 8)
BATCH = 1
_LOADED: dict[
    tuple[str, int], Any
] = {}  # one interpreter per converted file and size in a process (shared, behind its lock)
_LOADING = threading.Lock()


class PerSize:
    """One backbone of a run as float LiteRT models, one per input size: ``embed(images, size, flip)`` like a
    :class:`lib.runtimes.backbones.LoadedBackbone`, ``BATCH`` images at a time."""

    def __init__(self, name: str, models: dict[int, Any]) -> None:
        self.name, self.models = name, models

    def embed(self, images: np.ndarray, image_size: int, flip: bool = False) -> np.ndarray:
        if image_size not in self.models:
            raise BackboneError(f"No LiteRT model of {self.name} at {image_size}px here.")
        model = self.models[image_size]
        return np.concatenate(
            [
                np.asarray(model.embed(images[i : i + BATCH], image_size, flip), np.float32)
                for i in range(0, max(len(images), 1), BATCH)
            ]
        )


def converted_path(
    handle: str, identity: str, size: int, ds: Dataset, layout: CacheLayout, convert: bool
) -> Path | None:
    """The float LiteRT model of one part: the installed bundle's, else the cache's conversion (made now when
    ``convert``; finding it needs TensorFlow's version, so without TensorFlow only a bundle's is found)."""

    rel = ((installed_bundle(layout) or {}).get("converted") or {}).get(f"{identity}@{size}")
    if isinstance(rel, str):
        path = (layout.root / rel).resolve()
        if layout.root.resolve() in path.parents and path.suffix == ".tflite" and path.is_file():
            return path
    try:
        import importlib.metadata as md

        md.version("tensorflow")
    except md.PackageNotFoundError:
        return None

    runtime, spec = LiteRTRuntime(quantized=False), resolve_backbone(handle)
    if convert:
        return runtime.convert(spec, size, ds, layout)
    path = runtime.converted(spec, size, ds, layout)
    return path if path.is_file() else None


def lite_backbones(
    manifest: Any, ds: Dataset, layout: CacheLayout, convert: bool = False, load: bool = True
) -> list[PerSize]:
    """Every backbone of the run (a :class:`lib.runs.manifest.RunManifest`) as float LiteRT models;
    :class:`BackboneError` naming the first part that has none (a fine-tuned run has none: its backbone changed).
    ``load=False`` only checks that every part has its model (nothing is loaded: a page can say so for free)."""
    if manifest.finetuned:
        raise BackboneError(
            "A fine-tuned run's backbone is not the converted one; uploads need a run trained on features."
        )
    names = [manifest.backbone_name, *(str(b.get("backbone_name") or b["backbone"]) for b in manifest.extra_backbones)]
    parts = zip(names, manifest.backbones(), strict=True)
    return [
        lite_backbone(handle, identity, name, sizes, ds, layout, convert, load)
        for name, (handle, identity, sizes) in parts
    ]


def lite_backbone(
    handle: str,
    identity: str,
    name: str,
    sizes: list[int],
    ds: Dataset,
    layout: CacheLayout,
    convert: bool = False,
    load: bool = True,
) -> PerSize:
    """One backbone at ``sizes`` as float LiteRT models; :class:`BackboneError` if a size has none here. A model already
    loaded in this process is shared (``load=False``: only check, the result holds no models)."""

    models = {}
    for size in sizes:
        path = converted_path(handle, identity, size, ds, layout, convert)
        if path is None:
            raise BackboneError(
                f"{name} at {size}px has no LiteRT conversion here (the bundle did not bring one), so uploads are "
                "off for it."
            )
        if not load:
            continue
        with _LOADING:
            key = (str(path), int(size))
            if key not in _LOADED:
                try:
                    named: Any = _Named(name)  # what LiteRTBackbone reads of a spec: its name
                    _LOADED[key] = LiteRTBackbone(named, path, "litert", size, ds.image_shape)
                except UserFacingError:
                    raise
                except Exception as err:
                    raise BackboneError(
                        f"The LiteRT model of {name} at {size}px could not be loaded ({str(err)[:120]})."
                    ) from err
            models[size] = _LOADED[key]
    return PerSize(name, models)


class _Named:
    """What :class:`lib.runtimes.litert.LiteRTBackbone` needs of a spec for its messages (no resolving, no
    TensorFlow)."""

    def __init__(self, name: str) -> None:
        self.name = name
