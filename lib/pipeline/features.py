"""Features through one door: :func:`ensure_features` checks the cache once and, on a miss, hands an
:class:`ExtractionJob` to an engine (this process, :class:`lib.pipeline.engines.LocalEngine`, or Ray workers,
:class:`lib.pipeline.ray_engine.RayEngine`). Every caller (the CLI, training, the audit, the map, the benchmark,
the app) asks here, so the cache is checked in one place and the engine choice is an argument.

Only one resized batch exists at a time, so peak memory stays near the size of the features themselves, not the
~36 GB a resized copy of CIFAR-10 at 224 would take. The artifact, its checkpoints and its manifest are
:mod:`lib.pipeline.feature_store`'s.

    result = ensure_features(ds, "train", spec, layout, image_size=128, view="flip")
    result.features   # float32 [N, D], memory-mapped
    result.cache_hit  # True on the second call
    with open_engine(ray_options, layout) as engine:          # None: this process
        ensure_features(ds, "test", spec, layout, 224, engine=engine)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lib.config import FLIP, ORIGINAL, VIEWS
from lib.data.sources import Dataset, subset_indices
from lib.errors import CacheWriteError, ConfigError
from lib.pipeline.engines import LocalEngine
from lib.pipeline.feature_store import (
    ExtractProgress,
    FeatureManifest,
    Fill,
    ProgressFn,
    Timer,
    extract_to_cache,
    feature_cache_key,
    list_cached_features,
    load_cached_features,
)
from lib.pipeline.reduced import load_basis
from lib.runtimes import DEFAULT_RUNTIME, effective
from lib.store.atomic import write_json_atomic
from lib.store.layout import CacheLayout

if TYPE_CHECKING:
    from lib.models.specs import BackboneSpec
    from lib.runtimes.backbones import LoadedBackbone

__all__ = [
    "VIEWS",
    "ExtractProgress",
    "ExtractionJob",
    "FeatureManifest",
    "FeatureResult",
    "ProgressFn",
    "cached_feature_result",
    "ensure_features",
    "extract_features",
    "feature_key_for",
    "list_cached_features",
    "load_cached_features",
]


@dataclass
class FeatureResult:
    """Features of one (dataset, split, backbone, size, view, limit, runtime), with their labels."""

    features: np.ndarray
    labels: np.ndarray
    indices: np.ndarray  # row i is image indices[i] of the split
    cache_hit: bool
    path: Path
    seconds: float
    images_per_second: float
    extract_seconds: float  # time the extraction itself took, when it ran (stored in the manifest)
    basis: np.ndarray | None = None  # reduced features only (a hosting bundle's): the projection a query needs


class Engine(Protocol):
    """Where a missing feature artifact is computed: :meth:`extract` fills an :class:`ExtractionJob`'s chunks."""

    def extract(self, job: ExtractionJob, progress: ProgressFn | None, batch_size: int) -> FeatureResult:
        """Compute ``job`` and return its features."""
        ...


def feature_key_for(
    dataset: Dataset, split: str, spec: BackboneSpec, size: int, view: str, limit: int | None, runtime: str
) -> str:
    """The feature key of one (dataset, split, backbone, size, view, limit, runtime)."""
    part = effective(spec, runtime).key_part(spec, dataset)
    return feature_cache_key(dataset.fingerprint, split, spec.identity(), size, view, limit, part)


def cached_image_counter(
    dataset: Dataset, parts: list[tuple[BackboneSpec, int, str, str]], limit: int | None, layout: CacheLayout
) -> Callable[[str], int]:
    """For ``--runtime auto``: a function of a runtime that says how many images of ``parts`` ((backbone, size, split,
    view) each) have valid cached features made by it (read from the manifests and checksums; nothing is loaded)."""

    def count(runtime: str) -> int:
        keys = (
            (feature_key_for(dataset, split, spec, size, view, limit, runtime), split)
            for spec, size, split, view in parts
        )
        return sum(
            dataset.subset_size(split, limit) for key, split in keys if load_cached_features(layout, key) is not None
        )

    return count


def cached_feature_result(
    dataset: Dataset,
    split: str,
    spec: BackboneSpec,
    image_size: int | None,
    view: str,
    limit: int | None,
    layout: CacheLayout,
    runtime: str = DEFAULT_RUNTIME,
    reduced_ok: bool = False,
) -> FeatureResult | None:
    """The cached features if present; never loads TensorFlow. ``reduced_ok``: a hosting bundle's reduced stand-in
    counts too (for neighbour search only; its ``basis`` is set)."""
    t0 = time.perf_counter()
    key = feature_key_for(dataset, split, spec, int(image_size or spec.default_size()), view, limit, runtime)
    hit = load_cached_features(layout, key, reduced_ok)
    if hit is None:
        return None
    feats, manifest = hit
    basis = None
    if manifest.reduced:
        basis = load_basis(layout, key, manifest.reduced["dims"], manifest.reduced["of"])
        if basis is None:
            return None
    labels = dataset.labels(split)
    indices = subset_indices(labels, limit)
    seconds = time.perf_counter() - t0
    return FeatureResult(
        feats,
        labels[indices],
        indices,
        True,
        layout.feature_files(key)[0],
        seconds,
        len(indices) / seconds if seconds else 0.0,
        manifest.extract_seconds,
        basis,
    )


