"""Data sources and converted datasets: one source string, converted once, memory-mapped after.

A *source* is one string used everywhere (CLI, UI, tests):

- ``cifar10``: download the official archive once, verify its MD5, convert (:mod:`lib.data.cifar`);
- a path to ``cifar-10-python.tar.gz`` or an extracted ``cifar-10-batches-py/``;
- a path to an image-folder dataset ``<split>/<class>/*.jpg`` as a folder,
  ``.tar.gz``/``.tgz``/``.tar`` or ``.zip`` (:mod:`lib.data.folders`), converted by streaming it,
  resumably and never a whole split in memory (:mod:`lib.data.convert`).

Every source is converted once into uint8 ``.npy`` arrays in the cache (see
:class:`lib.store.layout.CacheLayout`), keyed by a content fingerprint, which later loads
memory-map in milliseconds. Fingerprints are memoised per process by size and mtime.

    ds = load_dataset("../shared/data/cifar10-jpeg.tar.gz", CacheLayout("cache"))
    images, labels = ds.images("test"), ds.labels("test")   # uint8 [N,32,32,3], int64 [N]
    idx = subset_indices(labels, limit=100)                  # first 100 of each class
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lib import config
from lib.data import cifar, convert, folders
from lib.data.cifar import ProgressFn, ReadResult
from lib.data.meta import DatasetMeta
from lib.errors import CacheWriteError, DataSourceError, UserFacingError
from lib.store.atomic import atomic_dir, check_writable
from lib.store.fingerprints import digest_of_files, existing_path, file_digest, hash_file, tree_digest
from lib.store.layout import DATASET_FILES, CacheLayout, check_name

MAX_SOURCE_CHARS = 1024  # longer strings are refused before they reach the file system
Reader = Callable[[], ReadResult]
Converter = Callable[
    [str, str, str, CacheLayout], "Dataset"
]  # (source, kind, fingerprint, layout) -> the converted dataset


@dataclass(frozen=True)
class Dataset:
    """A converted dataset: class names, splits and memory-mapped uint8 arrays."""

    source: str
    kind: str
    fingerprint: str
    path: Path
    classes: tuple[str, ...]
    splits: tuple[str, ...]
    counts: dict[str, list[int]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    image_shape: tuple[int, int, int] = (32, 32, 3)

    def images(self, split: str) -> np.ndarray:
        """uint8 images ``[N, H, W, 3]`` of ``split``, memory-mapped read-only."""
        self._check_split(split)
        return np.load(self.path / DATASET_FILES.images(split), mmap_mode="r")

    def labels(self, split: str) -> np.ndarray:
        """int64 class indices ``[N]`` of ``split``."""
        self._check_split(split)
        return np.load(self.path / DATASET_FILES.labels(split))

    def size(self, split: str) -> int:
        """Number of images in ``split``."""
        return int(sum(self.counts[split]))

    def subset_size(self, split: str, limit: int | None) -> int:
        """How many images of ``split`` the first ``limit`` per class keep (:func:`subset_indices`; all if None)."""
        return self.size(split) if limit is None else int(sum(min(n, limit) for n in self.counts[split]))

    def require_classes(self, what: str, split: str = "train") -> None:
        """:class:`DataSourceError` unless ``split`` holds images of at least two classes: ``what`` (training, an
        audit, a map fitted on labels) has nothing to tell apart otherwise."""
        present = [c for c, n in zip(self.classes, self.counts.get(split, [])) if n]
        if len(present) < 2:
            shown = ", ".join(repr(c[:40]) for c in present) or "none"
            raise DataSourceError(
                f"{what} needs images of at least two classes in {split!r}; this dataset has {len(present)} ({shown}). "
                "Add a folder per class: <split>/<class>/<image>."
            )

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description: classes and per-split, per-class counts."""
        return {
            "source": self.source,
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "cache_path": str(self.path),
            "classes": list(self.classes),
            "image_shape": list(self.image_shape),
            "splits": {
                s: {
                    "total": self.size(s),
                    "per_class": dict(zip(self.classes, self.counts[s])),
                    "skipped": self.skipped.get(s, 0),
                }
                for s in self.splits
            },
        }

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise DataSourceError(f"Dataset {self.source!r} has no split {split!r}; it has {', '.join(self.splits)}.")


