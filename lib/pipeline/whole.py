"""Every image of a dataset through one backbone: what whole-dataset analyses (the audit, the full map) share.

whole = whole_dataset(source, backbone, 128, layout, runtime, "An audit", splits=("train", "test"))
whole.feature_keys        # split -> feature cache key (part of the analysis's own artifact key); with further
                          # backbones or the flipped view, also "<split>#<j>/<view>" -> that part's key
whole.sizes               # split -> number of images (a stored result of other sizes is stale)
feats, labels = whole.features(layout, runtime)   # extracted first where not cached
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lib.config import ORIGINAL
from lib.data.sources import load_dataset
from lib.errors import ConfigError
from lib.models.predict import np_concat
from lib.models.specs import resolve_backbone
from lib.pipeline.engines import LocalEngine
from lib.pipeline.features import feature_key_for
from lib.pipeline.training import gather_features
from lib.store.layout import CacheLayout


@dataclass
class WholeDataset:
    """A dataset, a backbone at one size, and the splits an analysis covers (``train`` first)."""

    ds: Any
    spec: Any
    size: int
    splits: list[str]
    feature_keys: dict[str, str]
    more: list[tuple[Any, int]] = field(
        default_factory=list
    )  # further (spec, size) parts whose features are concatenated
    views: tuple[str, ...] = (ORIGINAL,)

    @property
    def parts(self) -> list[tuple[Any, int]]:
        """Every (spec, size) part, the first backbone's first."""
        return [(self.spec, self.size), *self.more]

    @property
    def sizes(self) -> dict[str, int]:
        """Images per split."""
        return {s: self.ds.size(s) for s in self.splits}

    def features(
        self, layout: CacheLayout, runtime: str, batch_size: int = 256, progress: Any = None, engine: Any = None
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Original-view features and labels of every image of each split (one backbone load for all, or ``engine``'s);
        an extraction is reported to ``progress(stage, fraction)`` as the stage ``features <split>/original@<size>``."""

        on_extract = (lambda label, _p: progress(f"features {label}", 0.0)) if progress else None
        engine = engine if engine is not None else LocalEngine(layout)
        features: dict[str, np.ndarray] = {}
        labels: dict[str, np.ndarray] = {}
        for s in self.splits:
            block = gather_features(
                self.ds,
                self.spec,
                s,
                (self.size,),
                (ORIGINAL,),
                layout,
                None,
                batch_size,
                on_extract,
                engine,
                runtime,
            )
            features[s], labels[s] = block.parts[(self.size, ORIGINAL)], block.labels
        return features, labels

    def all_views(
        self, layout: CacheLayout, runtime: str, batch_size: int = 256, progress: Any = None, engine: Any = None
    ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
        """Features of every part concatenated (first backbone first), per split and view (:attr:`views`), and labels;
        extracted first where not cached, reported as :meth:`features` reports."""

        on_extract = (lambda label, _p: progress(f"features {label}", 0.0)) if progress else None
        engine = engine if engine is not None else LocalEngine(layout)
        out: dict[str, dict[str, np.ndarray]] = {}
        labels: dict[str, np.ndarray] = {}
        for s in self.splits:
            blocks = [
                gather_features(
                    self.ds, spec, s, (size,), self.views, layout, None, batch_size, on_extract, engine, runtime
                )
                for spec, size in self.parts
            ]
            out[s] = {
                v: np_concat([b.parts[(size, v)] for b, (_spec, size) in zip(blocks, self.parts, strict=True)])
                for v in self.views
            }
            labels[s] = blocks[0].labels
        return out, labels


def whole_dataset(
    source: str,
    backbone: str,
    image_size: int | None,
    layout: CacheLayout,
    runtime: str,
    what: str,
    splits: tuple[str, ...] | None = None,
    more: tuple[tuple[str, int | None], ...] = (),
    views: tuple[str, ...] = (ORIGINAL,),
) -> WholeDataset:
    """Resolve the dataset and backbone (and ``more`` (backbone, size) parts, for analyses of concatenated features,
    over
    ``views``); ``splits`` (default: all) that the dataset has, ``train`` first. :class:`ConfigError` naming ``what`` if
    there is no ``train`` split."""

    ds = load_dataset(source, layout)
    spec = resolve_backbone(backbone)
    size = int(image_size or spec.default_size())
    chosen = sorted((s for s in ds.splits if splits is None or s in splits), key=lambda s: (s != "train", s))
    if "train" not in chosen:
        raise ConfigError(f"{what} needs a 'train' split; {source!r} has {', '.join(ds.splits)}.")
    keys = {s: feature_key_for(ds, s, spec, size, ORIGINAL, None, runtime) for s in chosen}
    extra = [(e, int(s or e.default_size())) for e, s in ((resolve_backbone(b), s) for b, s in more)]
    for j, (part_spec, part_size) in enumerate([(spec, size), *extra]):
        for view in views:
            if (j, view) != (0, ORIGINAL):
                keys |= {
                    f"{s}#{j}/{view}": feature_key_for(ds, s, part_spec, part_size, view, None, runtime) for s in chosen
                }
    return WholeDataset(ds, spec, size, chosen, keys, extra, tuple(views))
