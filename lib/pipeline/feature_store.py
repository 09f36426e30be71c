"""Feature artifacts on disk: the typed manifest, the cache key, the checksum, and the chunked writer.

An artifact is ``features/<key>.npy`` plus ``<key>.json`` (its :class:`FeatureManifest`, written last, carrying a
CRC-32 of the bytes): a damaged or bit-rotted file is dropped and extracted again, never trusted. Work in progress is
checkpointed as chunks under ``<key>.partial/``, so an interrupted extraction resumes; the final ``.npy`` is written
with ordinary file I/O (never through a memory map, which dies with SIGBUS on a full disk) and appears by rename.

    key = feature_cache_key(ds.fingerprint, "train", spec.identity(), 128, "flip", None, runtime_key_part)
    hit = load_cached_features(layout, key)       # (memory-mapped features, manifest) or None
    list_cached_features(layout)                  # every complete artifact's manifest
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lib import config
from lib.config import VIEWS
from lib.errors import BackboneError, CacheWriteError, UserFacingError
from lib.models.preprocess import PREPROCESSING_ID
from lib.runtimes import DEFAULT_RUNTIME, name_of_identity
from lib.store.atomic import atomic_path, check_free_space, check_writable, read_json, save_npy_atomic
from lib.store.layout import CacheLayout, artifact_key

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
    runtime: str = DEFAULT_RUNTIME  # the runtime's identity (name, converter version, calibration)
    preprocessing: str = PREPROCESSING_ID
    format: int = config.FEATURE_FORMAT_VERSION
    extract_seconds: float = 0.0
    created: str = ""
    key: str = ""
    reduced: dict[str, Any] | None = (
        None  # a hosting bundle's stand-in: {"method", "dims", "of"} (lib.pipeline.reduced)
    )

    @property
    def runtime_name(self) -> str:
        """The runtime a user would choose for these features (a ``.tflite`` backbone's own counts as the default)."""
        return name_of_identity(self.runtime)

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
            isinstance(m.shape, list)
            and len(m.shape) == 2
            and all(isinstance(d, int) and d >= 0 for d in m.shape)
            and isinstance(m.crc32, int)
            and isinstance(m.image_size, int)
            and m.view in VIEWS
            and all(isinstance(v, str) for v in (m.dataset, m.split, m.backbone, m.backbone_identity))
            and (
                m.reduced is None
                or (
                    isinstance(m.reduced, dict)
                    and all(type(m.reduced.get(k)) is int and m.reduced[k] > 0 for k in ("dims", "of"))
                )
            )
        )
        return m if ok else None


def feature_cache_key(
    dataset_fingerprint: str,
    split: str,
    backbone_identity: str,
    image_size: int,
    view: str,
    limit: int | None,
    runtime_key: str | None = None,
) -> str:
    """A short hash of everything that changes the feature bytes: the preprocessing code, and ``runtime_key`` (what
    :meth:`lib.runtimes.Runtime.key_part` adds; None for TensorFlow, whose keys predate runtimes)."""
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
    if runtime_key is not None:
        parts["runtime"] = runtime_key
    return artifact_key(parts)


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


def load_cached_features(
    layout: CacheLayout, key: str, reduced_ok: bool = False
) -> tuple[np.ndarray, FeatureManifest] | None:
    """Memory-map cached features if the artifact is complete and matches its manifest's shape and checksum. A hosting
    bundle's reduced stand-in (:mod:`lib.pipeline.reduced`) counts only with ``reduced_ok`` (neighbour search); for
    anything else it is a miss, and extracting the real features replaces it."""
    npy, manifest_path = layout.feature_files(key)
    raw = read_json(manifest_path)
    if raw is None and not manifest_path.exists():
        return None
    manifest = FeatureManifest.from_dict(raw)
    if manifest is not None and manifest.reduced is not None and not reduced_ok:
        return None
    try:
        if manifest is None:
            raise ValueError("damaged manifest")
        feats = np.load(npy, mmap_mode="r")
        st = npy.stat()
        dtype = np.float16 if manifest.reduced else np.float32
        if (
            list(feats.shape) != manifest.shape
            or feats.dtype != dtype
            or not _verified(str(npy), st.st_size, st.st_mtime_ns, manifest.crc32)
        ):
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


