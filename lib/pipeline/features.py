"""Feature extraction: stream uint8 images through a backbone in batches, cache on disk.

Only one resized batch exists at a time, so peak memory stays near the size of the
features themselves, not the ~36 GB a resized copy of CIFAR-10 at 224 would take.
Work is checkpointed in chunks (``<key>.partial/``), so an interrupted run resumes. The
finished ``.npy`` is written with ordinary file I/O (never through a memory map, which
dies with SIGBUS on a full disk), appears by atomic rename, and its manifest, written
last, carries a CRC-32 of the bytes: a damaged or bit-rotted file is re-extracted.

    result = get_features(ds, "train", spec, image_size=128, view="flip", cache_dir="cache")
    result.features   # float32 [N, D], memory-mapped
    result.cache_hit  # True on the second call
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lib import config
from lib.data.sources import Dataset, subset_indices
from lib.errors import BackboneError, CacheWriteError, ConfigError, UserFacingError
from lib.models.preprocess import PREPROCESSING_ID
from lib.store.atomic import atomic_path, check_free_space, check_writable, read_json, save_npy_atomic, write_json_atomic
from lib.store.layout import CacheLayout

if TYPE_CHECKING:
    from lib.models.backbones import LoadedBackbone
    from lib.models.specs import BackboneSpec

VIEWS = ("original", "flip")
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
class FeatureManifest:
    """What a feature artifact holds; written last, validated on every read."""

    dataset: str
    source: str
    split: str
    backbone: str
    backbone_identity: str
    image_size: int
    view: str
    limit: int | None
    shape: list[int]
    crc32: int
    runtime: str = "tf"
    preprocessing: str = PREPROCESSING_ID
    format: int = config.FEATURE_FORMAT_VERSION
    extract_seconds: float = 0.0
    created: str = ""
    key: str = ""

    @property
    def runtime_name(self) -> str:
        """The runtime that made these features (``tf``, ``tflite``, ``litert`` or ``litert-int8``)."""
        name = self.runtime.split(":")[0]
        return "tf" if name == "tflite" else name

    @classmethod
    def from_dict(cls, data: Any) -> FeatureManifest | None:
        """The manifest, or None if ``data`` is not a complete, well-typed one."""
        if not isinstance(data, dict):
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            m = cls(**{k: v for k, v in data.items() if k in names})
        except TypeError:
            return None
        ok = (
            isinstance(m.shape, list) and len(m.shape) == 2 and all(isinstance(d, int) and d >= 0 for d in m.shape)
            and isinstance(m.crc32, int) and isinstance(m.image_size, int) and m.view in VIEWS
            and all(isinstance(v, str) for v in (m.dataset, m.split, m.backbone, m.backbone_identity))
        )  # fmt: skip
        return m if ok else None


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
    dataset_fingerprint: str, split: str, backbone_identity: str, image_size: int, view: str, limit: int | None, runtime: str = "tf"
) -> str:
    """A short hash of everything that changes the feature bytes (the preprocessing code and the runtime included)."""
    parts: dict[str, Any] = {
        "dataset": dataset_fingerprint,
        "split": split,
        "backbone": backbone_identity,
        "image_size": int(image_size),
        "view": view,
        "limit": limit,
        "preprocessing": PREPROCESSING_ID,
        "format": config.FEATURE_FORMAT_VERSION,
    }
    if runtime not in ("tf", "tflite"):
        parts["runtime"] = runtime  # TF (and .tflite files) keep the keys they had before runtimes existed
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def file_crc32(path: Path) -> int:
    """CRC-32 of a file's bytes (fast: about 2 GB/s)."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


@functools.lru_cache(maxsize=128)
def _verified(path: str, size: int, mtime_ns: int, crc: int) -> bool:
    # Once per process per file version: a cache hit after the first is a memory map, nothing more.
    return file_crc32(Path(path)) == crc