def ensure_features(
    dataset: Dataset,
    split: str,
    spec: BackboneSpec,
    layout: CacheLayout,
    image_size: int | None = None,
    view: str = ORIGINAL,
    limit: int | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    runtime: str = DEFAULT_RUNTIME,
    engine: Engine | None = None,
) -> FeatureResult:
    """The features of (``dataset``, ``split``, ``spec`` at ``image_size``, ``view``, ``limit``, ``runtime``): from the
    cache, else extracted by ``engine`` (default: a :class:`lib.pipeline.engines.LocalEngine` for this call) and
    cached."""
    if view not in VIEWS:
        raise ConfigError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    cached = cached_feature_result(dataset, split, spec, image_size, view, limit, layout, runtime)
    if cached is not None:
        return cached
    job = ExtractionJob.plan(dataset, split, spec, int(image_size or spec.default_size()), view, limit, runtime, layout)
    if engine is None:
        engine = LocalEngine(layout)
    return engine.extract(job, progress, batch_size)


@dataclass
class ExtractionJob:
    """One feature artifact to make: which rows, and where its checkpoint chunks and final files go.

    An engine only computes the missing chunks (``fill``); the chunks, the final ``.npy`` and its manifest are
    written here, the same way whichever engine ran.
    """

    dataset: Dataset
    split: str
    spec: BackboneSpec
    size: int
    view: str
    limit: int | None
    runtime: str
    layout: CacheLayout
    key: str
    labels: np.ndarray
    indices: np.ndarray

    @classmethod
    def plan(
        cls,
        dataset: Dataset,
        split: str,
        spec: BackboneSpec,
        size: int,
        view: str,
        limit: int | None,
        runtime: str,
        layout: CacheLayout,
    ) -> ExtractionJob:
        """The job for one artifact (its key from the one key function)."""
        labels = dataset.labels(split)
        key = feature_key_for(dataset, split, spec, size, view, limit, runtime)
        return cls(dataset, split, spec, size, view, limit, runtime, layout, key, labels, subset_indices(labels, limit))

    @property
    def flip(self) -> bool:
        """Whether this is the mirrored view."""
        return self.view == FLIP

    def read_rows(self, start: int, end: int) -> np.ndarray:
        """uint8 images of rows ``[start, end)`` (contiguous index runs are read as slices: fancy-indexing a memmap
        copies)."""
        rows = self.indices[start:end]
        images = self.dataset.images(self.split)
        if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
            return np.ascontiguousarray(images[rows[0] : rows[-1] + 1])
        return np.ascontiguousarray(images[rows])

    def run(self, fill: Fill, progress: ProgressFn | None, dim: int) -> FeatureResult:
        """Compute the missing chunks with ``fill``, write the final file and its manifest; the features (or those
        another writer of the same key finished first)."""
        npy, _ = self.layout.feature_files(self.key)
        t0 = time.perf_counter()
        try:
            crc = extract_to_cache(fill, len(self.indices), dim, self.size, self.layout, self.key, progress)
        except (CacheWriteError, FileNotFoundError):
            # Another session extracting the same key may finish first and remove the shared
            # checkpoint folder under us; its finished artifact is as good as ours would be.
            finished = _wait_for_other_writer(self.layout, self.key)
            if finished is None:
                raise
            feats, manifest = finished
            return FeatureResult(
                feats, self.labels[self.indices], self.indices, True, npy, 0.0, 0.0, manifest.extract_seconds
            )
        return self._finish(crc, time.perf_counter() - t0)

    def _finish(self, crc: int, seconds: float) -> FeatureResult:
        """Write the manifest (last: it is what makes the artifact valid) and return the features."""
        npy, manifest_path = self.layout.feature_files(self.key)
        feats = np.load(npy, mmap_mode="r")
        manifest = FeatureManifest(
            dataset=self.dataset.fingerprint,
            source=self.dataset.source,
            split=self.split,
            backbone=self.spec.handle,
            backbone_identity=self.spec.identity(),
            image_size=self.size,
            view=self.view,
            limit=self.limit,
            shape=list(feats.shape),
            crc32=crc,
            runtime=effective(self.spec, self.runtime).identity(self.spec, self.dataset),
            extract_seconds=seconds,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        write_json_atomic(manifest_path, dataclasses.asdict(manifest))
        n = len(self.indices)
        return FeatureResult(
            feats,
            self.labels[self.indices],
            self.indices,
            False,
            npy,
            seconds,
            n / seconds if seconds else 0.0,
            seconds,
        )


def _wait_for_other_writer(
    layout: CacheLayout, key: str, seconds: float = 5.0
) -> tuple[np.ndarray, FeatureManifest] | None:
    """The other writer renames its ``.npy`` a moment before its manifest lands: give it that moment."""
    npy, _ = layout.feature_files(key)
    deadline = time.monotonic() + seconds
    while True:
        hit = load_cached_features(layout, key)
        if hit is not None or not npy.exists() or time.monotonic() > deadline:
            return hit
        time.sleep(0.05)


def extract_features(
    backbone: LoadedBackbone,
    images: np.ndarray,
    image_size: int,
    flip: bool = False,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Features of uint8 ``images`` in batches (no cache): float32 ``[N, D]``."""
    out: list[np.ndarray] = []
    timer = Timer(len(images), progress)
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start : start + batch_size])
        out.append(backbone.embed(batch, image_size, flip))
        timer.step(len(batch))
    return np.concatenate(out) if out else np.zeros((0, backbone.feature_dim), np.float32)


EmbedFn = Callable[[Any], Any]