def list_cached_features(layout: CacheLayout) -> list[FeatureManifest]:
    """Manifests of every complete feature artifact in the cache (damaged manifests are skipped)."""
    out = []
    for key in layout.feature_keys():
        npy, manifest_path = layout.feature_files(key)
        manifest = FeatureManifest.from_dict(read_json(manifest_path))
        if manifest is not None and npy.exists():
            manifest.key = key
            out.append(manifest)
    return out


class Timer:
    """Images done, images/s and ETA for a progress callback."""

    def __init__(self, total: int, progress: ProgressFn | None, already: int = 0) -> None:
        self.total, self.progress, self.done = total, progress, already
        self.start_done, self.t0 = already, time.perf_counter()

    def step(self, n: int) -> None:
        """``n`` more images are done."""
        self.done += n
        if self.progress is None:
            return
        elapsed = time.perf_counter() - self.t0
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        self.progress(ExtractProgress(self.done, self.total, rate, eta))


# fill(missing chunks as (start, end) rows, save(start, block), timer): what an engine does
Fill = Callable[[list[tuple[int, int]], Callable[[int, np.ndarray], None], Timer], None]


def extract_to_cache(
    fill: Fill, n: int, dim: int, size: int, layout: CacheLayout, key: str, progress: ProgressFn | None
) -> int:
    """Let ``fill`` compute the missing checkpoint chunks, then write the final ``.npy``; returns its CRC-32."""
    target, _ = layout.feature_files(key)
    partial = layout.feature_partial(key)
    chunks = [(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]
    check_writable(partial)
    try:
        partial.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CacheWriteError(f"Cannot create {partial}: {err}") from err
    done_chunks = {s for s, e in chunks if _valid_chunk(layout.feature_chunk(key, s), e - s)}
    row_bytes = 4 * max(dim, 1)
    # What is still to write: the missing chunks, then the final file beside them.
    check_free_space(target.parent, row_bytes * (sum(e - s for s, e in chunks if s not in done_chunks) + n))
    timer = Timer(n, progress, already=sum(e - s for s, e in chunks if s in done_chunks))
    if progress and done_chunks:
        timer.step(0)

    def save(start: int, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if not np.all(np.isfinite(block)):
            raise BackboneError(f"The backbone returned NaN or infinite features at {size}px; nothing was cached.")
        # create_parent=False: if another writer finished and removed the folder, stop rather than orphan a chunk.
        save_npy_atomic(layout.feature_chunk(key, start), block, create_parent=False)

    fill([(s, e) for s, e in chunks if s not in done_chunks], save, timer)
    missing = [s for s, e in chunks if not _valid_chunk(layout.feature_chunk(key, s), e - s)]
    if missing and (not partial.exists() or target.exists()):
        # Another writer of the same key finished: its final file is in place and it is removing (or has removed) the
        # shared checkpoint folder, chunk by chunk. Its artifact is as good as ours would be (ExtractionJob.run waits
        # for it).
        raise CacheWriteError(f"{partial} was removed while extracting (another writer finished the same features).")
    if missing:
        raise BackboneError(
            f"{len(missing)} chunk(s) of features were not computed; nothing was cached. Run again to resume."
        )
    crc = _write_npy_from_chunks(target, [layout.feature_chunk(key, s) for s, _ in chunks], n, dim)
    shutil.rmtree(partial, ignore_errors=True)
    return crc


def _write_npy_from_chunks(target: Path, chunk_files: list[Path], n: int, dim: int) -> int:
    """Concatenate the chunks into one ``.npy`` with plain writes (a full disk is an error, not SIGBUS)."""
    with atomic_path(target, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh,
                {
                    "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                    "fortran_order": False,
                    "shape": (n, dim),
                },
            )
            for path in chunk_files:
                fh.write(np.ascontiguousarray(np.load(path), dtype=np.float32).tobytes())
        crc = file_crc32(tmp)
    return crc


def _valid_chunk(path: Path, rows: int) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
        return arr.shape[0] == rows and arr.dtype == np.float32
    except (OSError, ValueError, EOFError):
        return False