def subset_indices(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Indices of the first ``limit`` items of each class, in dataset order (all if None)."""
    labels = np.asarray(labels)
    if limit is None:
        return np.arange(len(labels))
    if limit <= 0:
        raise DataSourceError(f"--limit must be a positive number of images per class, got {limit}.")
    keep = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        keep[np.flatnonzero(labels == cls)[:limit]] = True
    return np.flatnonzero(keep)


# --------------------------------------------------------------------------- loading

_CIFAR10_FINGERPRINT = f"cifar10-{config.CIFAR10_MD5[:16]}"


def check_source_text(source: str) -> str:
    """The trimmed source string, or :class:`DataSourceError` if it is empty or absurdly long."""
    text = str(source).strip()
    if not text:
        raise DataSourceError("No data source given. Use 'cifar10' or a path to a dataset.")
    if len(text) > MAX_SOURCE_CHARS or "\x00" in text:
        raise DataSourceError(
            f"The data source is {len(text):,} characters long; give 'cifar10' or a path to a dataset."
        )
    return text


CACHE_PREFIX = "cache:"  # "cache:<fingerprint>": a dataset already converted in the cache (what a demo bundle brings)


def _cache_fingerprint(source: str) -> str:

    try:
        return check_name(source[len(CACHE_PREFIX) :].strip(), "dataset fingerprint")
    except UserFacingError as err:
        raise DataSourceError(f"{source[:80]!r} does not name a converted dataset (cache:<fingerprint>).") from err


def load_dataset(source: str, layout: CacheLayout, progress: ProgressFn | None = None) -> Dataset:
    """Resolve ``source``, converting it into the cache on first use."""
    source = check_source_text(source)
    if source.startswith(CACHE_PREFIX):
        found = _load_cached(layout, _cache_fingerprint(source), source)
        if found is None:
            raise DataSourceError(
                f"No dataset {source!r} in {layout.datasets} (a 'cache:' source names one already converted there, "
                "for example by a demo bundle)."
            )
        return found
    if source.lower() == "cifar10":
        cached = _load_cached(layout, _CIFAR10_FINGERPRINT, source)
        if cached is not None:
            return cached
        archive = cifar.download_cifar10(layout.cifar_download(), progress=progress)
        return _convert(
            source, "cifar10-pickle", _CIFAR10_FINGERPRINT, layout, lambda: cifar.read_cifar_tar(archive), progress
        )

    path = existing_path(source)
    if path is None:
        raise DataSourceError(
            f"Data source {source!r} is neither 'cifar10' nor an existing path. Give a cifar-10-python.tar.gz, a "
            "cifar-10-batches-py/ folder, or an image-folder dataset (<split>/<class>/*.jpg, as a folder, .tar.gz "
            "or .zip)."
        )
    kind, fingerprint, converter = _inspect_path(path, progress)
    cached = _load_cached(layout, fingerprint, source)
    if cached is not None:
        return cached
    return converter(source, kind, fingerprint, layout)


def cached_dataset_status(source: str, layout: CacheLayout) -> Dataset | None:
    """The converted dataset if it is already in the cache, without converting or downloading."""
    try:
        text = check_source_text(source)
        if text.startswith(CACHE_PREFIX):
            return _load_cached(layout, _cache_fingerprint(text), text)
        if text.lower() == "cifar10":
            return _load_cached(layout, _CIFAR10_FINGERPRINT, text)
        path = existing_path(text)
        if path is None:
            return None
        _, fingerprint, _ = _inspect_path(path, None)
        return _load_cached(layout, fingerprint, text)
    except DataSourceError:
        return None


def _load_cached(layout: CacheLayout, fingerprint: str, source: str) -> Dataset | None:
    folder = layout.dataset_dir(fingerprint)
    if not folder.is_dir():
        return None
    meta = DatasetMeta.read(folder)
    try:
        if meta is None:
            raise ValueError("damaged metadata")
        ds = Dataset(
            source=source,
            kind=meta.kind,
            fingerprint=fingerprint,
            path=folder,
            classes=tuple(meta.classes),
            splits=tuple(meta.splits),
            counts={k: list(v) for k, v in meta.counts.items()},
            skipped=dict(meta.skipped),
            image_shape=(int(meta.image_shape[0]), int(meta.image_shape[1]), int(meta.image_shape[2])),
        )
        for split in ds.splits:
            images, labels = ds.images(split), ds.labels(split)
            if (
                images.shape != (ds.size(split), *ds.image_shape)
                or images.dtype != np.uint8
                or labels.shape != (ds.size(split),)
            ):
                raise ValueError(f"shape mismatch in {split}")
        return ds
    except (KeyError, ValueError, TypeError, AttributeError, OSError, EOFError):
        # A damaged cache entry is rebuilt from the source rather than trusted.
        _discard(layout, folder)
        return None


def _discard(layout: CacheLayout, folder: Path) -> None:

    try:
        check_writable(folder)
    except UserFacingError:
        return  # a read-only cache keeps even a damaged folder; it is not used
    trash = layout.discarded(folder, "corrupt")
    try:
        os.replace(folder, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _convert(
    source: str, kind: str, fingerprint: str, layout: CacheLayout, reader: Reader, progress: ProgressFn | None
) -> Dataset:
    """Convert a CIFAR pickle source (180 MB, read whole) into the cache."""
    classes, splits, skipped = reader()
    if not splits or all(len(y) == 0 for _, y in splits.values()):
        raise DataSourceError(f"Data source {source!r} contains no readable images.")
    shape = next(iter(splits.values()))[0].shape[1:]
    counts = {s: np.bincount(y, minlength=len(classes)).astype(int).tolist() for s, (_, y) in splits.items()}
    target = layout.dataset_dir(fingerprint)
    with atomic_dir(target) as tmp:
        for split, (x, y) in splits.items():
            np.save(tmp / DATASET_FILES.images(split), np.ascontiguousarray(x, dtype=np.uint8))
            np.save(tmp / DATASET_FILES.labels(split), y.astype(np.int64))
        DatasetMeta(
            kind, source, list(classes), sorted(splits, key=folders.split_order), counts, skipped, list(shape)
        ).write(tmp)
    return _read_back(layout, fingerprint, source)


def _read_back(layout: CacheLayout, fingerprint: str, source: str) -> Dataset:
    loaded = _load_cached(layout, fingerprint, source)
    if loaded is None:
        raise CacheWriteError(f"The converted dataset at {layout.dataset_dir(fingerprint)} could not be read back.")
    return loaded


def _verify_folder(root: Path, fingerprint_digest: str) -> convert.Verify:
    def verify(listing: folders.Listing, digests: np.ndarray | None) -> None:
        assert digests is not None
        again = digest_of_files((ref, bytes(d).hex()) for ref, d in zip(listing.refs, digests))
        if not again.startswith(fingerprint_digest):
            changed = sum(1 for ref, d in zip(listing.refs, digests) if _digest_now(root / ref) != bytes(d).hex())
            raise convert.changed_error(f"{changed:,} of its files differ from when it was fingerprinted")

    return verify


def _digest_now(path: Path) -> str | None:
    try:
        return hash_file(path)  # in blocks: an archive may be far larger than memory
    except OSError:
        return None


def _verify_archive(path: Path, sha: str) -> convert.Verify:
    def verify(listing: folders.Listing, digests: np.ndarray | None) -> None:
        if _digest_now(path) != sha:
            raise convert.changed_error(f"{path.name} is not the file it was when conversion started")

    return verify


# --------------------------------------------------------------------------- path inspection


def _inspect_path(path: Path, progress: ProgressFn | None) -> tuple[str, str, Converter]:
    """The source's kind, its content fingerprint, and how to convert it (nothing is read beyond the fingerprint)."""
    if path.is_dir():
        batches = next(
            (p.parent for p in [path / "data_batch_1", path / "cifar-10-batches-py" / "data_batch_1"] if p.exists()),
            None,
        )
        if batches is not None:
            files = [p for p in sorted(batches.iterdir()) if p.is_file()]
            return (
                "cifar10-pickle",
                f"cifar-dir-{tree_digest(batches, files)[:16]}",
                _pickles(lambda: cifar.read_cifar_dir(batches), progress),
            )
        listing = folders.ImageFolder(path).listing()
        digest = tree_digest(path, [path / ref for ref in listing.refs], progress)[:16]
        return (
            "image-folder",
            f"folder-{digest}",
            _images(lambda: folders.ImageFolder(path), listing, _verify_folder(path, digest), progress),
        )

    folders.check_regular_file(path, "A data source that is not a folder")
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        if not tarfile.is_tarfile(path):
            raise DataSourceError(f"{path} is not a readable tar archive; it may be truncated or corrupt.")
        if path.stat().st_size == config.CIFAR10_BYTES and file_digest(path, "md5") == config.CIFAR10_MD5:
            return "cifar10-pickle", _CIFAR10_FINGERPRINT, _pickles(lambda: cifar.read_cifar_tar(path), progress)
        sha = file_digest(path)
        if cifar.tar_has_cifar_batches(path):
            return "cifar10-pickle", f"cifar-tar-{sha[:16]}", _pickles(lambda: cifar.read_cifar_tar(path), progress)
        return (
            "image-folder",
            f"archive-{sha[:16]}",
            _images(lambda: folders.TarImages(path), None, _verify_archive(path, sha), progress),
        )
    if name.endswith(".zip"):
        if not zipfile.is_zipfile(path):
            raise DataSourceError(f"{path} is not a readable zip archive; it may be truncated or corrupt.")
        sha = file_digest(path)
        return (
            "image-folder",
            f"archive-{sha[:16]}",
            _images(lambda: folders.ZipImages(path), None, _verify_archive(path, sha), progress),
        )
    raise DataSourceError(
        f"Don't know how to read {path}: expected a folder, a .tar.gz/.tgz/.tar or a .zip (an image-folder dataset "
        "or cifar-10-python.tar.gz)."
    )


def _pickles(reader: Reader, progress: ProgressFn | None) -> Converter:
    return lambda source, kind, fingerprint, layout: _convert(source, kind, fingerprint, layout, reader, progress)


def _images(
    open_source: Callable[[], folders.ImageSource],
    listing: folders.Listing | None,
    verify: convert.Verify,
    progress: ProgressFn | None,
) -> Converter:
    def run(source: str, kind: str, fingerprint: str, layout: CacheLayout) -> Dataset:
        src = open_source()
        convert.convert_image_source(src, listing or src.listing(), fingerprint, layout, source, verify, progress)
        return _read_back(layout, fingerprint, source)

    return run