def load_cached_features(cache_dir: Path | str, key: str) -> tuple[np.ndarray, FeatureManifest] | None:
    """Memory-map cached features if the artifact is complete and matches its manifest's shape and checksum."""
    npy, manifest_path = CacheLayout(cache_dir).feature_files(key)
    raw = read_json(manifest_path)
    if raw is None and not manifest_path.exists():
        return None
    manifest = FeatureManifest.from_dict(raw)
    try:
        if manifest is None:
            raise ValueError("damaged manifest")
        feats = np.load(npy, mmap_mode="r")
        st = npy.stat()
        if list(feats.shape) != manifest.shape or feats.dtype != np.float32 or not _verified(str(npy), st.st_size, st.st_mtime_ns, manifest.crc32):
            raise ValueError("shape or checksum mismatch")
    except (OSError, ValueError, EOFError):
        # Damaged, partial or bit-rotted artifact: drop it so it is recomputed, never trusted
        # (a read-only cache keeps the file, and it is still never used).
        with contextlib.suppress(UserFacingError):
            check_writable(npy)
            for p in (manifest_path, npy):
                p.unlink(missing_ok=True)
        return None
    return feats, manifest


def _resolve_size(spec: BackboneSpec, image_size: int | None) -> int:
    return int(image_size or spec.default_size())


def feature_key_for(dataset: Dataset, split: str, spec: BackboneSpec, size: int, view: str, limit: int | None, runtime: str) -> str:
    """The feature key of one (dataset, split, backbone, size, view, limit, runtime)."""
    from lib.models.runtimes import runtime_identity

    return feature_cache_key(dataset.fingerprint, split, spec.identity(), size, view, limit, runtime_identity(spec, runtime, dataset))


def cached_feature_result(
    dataset: Dataset, split: str, spec: BackboneSpec, image_size: int | None, view: str, limit: int | None, cache_dir: Path | str,
    runtime: str = "tf",
) -> FeatureResult | None:  # fmt: skip
    """The cached features if present; never loads TensorFlow."""
    t0 = time.perf_counter()
    size = _resolve_size(spec, image_size)
    key = feature_key_for(dataset, split, spec, size, view, limit, runtime)
    hit = load_cached_features(cache_dir, key)
    if hit is None:
        return None
    feats, manifest = hit
    labels = dataset.labels(split)
    indices = subset_indices(labels, limit)
    seconds = time.perf_counter() - t0
    return FeatureResult(
        feats, labels[indices], indices, True, CacheLayout(cache_dir).feature_files(key)[0], seconds,
        len(indices) / seconds if seconds else 0.0, manifest.extract_seconds,
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
    runtime: str = "tf",
) -> FeatureResult:
    """Load features from the cache, or extract (with ``runtime``), cache and return them."""
    if view not in VIEWS:
        raise ConfigError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    cached = cached_feature_result(dataset, split, spec, image_size, view, limit, cache_dir, runtime)
    if cached is not None:
        return cached
    from lib.models.runtimes import load_for_runtime

    size = _resolve_size(spec, image_size)
    if backbone is None:
        backbone = load_for_runtime(spec, runtime, size, dataset, cache_dir)
    backbone.check_size(size)
    job = ExtractionJob.plan(dataset, split, spec, size, view, limit, runtime, cache_dir)
    loaded = backbone
    return job.run(lambda todo, save, timer: _embed_locally(loaded, job, todo, save, timer, batch_size), progress, backbone.feature_dim)


Fill = Callable[[list[tuple[int, int]], Callable[[int, np.ndarray], None], "_Timer"], None]


