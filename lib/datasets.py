"""Data sources: official CIFAR-10, its pickle archive or folder, and image-folder datasets.

A *source* is one string used everywhere (CLI, UI, tests):

- ``cifar10``: download the official archive once, verify its MD5, convert;
- a path to ``cifar-10-python.tar.gz`` or an extracted ``cifar-10-batches-py/``;
- a path to an image-folder dataset ``<split>/<class>/*.jpg`` as a folder,
  ``.tar.gz``/``.tgz``/``.tar`` or ``.zip`` (class names come from folder names).

Every source is converted once into uint8 ``.npy`` arrays under
``<cache>/datasets/<fingerprint>/`` that later loads memory-map in milliseconds.

    ds = load_dataset("../shared/data/cifar10-jpeg.tar.gz", cache_dir="cache")
    images, labels = ds.images("test"), ds.labels("test")   # uint8 [N,32,32,3], int64 [N]
    idx = subset_indices(labels, limit=100)                  # first 100 of each class
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lib import config
from lib.atomic import atomic_dir, atomic_path, read_json
from lib.errors import CacheWriteError, DataSourceError

# done, total, what: a stage name such as "download" or "decode".
ProgressFn = Callable[[int, int, str], None]

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
DOWNLOAD_TIMEOUT_S = 15.0


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
        return np.load(self.path / f"{split}_images.npy", mmap_mode="r")

    def labels(self, split: str) -> np.ndarray:
        """int64 class indices ``[N]`` of ``split``."""
        self._check_split(split)
        return np.load(self.path / f"{split}_labels.npy")

    def size(self, split: str) -> int:
        """Number of images in ``split``."""
        return int(sum(self.counts[split]))

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
                s: {"total": self.size(s), "per_class": dict(zip(self.classes, self.counts[s])), "skipped": self.skipped.get(s, 0)}
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
        raise ValueError("limit must be positive")
    keep = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        keep[np.flatnonzero(labels == cls)[:limit]] = True
    return np.flatnonzero(keep)


# --------------------------------------------------------------------------- loading


def load_dataset(source: str, cache_dir: Path | str, progress: ProgressFn | None = None) -> Dataset:
    """Resolve ``source``, converting it into the cache on first use."""
    cache_dir = Path(cache_dir)
    source = str(source).strip()
    if not source:
        raise DataSourceError("No data source given. Use 'cifar10' or a path to a dataset.")
    if source.lower() == "cifar10":
        fingerprint = f"cifar10-{config.CIFAR10_MD5[:16]}"
        cached = _load_cached(cache_dir, fingerprint, source)
        if cached is not None:
            return cached
        archive = download_cifar10(cache_dir, progress=progress)
        return _convert(source, "cifar10-pickle", fingerprint, cache_dir, lambda: _read_cifar_pickle_tar(archive), progress)

    path = Path(source).expanduser()
    if not path.exists():
        raise DataSourceError(
            f"Data source {source!r} is neither 'cifar10' nor an existing path. "
            "Give a cifar-10-python.tar.gz, a cifar-10-batches-py/ folder, or an image-folder dataset (<split>/<class>/*.jpg, as a folder, .tar.gz or .zip)."
        )
    kind, fingerprint, reader = _inspect_path(path, progress)
    cached = _load_cached(cache_dir, fingerprint, source)
    if cached is not None:
        return cached
    return _convert(source, kind, fingerprint, cache_dir, reader, progress)


def dataset_cache_dir(cache_dir: Path | str, fingerprint: str) -> Path:
    """Folder that holds the converted arrays for ``fingerprint``."""
    return Path(cache_dir) / "datasets" / f"v{config.DATASET_FORMAT_VERSION}-{fingerprint}"


def cached_dataset_status(source: str, cache_dir: Path | str) -> Dataset | None:
    """The converted dataset if it is already in the cache, without converting or downloading."""
    cache_dir = Path(cache_dir)
    try:
        if source.strip().lower() == "cifar10":
            return _load_cached(cache_dir, f"cifar10-{config.CIFAR10_MD5[:16]}", source)
        path = Path(source).expanduser()
        if not path.exists():
            return None
        _, fingerprint, _ = _inspect_path(path, None)
        return _load_cached(cache_dir, fingerprint, source)
    except DataSourceError:
        return None


def _load_cached(cache_dir: Path, fingerprint: str, source: str) -> Dataset | None:
    folder = dataset_cache_dir(cache_dir, fingerprint)
    meta = read_json(folder / "meta.json")
    if meta is None:
        return None
    try:
        ds = Dataset(
            source=source,
            kind=meta["kind"],
            fingerprint=fingerprint,
            path=folder,
            classes=tuple(meta["classes"]),
            splits=tuple(meta["splits"]),
            counts={k: list(v) for k, v in meta["counts"].items()},
            skipped=dict(meta.get("skipped", {})),
            image_shape=tuple(meta["image_shape"]),  # type: ignore[arg-type]
        )
        for split in ds.splits:
            images, labels = ds.images(split), ds.labels(split)
            if images.shape != (ds.size(split), *ds.image_shape) or images.dtype != np.uint8 or labels.shape != (ds.size(split),):
                raise ValueError(f"shape mismatch in {split}")
        return ds
    except (KeyError, ValueError, TypeError, OSError, EOFError):
        # A damaged cache entry is rebuilt from the source rather than trusted.
        _discard(folder)
        return None


def _discard(folder: Path) -> None:
    trash = folder.with_name(f".{folder.name}.corrupt-{os.getpid()}-{time.time_ns()}")
    try:
        os.replace(folder, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


Splits = dict[str, tuple[np.ndarray, np.ndarray]]
Reader = Callable[[], tuple[tuple[str, ...], Splits, dict[str, int]]]


def _convert(source: str, kind: str, fingerprint: str, cache_dir: Path, reader: Reader, progress: ProgressFn | None) -> Dataset:
    classes, splits, skipped = reader()
    if not splits or all(len(y) == 0 for _, y in splits.values()):
        raise DataSourceError(f"Data source {source!r} contains no readable images.")
    shape = next(iter(splits.values()))[0].shape[1:]
    counts = {s: np.bincount(y, minlength=len(classes)).astype(int).tolist() for s, (_, y) in splits.items()}
    target = dataset_cache_dir(cache_dir, fingerprint)
    with atomic_dir(target) as tmp:
        for split, (x, y) in splits.items():
            np.save(tmp / f"{split}_images.npy", np.ascontiguousarray(x, dtype=np.uint8))
            np.save(tmp / f"{split}_labels.npy", y.astype(np.int64))
        meta = {
            "kind": kind,
            "source": source,
            "classes": list(classes),
            "splits": sorted(splits, key=_split_order),
            "counts": counts,
            "skipped": skipped,
            "image_shape": list(shape),
            "format_version": config.DATASET_FORMAT_VERSION,
        }
        import json

        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    loaded = _load_cached(cache_dir, fingerprint, source)
    if loaded is None:
        raise CacheWriteError(f"The converted dataset at {target} could not be read back.")
    return loaded


def _split_order(name: str) -> tuple[int, str]:
    order = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}
    return (order.get(name, 3), name)


# --------------------------------------------------------------------------- official CIFAR-10


def download_cifar10(cache_dir: Path | str, url: str | None = None, progress: ProgressFn | None = None) -> Path:
    """Download and MD5-verify ``cifar-10-python.tar.gz`` into ``<cache>/downloads``."""
    url = url or os.environ.get("TLX_CIFAR10_URL", config.CIFAR10_URL)
    target = Path(cache_dir) / "downloads" / "cifar-10-python.tar.gz"
    if target.exists():
        if _md5(target) == config.CIFAR10_MD5:
            return target
        target.unlink()  # a corrupt or truncated earlier download
    hint = (
        "No network? Download it elsewhere and pass --source /path/to/cifar-10-python.tar.gz "
        "(or its extracted cifar-10-batches-py/ folder, or an image-folder dataset such as ../shared/data/cifar10-jpeg.tar.gz)."
    )
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, atomic_path(target) as tmp:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            with open(tmp, "wb") as fh:
                while chunk := response.read(1 << 20):
                    fh.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total, "download")
            if digest.hexdigest() != config.CIFAR10_MD5:
                raise DataSourceError(f"Downloaded CIFAR-10 from {url} failed its MD5 check (got {digest.hexdigest()}); nothing was kept. Try again.")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        raise DataSourceError(f"Could not download CIFAR-10 from {url}: {reason}. {hint}") from err
    return target


def _md5(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _cifar_batch_to_arrays(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = pickle.loads(raw, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return data, np.asarray(batch[b"labels"], dtype=np.int64)


def _assemble_cifar(files: dict[str, bytes]) -> tuple[tuple[str, ...], Splits, dict[str, int]]:
    try:
        train = [_cifar_batch_to_arrays(files[f"data_batch_{i}"]) for i in range(1, 6) if f"data_batch_{i}" in files]
        test = _cifar_batch_to_arrays(files["test_batch"])
    except (KeyError, pickle.UnpicklingError, ValueError, EOFError) as err:
        raise DataSourceError(f"CIFAR-10 pickle data is incomplete or corrupt ({err}).") from err
    if not train:
        raise DataSourceError("CIFAR-10 pickle data has no data_batch_* files.")
    classes = config.CIFAR10_CLASSES
    if "batches.meta" in files:
        meta = pickle.loads(files["batches.meta"], encoding="bytes")
        classes = tuple(n.decode() for n in meta[b"label_names"])
    splits = {
        "train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
        "test": test,
    }
    return classes, splits, {"train": 0, "test": 0}


def _read_cifar_pickle_tar(archive: Path) -> tuple[tuple[str, ...], Splits, dict[str, int]]:
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = Path(member.name).name
                if member.isfile() and (name.startswith(("data_batch_", "test_batch")) or name == "batches.meta"):
                    fh = tar.extractfile(member)
                    if fh is not None:
                        files[name] = fh.read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataSourceError(f"{archive} is not a readable archive ({err}); it may be truncated. Download it again.") from err
    return _assemble_cifar(files)


def _read_cifar_pickle_dir(folder: Path) -> tuple[tuple[str, ...], Splits, dict[str, int]]:
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    return _assemble_cifar(files)


# --------------------------------------------------------------------------- path inspection


def _inspect_path(path: Path, progress: ProgressFn | None) -> tuple[str, str, Reader]:
    if path.is_dir():
        batches = next((p.parent for p in [path / "data_batch_1", path / "cifar-10-batches-py" / "data_batch_1"] if p.exists()), None)
        if batches is not None:
            digest = hashlib.sha256()
            for p in sorted(batches.iterdir()):
                if p.is_file():
                    digest.update(p.name.encode())
                    digest.update(_sha256_file(p).encode())
            return "cifar10-pickle", f"cifar-dir-{digest.hexdigest()[:16]}", lambda: _read_cifar_pickle_dir(batches)
        entries = _folder_entries(path)
        digest = hashlib.sha256()
        for split, cls, name, load in entries:
            digest.update(f"{split}/{cls}/{name}".encode())
            digest.update(hashlib.sha256(load()).digest())
        return "image-folder", f"folder-{digest.hexdigest()[:16]}", lambda: _decode_entries(entries, str(path), progress)

    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        if not tarfile.is_tarfile(path):
            raise DataSourceError(f"{path} is not a readable tar archive; it may be truncated or corrupt.")
        sha = _sha256_file(path)
        if _md5(path) == config.CIFAR10_MD5:
            return "cifar10-pickle", f"cifar10-{config.CIFAR10_MD5[:16]}", lambda: _read_cifar_pickle_tar(path)
        if _tar_has_cifar_batches(path):
            return "cifar10-pickle", f"cifar-tar-{sha[:16]}", lambda: _read_cifar_pickle_tar(path)
        return "image-folder", f"archive-{sha[:16]}", lambda: _decode_entries(_tar_entries(path), str(path), progress)
    if name.endswith(".zip"):
        if not zipfile.is_zipfile(path):
            raise DataSourceError(f"{path} is not a readable zip archive; it may be truncated or corrupt.")
        sha = _sha256_file(path)
        return "image-folder", f"archive-{sha[:16]}", lambda: _decode_entries(_zip_entries(path), str(path), progress)
    raise DataSourceError(
        f"Don't know how to read {path}: expected a folder, a .tar.gz/.tgz/.tar or a .zip (an image-folder dataset or cifar-10-python.tar.gz)."
    )


def _tar_has_cifar_batches(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:*") as tar:
            for i, member in enumerate(tar):
                if Path(member.name).name == "data_batch_1":
                    return True
                if i > 50:
                    return False
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataSourceError(f"{path} is not a readable archive ({err}); it may be truncated.") from err
    return False


# split, class, file name, a callable that returns the file's bytes
Entry = tuple[str, str, str, Callable[[], bytes]]


def _entry_from_parts(parts: tuple[str, ...]) -> tuple[str, str, str] | None:
    if len(parts) < 3 or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    return parts[-3], parts[-2], parts[-1]


def _folder_entries(root: Path) -> list[Entry]:
    entries: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in filenames:
            full = Path(dirpath) / fname
            key = _entry_from_parts(full.relative_to(root).parts)
            if key:
                entries.append((*key, full.read_bytes))
    return _check_entries(entries, root)


def _tar_entries(path: Path) -> list[Entry]:
    entries: list[Entry] = []
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                key = _entry_from_parts(Path(member.name).parts) if member.isfile() else None
                fh = tar.extractfile(member) if key else None
                if key and fh is not None:
                    entries.append((*key, _constant(fh.read())))
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataSourceError(f"{path} could not be read to the end ({err}); it may be truncated. Nothing was cached.") from err
    return _check_entries(entries, path)


def _zip_entries(path: Path) -> list[Entry]:
    entries: list[Entry] = []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                key = _entry_from_parts(Path(info.filename).parts) if not info.is_dir() else None
                if key:
                    entries.append((*key, _constant(zf.read(info))))
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataSourceError(f"{path} could not be read ({err}); it may be corrupt. Nothing was cached.") from err
    return _check_entries(entries, path)


def _constant(data: bytes) -> Callable[[], bytes]:
    """A loader for bytes already in memory (archive members are read while streaming)."""
    return lambda: data


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _check_entries(entries: list[Entry], where: Path) -> list[Entry]:
    if not entries:
        raise DataSourceError(f"No images found in {where}: expected the layout <split>/<class>/<image file>, e.g. train/cat/0001.jpg.")
    entries.sort(key=lambda e: (_split_order(e[0]), e[1], _natural_key(e[2])))
    return entries


def _decode_image(data: bytes, side: int | None) -> np.ndarray | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                rgb = Image.alpha_composite(background, rgba).convert("RGB")
            else:
                rgb = img.convert("RGB")
            if side is not None and rgb.size != (side, side):
                rgb = rgb.resize((side, side), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _image_size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # noqa: BLE001 - any failure means "unreadable", counted later
        return None


def _decode_entries(entries: list[Entry], where: str, progress: ProgressFn | None) -> tuple[tuple[str, ...], Splits, dict[str, int]]:
    classes = tuple(sorted({e[1] for e in entries}))
    sizes = [_image_size(load()) for _, _, _, load in entries]
    readable = {s for s in sizes if s is not None}
    if not readable:
        raise DataSourceError(f"None of the {len(entries)} files in {where} could be read as an image.")
    if len(readable) == 1 and (w := next(iter(readable)))[0] == w[1] and w[0] <= config.MAX_STORAGE_SIDE:
        side = w[0]
    else:
        # Mixed sizes: store every image at one square side so splits are plain arrays.
        side = min(config.MAX_STORAGE_SIDE, int(np.median([max(s) for s in readable])))
    total = len(entries)
    done = 0

    def work(entry: Entry) -> np.ndarray | None:
        return _decode_image(entry[3](), side)

    per_split: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    skipped: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for entry, img in zip(entries, pool.map(work, entries, chunksize=256)):
            split, cls = entry[0], entry[1]
            xs, ys = per_split.setdefault(split, ([], []))
            skipped.setdefault(split, 0)
            if img is None:
                skipped[split] += 1
            else:
                xs.append(img)
                ys.append(classes.index(cls))
            done += 1
            if progress and (done % 2000 == 0 or done == total):
                progress(done, total, "decode")
    splits = {
        s: (np.stack(xs) if xs else np.zeros((0, side, side, 3), np.uint8), np.asarray(ys, dtype=np.int64))
        for s, (xs, ys) in per_split.items()
    }
    return classes, splits, skipped
