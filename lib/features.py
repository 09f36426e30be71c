"""Feature extraction: stream uint8 images through a backbone in batches, cache on disk.

Only one resized batch exists at a time, so peak memory stays near the size of the
features themselves, not the ~36 GB a resized copy of CIFAR-10 at 224 would take.
Work is checkpointed in chunks under ``<key>.partial/``, so an interrupted run resumes,
and the finished ``.npy`` appears by atomic rename with a JSON manifest written last.

    result = get_features(ds, "train", spec, image_size=128, view="flip", cache_dir="cache")
    result.features   # float32 [N, D], memory-mapped
    result.cache_hit  # True on the second call
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lib import config
from lib.atomic import atomic_path, read_json, save_npy_atomic, write_json_atomic
from lib.datasets import Dataset, subset_indices
from lib.errors import CacheWriteError

if TYPE_CHECKING:
    from lib.backbones import BackboneSpec, LoadedBackbone

VIEWS = ("original", "flip")
PREPROCESSING = "uint8/255,bilinear-resize"  # what happens between the uint8 images and the backbone
CHUNK = 4096  # images per checkpoint: a lost chunk costs seconds, and few files are written


@dataclass(frozen=True)
class ExtractProgress:
    """A progress report for a running extraction."""

    done: int
    total: int
    images_per_second: float
    eta_seconds: float


ProgressFn = Callable[[ExtractProgress], None]


@dataclass
class FeatureResult:
    """Features of one (dataset, split, backbone, size, view, limit), with their labels."""

    features: np.ndarray
    labels: np.ndarray
    indices: np.ndarray  # row i is image indices[i] of the split
    cache_hit: bool
    path: Path
    seconds: float
    images_per_second: float
    extract_seconds: float  # time the extraction itself took, when it ran (stored in the manifest)


def feature_cache_key(
    dataset_fingerprint: str, split: str, backbone_identity: str, image_size: int, view: str, limit: int | None
) -> str:
    """A short hash of everything that changes the feature bytes."""
    parts = {
        "dataset": dataset_fingerprint,
        "split": split,
        "backbone": backbone_identity,
        "image_size": int(image_size),
        "view": view,
        "limit": limit,
        "preprocessing": PREPROCESSING,
        "format": config.FEATURE_FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def feature_paths(cache_dir: Path | str, key: str) -> tuple[Path, Path]:
    """The ``.npy`` and manifest ``.json`` paths of a feature key."""
    folder = Path(cache_dir) / "features"
    return folder / f"{key}.npy", folder / f"{key}.json"


def load_cached_features(cache_dir: Path | str, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Memory-map cached features if the artifact and its manifest are complete and agree."""
    npy, manifest_path = feature_paths(cache_dir, key)
    manifest = read_json(manifest_path)
    if manifest is None:
        return None
    try:
        feats = np.load(npy, mmap_mode="r")
        if list(feats.shape) != manifest["shape"] or feats.dtype != np.float32:
            raise ValueError("shape mismatch")
    except (OSError, ValueError, KeyError, EOFError):
        # Damaged or partial artifact: drop it so it is recomputed, never trusted.
        for p in (manifest_path, npy):
            p.unlink(missing_ok=True)
        return None
    return feats, manifest


def _resolve_size(spec: BackboneSpec, image_size: int | None) -> int:
    return int(image_size or spec.default_size())


def cached_feature_result(
    dataset: Dataset, split: str, spec: BackboneSpec, image_size: int | None, view: str, limit: int | None, cache_dir: Path | str
) -> FeatureResult | None:
    """The cached features if present; never loads TensorFlow."""
    t0 = time.perf_counter()
    size = _resolve_size(spec, image_size)
    key = feature_cache_key(dataset.fingerprint, split, spec.identity(), size, view, limit)
    hit = load_cached_features(cache_dir, key)
    if hit is None:
        return None
    feats, manifest = hit
    labels = dataset.labels(split)
    indices = subset_indices(labels, limit)
    seconds = time.perf_counter() - t0
    return FeatureResult(
        feats, labels[indices], indices, True, feature_paths(cache_dir, key)[0], seconds,
        len(indices) / seconds if seconds else 0.0, float(manifest.get("extract_seconds", 0.0)),
    )  # fmt: skip