@dataclass
class ExtractionJob:
    """One feature artifact to make: which rows, where its checkpoint chunks and final files go.

    Shared by the local engine and the Ray engine (:mod:`lib.pipeline.ray_engine`): an engine only
    computes the missing chunks (``fill``); the chunks, the final ``.npy`` and its manifest are
    written here, the same way whichever engine ran.
    """

    dataset: Dataset
    split: str
    spec: BackboneSpec
    size: int
    view: str
    limit: int | None
    runtime: str
    cache_dir: Path | str
    key: str
    labels: np.ndarray
    indices: np.ndarray

    @classmethod
    def plan(cls, dataset: Dataset, split: str, spec: BackboneSpec, size: int, view: str, limit: int | None, runtime: str,
             cache_dir: Path | str) -> ExtractionJob:  # fmt: skip
        labels = dataset.labels(split)
        key = feature_key_for(dataset, split, spec, size, view, limit, runtime)
        return cls(dataset, split, spec, size, view, limit, runtime, cache_dir, key, labels, subset_indices(labels, limit))

    @property
    def flip(self) -> bool:
        return self.view == "flip"

    @property
    def files(self) -> tuple[Path, Path, Path]:
        """The final ``.npy``, its manifest, and the checkpoint folder."""
        layout = CacheLayout(self.cache_dir)
        npy, manifest = layout.feature_files(self.key)
        return npy, manifest, layout.feature_partial(self.key)

    def read_rows(self, start: int, end: int) -> np.ndarray:
        """uint8 images of rows ``[start, end)`` (contiguous index runs are read as slices: fancy-indexing a memmap copies)."""
        rows = self.indices[start:end]
        images = self.dataset.images(self.split)
        if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
            return np.ascontiguousarray(images[rows[0] : rows[-1] + 1])
        return np.ascontiguousarray(images[rows])

    def run(self, fill: Fill, progress: ProgressFn | None, dim: int) -> FeatureResult:
        """Compute the missing chunks with ``fill``, write the final file and its manifest; the features (or those
        another writer of the same key finished first)."""
        npy, _, partial = self.files
        t0 = time.perf_counter()
        try:
            crc = _extract_to_cache(fill, len(self.indices), dim, self.size, npy, partial, progress)
        except (CacheWriteError, FileNotFoundError):
            # Another session extracting the same key may finish first and remove the shared
            # checkpoint folder under us; its finished artifact is as good as ours would be.
            finished = _wait_for_other_writer(self.cache_dir, self.key)
            if finished is None:
                raise
            return finished_result(finished, self.labels, self.indices, npy)
        return self._finish(crc, time.perf_counter() - t0)

    def _finish(self, crc: int, seconds: float) -> FeatureResult:
        """Write the manifest (last: it is what makes the artifact valid) and return the features."""
        from lib.models.runtimes import runtime_identity

        npy, manifest_path, _ = self.files
        feats = np.load(npy, mmap_mode="r")
        manifest = FeatureManifest(
            dataset=self.dataset.fingerprint, source=self.dataset.source, split=self.split, backbone=self.spec.handle,
            backbone_identity=self.spec.identity(), image_size=self.size, view=self.view, limit=self.limit, shape=list(feats.shape),
            crc32=crc, runtime=runtime_identity(self.spec, self.runtime, self.dataset), extract_seconds=seconds,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )  # fmt: skip
        write_json_atomic(manifest_path, dataclasses.asdict(manifest))
        n = len(self.indices)
        return FeatureResult(feats, self.labels[self.indices], self.indices, False, npy, seconds, n / seconds if seconds else 0.0, seconds)


def _embed_locally(backbone: LoadedBackbone, job: ExtractionJob, todo: list[tuple[int, int]], save: Callable[[int, np.ndarray], None],
                   timer: _Timer, batch_size: int) -> None:  # fmt: skip
    """The local engine: each missing chunk in turn, a batch at a time, in this process."""
    for s, e in todo:
        parts = []
        for b in range(s, e, batch_size):
            end = min(b + batch_size, e)
            parts.append(backbone.embed(job.read_rows(b, end), job.size, job.flip))
            timer.step(end - b)
        save(s, np.concatenate(parts))


