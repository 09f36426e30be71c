"""Image-folder datasets ``<split>/<class>/<image>``, as a folder, a tar archive or a zip.

Class names come from folder names. Every readable image is decoded to 8-bit RGB (see
:mod:`lib.data.decode`); unreadable files are skipped and counted per split. If images
differ in size, all are stored at one square side: the median of the images' longest
sides, capped at ``config.MAX_STORAGE_SIDE``.

    entries = folder_entries(Path("imgs"))           # or tar_entries / zip_entries
    classes, splits, skipped = decode_entries(entries, "imgs", progress=None)
"""

from __future__ import annotations

import os
import re
import tarfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lib import config
from lib.data.cifar import ProgressFn, ReadResult
from lib.data.decode import decode_image_bytes, image_size
from lib.errors import DataSourceError

# split, class, file name, a callable that returns the file's bytes
Entry = tuple[str, str, str, Callable[[], bytes]]


def split_order(name: str) -> tuple[int, str]:
    """Sort key that puts train before validation before test."""
    order = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}
    return (order.get(name, 3), name)


def _entry_from_parts(parts: tuple[str, ...]) -> tuple[str, str, str] | None:
    if len(parts) < 3 or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    return parts[-3], parts[-2], parts[-1]


def folder_entries(root: Path) -> list[Entry]:
    """Entries of an image folder on disk (files are read lazily)."""
    entries: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in filenames:
            full = Path(dirpath) / fname
            key = _entry_from_parts(full.relative_to(root).parts)
            if key:
                entries.append((*key, full.read_bytes))
    return _check_entries(entries, root)


def tar_entries(path: Path) -> list[Entry]:
    """Entries of an image folder packed as a tar archive."""
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


def zip_entries(path: Path) -> list[Entry]:
    """Entries of an image folder packed as a zip."""
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
    entries.sort(key=lambda e: (split_order(e[0]), e[1], _natural_key(e[2])))
    return entries


def storage_side(sizes: list[tuple[int, int]]) -> int:
    """The square side images are stored at: their common side, else the median over images of the longest side."""
    distinct = set(sizes)
    if len(distinct) == 1 and (w := next(iter(distinct)))[0] == w[1] and w[0] <= config.MAX_STORAGE_SIDE:
        return w[0]
    return min(config.MAX_STORAGE_SIDE, int(np.median([max(s) for s in sizes])))


def decode_entries(entries: list[Entry], where: str, progress: ProgressFn | None) -> ReadResult:
    """Decode every entry into per-split uint8 arrays; unreadable files are counted as skipped."""
    classes = tuple(sorted({e[1] for e in entries}))
    sizes = [s for s in (image_size(load()) for _, _, _, load in entries) if s is not None]
    if not sizes:
        raise DataSourceError(f"None of the {len(entries)} files in {where} could be read as an image.")
    side = storage_side(sizes)
    total = len(entries)
    done = 0

    def work(entry: Entry) -> np.ndarray | None:
        return decode_image_bytes(entry[3](), side)

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