def get_features(
    dataset: Dataset,
    split: str,
    spec: BackboneSpec,
    cache_dir: Path | str,
    image_size: int | None = None,
    view: str = "original",
    limit: int | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    backbone: LoadedBackbone | None = None,
) -> FeatureResult:
    """Load features from the cache, or extract, cache and return them."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    cached = cached_feature_result(dataset, split, spec, image_size, view, limit, cache_dir)
    if cached is not None:
        return cached
    from lib.backbones import load_backbone

    size = _resolve_size(spec, image_size)
    if backbone is None:
        backbone = load_backbone(spec, cache_dir)
    backbone.check_size(size)
    key = feature_cache_key(dataset.fingerprint, split, spec.identity(), size, view, limit)
    npy, manifest_path = feature_paths(cache_dir, key)
    labels = dataset.labels(split)
    indices = subset_indices(labels, limit)
    t0 = time.perf_counter()
    try:
        _extract_to_cache(backbone, dataset.images(split), indices, size, view == "flip", batch_size, npy, progress)
    except (CacheWriteError, FileNotFoundError):
        # Another session extracting the same key may finish first and remove the shared
        # checkpoint folder under us; its finished artifact is as good as ours would be.
        if not _valid_chunk(npy, len(indices)):
            raise
    seconds = time.perf_counter() - t0
    feats = np.load(npy, mmap_mode="r")
    write_json_atomic(
        manifest_path,
        {
            "dataset": dataset.fingerprint,
            "source": dataset.source,
            "split": split,
            "backbone": spec.handle,
            "backbone_identity": spec.identity(),
            "image_size": size,
            "view": view,
            "limit": limit,
            "preprocessing": PREPROCESSING,
            "format": config.FEATURE_FORMAT_VERSION,
            "shape": list(feats.shape),
            "extract_seconds": seconds,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    return FeatureResult(feats, labels[indices], indices, False, npy, seconds, len(indices) / seconds if seconds else 0.0, seconds)


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
    timer = _Timer(len(images), progress)
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start : start + batch_size])
        out.append(backbone.embed(batch, image_size, flip))
        timer.step(len(batch))
    return np.concatenate(out) if out else np.zeros((0, backbone.feature_dim), np.float32)


class _Timer:
    def __init__(self, total: int, progress: ProgressFn | None, already: int = 0) -> None:
        self.total, self.progress, self.done = total, progress, already
        self.start_done, self.t0 = already, time.perf_counter()

    def step(self, n: int) -> None:
        self.done += n
        if self.progress is None:
            return
        elapsed = time.perf_counter() - self.t0
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        self.progress(ExtractProgress(self.done, self.total, rate, eta))


def _extract_to_cache(
    backbone: LoadedBackbone,
    images: np.ndarray,
    indices: np.ndarray,
    size: int,
    flip: bool,
    batch_size: int,
    target: Path,
    progress: ProgressFn | None,
) -> None:
    partial = target.with_suffix(".partial")
    try:
        partial.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CacheWriteError(f"Cannot create {partial}: {err}") from err
    n = len(indices)
    chunks = [(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]
    done_chunks = {s for s, e in chunks if _valid_chunk(partial / f"chunk_{s:08d}.npy", e - s)}
    timer = _Timer(n, progress, already=sum(e - s for s, e in chunks if s in done_chunks))
    if progress and done_chunks:
        timer.step(0)
    # Contiguous index runs are read as slices: fancy-indexing a memmap copies.
    contiguous = n == 0 or (indices[-1] - indices[0] + 1 == n)
    for s, e in chunks:
        if s in done_chunks:
            continue
        parts = []
        for b in range(s, e, batch_size):
            rows = indices[b : min(b + batch_size, e)]
            batch = np.asarray(images[rows[0] : rows[-1] + 1]) if contiguous else np.asarray(images[rows])
            parts.append(backbone.embed(batch, size, flip))
            timer.step(len(rows))
        save_npy_atomic(partial / f"chunk_{s:08d}.npy", np.concatenate(parts).astype(np.float32))
    dim = backbone.feature_dim
    with atomic_path(target, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        for s, e in chunks:
            out[s:e] = np.load(partial / f"chunk_{s:08d}.npy")
        out.flush()
        del out
    shutil.rmtree(partial, ignore_errors=True)


def _valid_chunk(path: Path, rows: int) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
        return arr.shape[0] == rows and arr.dtype == np.float32
    except (OSError, ValueError, EOFError):
        return False


def list_cached_features(cache_dir: Path | str) -> list[dict[str, Any]]:
    """Manifests of every complete feature artifact in the cache."""
    out = []
    for manifest_path in sorted((Path(cache_dir) / "features").glob("*.json")):
        manifest = read_json(manifest_path)
        if manifest and manifest_path.with_suffix(".npy").exists():
            manifest["key"] = manifest_path.stem
            out.append(manifest)
    return out


