"""What is in the cache for a dataset, as the pages and the CLI ask it: which feature sets exist, which one to show
first, which splits still need features. Plain values from the artifacts' manifests (no TensorFlow).

    missing_feature_splits(layout, ds, spec, 128, "tf")        # ["test"]: what extracting would still make
    sets = feature_sets(layout, ds)                             # every (backbone, size, limit, runtime) with features
    preferred_feature_set(sets, run.manifest, spec.handle, 128) # the active run's, else the active backbone's at its
    size
"""

from __future__ import annotations

from typing import Any, NamedTuple

from lib.config import ORIGINAL
from lib.pipeline.feature_store import FeatureManifest, list_cached_features, load_cached_features
from lib.pipeline.features import feature_key_for
from lib.runtimes import AUTO, DEFAULT_RUNTIME
from lib.runtimes.auto import CANDIDATES as AUTO_CANDIDATES
from lib.store.layout import CacheLayout


class FeatureSet(NamedTuple):
    """Features of one backbone at one size (whole splits or the first ``limit`` images per class), from one runtime."""

    backbone: str
    image_size: int
    limit: int | None
    runtime: str

    def label(self) -> str:
        """How a menu names it."""
        runtime = f" ({self.runtime})" if self.runtime != DEFAULT_RUNTIME else ""
        subset = f" (first {self.limit}/class)" if self.limit else ""
        return f"{self.backbone.rstrip('/').split('/')[-1]} @ {self.image_size}px{runtime}{subset}"


def _of(m: FeatureManifest) -> FeatureSet:
    return FeatureSet(m.backbone, m.image_size, m.limit, m.runtime_name)


def dataset_features(layout: CacheLayout, ds: Any, view: str | None = ORIGINAL) -> list[FeatureManifest]:
    """Manifests of the cached features of ``ds`` (of one view, or every view with None)."""
    return [m for m in list_cached_features(layout) if m.dataset == ds.fingerprint and (view is None or m.view == view)]


def feature_sets(layout: CacheLayout, ds: Any) -> list[FeatureSet]:
    """Every feature set of ``ds`` with original-view features, in a stable order."""
    return sorted(
        {_of(m) for m in dataset_features(layout, ds)},
        key=lambda s: (s.backbone, s.image_size, s.limit or 0, s.runtime),
    )


def splits_with(layout: CacheLayout, ds: Any, fs: FeatureSet) -> list[str]:
    """The splits of ``ds`` that have original-view features of ``fs``, in the dataset's order."""
    have = {m.split for m in dataset_features(layout, ds) if _of(m) == fs}
    return [s for s in ds.splits if s in have]


def preferred_feature_set(
    sets: list[FeatureSet], run_manifest: Any, backbone_handle: str, image_size: int
) -> FeatureSet | None:
    """What to show first: the active run's features, else the active backbone at the active size (whole splits, the
    default runtime), else any whole-split set, else none."""
    if run_manifest is not None:
        m = run_manifest
        found = next(
            (
                s
                for s in sets
                if (s.backbone, s.image_size, s.limit, s.runtime) == (m.backbone, m.image_size, m.limit, m.runtime)
            ),
            None,
        )
        if found is not None:
            return found
    active = FeatureSet(backbone_handle, image_size, None, DEFAULT_RUNTIME)
    if active in sets:
        return active
    return next((s for s in sets if s.limit is None), None)


def missing_feature_splits(
    layout: CacheLayout, ds: Any, spec: Any, image_size: int, runtime: str = DEFAULT_RUNTIME, view: str = ORIGINAL
) -> list[str]:
    """The splits of ``ds`` that have no valid features of ``spec`` at ``image_size`` made by ``runtime`` (features of
    another runtime do not count: they are other features; ``auto`` has none until a job settles it)."""

    if runtime == AUTO:
        return list(ds.splits)
    return [
        s
        for s in ds.splits
        if load_cached_features(layout, feature_key_for(ds, s, spec, image_size, view, None, runtime)) is None
    ]


def settled_runtime(layout: CacheLayout, ds: Any, spec: Any, image_size: int, asked: str) -> str:
    """The runtime whose artifacts a page reads when ``asked`` is what a job would run: ``asked`` itself, or for
    ``auto`` the exact runtime that has the most splits of cached features of ``spec`` at ``image_size`` (what the job
    would use, see :func:`lib.runtimes.auto.choose`), else ``auto`` (nothing cached: the job times and decides). A page
    never times a runtime."""
    if asked != AUTO:
        return asked
    have = {
        rt: len(ds.splits) - len(missing_feature_splits(layout, ds, spec, image_size, rt)) for rt in AUTO_CANDIDATES
    }
    best = max(AUTO_CANDIDATES, key=lambda rt: have[rt])
    return best if have[best] else AUTO