def _wait_for_other_writer(cache_dir: Path | str, key: str, seconds: float = 5.0) -> tuple[np.ndarray, FeatureManifest] | None:
    """The other writer renames its ``.npy`` a moment before its manifest lands: give it that moment."""
    npy, _ = CacheLayout(cache_dir).feature_files(key)
    deadline = time.monotonic() + seconds
    while True:
        hit = load_cached_features(cache_dir, key)
        if hit is not None or not npy.exists() or time.monotonic() > deadline:
            return hit
        time.sleep(0.05)


def finished_result(hit: tuple[np.ndarray, FeatureManifest], labels: np.ndarray, indices: np.ndarray, npy: Path) -> FeatureResult:
    """A :class:`FeatureResult` for features another writer finished."""
    feats, manifest = hit
    return FeatureResult(feats, labels[indices], indices, True, npy, 0.0, 0.0, manifest.extract_seconds)


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


def _extract_to_cache(fill: Fill, n: int, dim: int, size: int, target: Path, partial: Path, progress: ProgressFn | None) -> int:
    """Let ``fill`` compute the missing checkpoint chunks, then write ``target``; returns its CRC-32."""
    chunks = [(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]
    check_writable(partial)
    try:
        partial.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CacheWriteError(f"Cannot create {partial}: {err}") from err
    done_chunks = {s for s, e in chunks if _valid_chunk(partial / f"chunk_{s:08d}.npy", e - s)}
    row_bytes = 4 * max(dim, 1)
    # What is still to write: the missing chunks, then the final file beside them.
    check_free_space(target.parent, row_bytes * (sum(e - s for s, e in chunks if s not in done_chunks) + n))
    timer = _Timer(n, progress, already=sum(e - s for s, e in chunks if s in done_chunks))
    if progress and done_chunks:
        timer.step(0)

    def save(start: int, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if not np.all(np.isfinite(block)):
            raise BackboneError(f"The backbone returned NaN or infinite features at {size}px; nothing was cached.")
        # create_parent=False: if another writer finished and removed the folder, stop rather than orphan a chunk.
        save_npy_atomic(partial / f"chunk_{start:08d}.npy", block, create_parent=False)

    fill([(s, e) for s, e in chunks if s not in done_chunks], save, timer)
    missing = [s for s, e in chunks if not _valid_chunk(partial / f"chunk_{s:08d}.npy", e - s)]
    if missing and not partial.exists():
        raise CacheWriteError(f"{partial} was removed while extracting (another writer finished the same features).")
    if missing:
        raise BackboneError(f"{len(missing)} chunk(s) of features were not computed; nothing was cached. Run again to resume.")
    crc = _write_npy_from_chunks(target, partial, chunks, dim)
    shutil.rmtree(partial, ignore_errors=True)
    return crc


def _write_npy_from_chunks(target: Path, partial: Path, chunks: list[tuple[int, int]], dim: int) -> int:
    """Concatenate the chunks into one ``.npy`` with plain writes (a full disk is an error, not SIGBUS)."""
    n = chunks[-1][1] if chunks else 0
    with atomic_path(target, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": (n, dim)})
            for s, _ in chunks:
                fh.write(np.ascontiguousarray(np.load(partial / f"chunk_{s:08d}.npy"), dtype=np.float32).tobytes())
        crc = file_crc32(tmp)
    return crc


def _valid_chunk(path: Path, rows: int) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
        return arr.shape[0] == rows and arr.dtype == np.float32
    except (OSError, ValueError, EOFError):
        return False


def list_cached_features(cache_dir: Path | str) -> list[FeatureManifest]:
    """Manifests of every complete feature artifact in the cache (damaged manifests are skipped)."""
    out = []
    for manifest_path in sorted(CacheLayout(cache_dir).features.glob("*.json")):
        manifest = FeatureManifest.from_dict(read_json(manifest_path))
        if manifest is not None and manifest_path.with_suffix(".npy").exists():
            manifest.key = manifest_path.stem
            out.append(manifest)
    return out
