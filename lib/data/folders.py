"""Image-folder datasets ``<split>/<class>/<image>``, as a folder, a tar archive or a zip: listing and reading.

Class names come from folder names. A listing holds names and small integer arrays only, never
image bytes, so a folder of millions of images lists in a few hundred MB; the bytes are read
later, one chunk at a time, by :mod:`lib.data.convert`. A folder and a zip are read in any order
(and in parallel); a tar archive is read as a stream, in archive order.

    src = open_image_source(Path("imgs"))          # ImageFolder, ZipImages or TarImages
    listing = src.listing()                        # every image, in dataset order
    data = src.read(listing.refs[0])               # bytes of one image (random-access sources)
"""

from __future__ import annotations

import os
import re
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lib import config
from lib.data.decode import image_file_size, image_size
from lib.errors import DataSourceError
from lib.store.fingerprints import image_file_state


def split_order(name: str) -> tuple[int, str]:
    """Sort key that puts train before validation before test."""
    order = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}
    return (order.get(name, 3), name)


def _key_from_parts(parts: tuple[str, ...]) -> tuple[str, str, str] | None:
    if len(parts) < 3 or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    return parts[-3], parts[-2], parts[-1]


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class Listing:
    """Every image of a source in dataset order: train before validation before test, then class, then natural file
    name."""

    refs: list[str]  # how the source reads the image: a path relative to the folder, or an archive member name
    split_of: np.ndarray  # int16 index into ``splits``, per image
    class_of: np.ndarray  # int64 index into ``classes``, per image
    splits: tuple[str, ...]
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.refs)

    def split_range(self, split: str) -> tuple[int, int]:
        """Positions ``[start, end)`` of ``split`` (images are grouped by split)."""
        idx = np.flatnonzero(self.split_of == self.splits.index(split))
        return (int(idx[0]), int(idx[-1]) + 1) if len(idx) else (0, 0)


def make_listing(found: Iterable[tuple[tuple[str, str, str], str]], where: Path | str) -> Listing:
    """A :class:`Listing` from ``((split, class, file), ref)`` pairs in any order."""
    items = sorted(found, key=lambda kr: (split_order(kr[0][0]), kr[0][1], _natural_key(kr[0][2]), kr[1]))
    if not items:
        raise DataSourceError(
            f"No images found in {where}: expected the layout <split>/<class>/<image file>, e.g. train/cat/0001.jpg."
        )
    splits = tuple(dict.fromkeys(k[0] for k, _ in items))
    classes = tuple(sorted({k[1] for k, _ in items}))
    split_index = {s: i for i, s in enumerate(splits)}
    class_index = {c: i for i, c in enumerate(classes)}
    return Listing(
        refs=[ref for _, ref in items],
        split_of=np.fromiter((split_index[k[0]] for k, _ in items), np.int16, len(items)),
        class_of=np.fromiter((class_index[k[1]] for k, _ in items), np.int64, len(items)),
        splits=splits,
        classes=classes,
    )


class ImageFolder:
    """An image folder on disk: listed by walking it, read in any order."""

    kind = "image-folder"
    sequential = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def listing(self) -> Listing:
        found = []
        seen: set[tuple[int, int]] = (
            set()
        )  # folders already walked: symlinked class folders are followed, a loop is not
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            try:
                st = os.stat(dirpath)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = os.path.relpath(dirpath, self.root)
            for fname in filenames:
                rel = fname if rel_dir == "." else os.path.join(rel_dir, fname)
                key = _key_from_parts(Path(rel).parts)
                if key:
                    found.append((key, rel))
        return make_listing(found, self.root)

    def read(self, ref: str) -> bytes:
        """The file's bytes; empty (an unreadable image) for a dangling symlink, a FIFO, a device or a huge file."""
        path = self.root / ref
        return path.read_bytes() if image_file_state(path) is not None else b""

    def header_size(self, ref: str) -> tuple[int, int] | None:
        """Width and height from the file's header (the pixels are not read), or None if unreadable."""
        path = self.root / ref
        return image_file_size(path) if image_file_state(path) is not None else None


class ZipImages:
    """An image folder packed as a zip: members are read in any order (one reader at a time)."""

    kind = "image-folder"
    sequential = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise DataSourceError(f"{path} could not be read ({err}); it may be corrupt. Nothing was cached.") from err

    def listing(self) -> Listing:
        found = [
            (key, info.filename)
            for info in self._zip.infolist()
            if not info.is_dir() and (key := _key_from_parts(Path(info.filename).parts))
        ]
        return make_listing(found, self.path)

    def read(self, ref: str) -> bytes:
        try:
            with self._lock:
                if self._zip.getinfo(ref).file_size > config.MAX_IMAGE_FILE_BYTES:
                    return b""  # a zip bomb, or not an image: counted as unreadable, never inflated
                return self._zip.read(ref)
        except (zipfile.BadZipFile, OSError, EOFError, KeyError) as err:
            raise DataSourceError(
                f"{self.path} could not be read ({err}); it may be corrupt or changed. Nothing was cached."
            ) from err

    def header_size(self, ref: str) -> tuple[int, int] | None:
        return image_size(self.read(ref))


class TarImages:
    """An image folder packed as a tar archive (optionally compressed): read front to back as a stream."""

    kind = "image-folder"
    sequential = True

    def __init__(self, path: Path) -> None:
        self.path = path

    def stream(self) -> Iterator[tuple[str, bytes]]:
        """``(member name, bytes)`` of every image-like member, in archive order."""
        try:
            with tarfile.open(self.path, "r:*") as tar:
                for member in tar:
                    if member.isfile() and _key_from_parts(Path(member.name).parts):
                        fh = tar.extractfile(member) if member.size <= config.MAX_IMAGE_FILE_BYTES else None
                        yield member.name, fh.read() if fh is not None else b""
                    # Forget members already seen: a long archive would otherwise keep every TarInfo.
                    tar.members = []  # type: ignore[attr-defined]
        except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
            raise DataSourceError(
                f"{self.path} could not be read to the end ({err}); it may be truncated. Nothing was cached."
            ) from err

    def listing(self) -> Listing:
        found = []
        try:
            with tarfile.open(self.path, "r:*") as tar:
                for member in tar:
                    if member.isfile() and (key := _key_from_parts(Path(member.name).parts)):
                        found.append((key, member.name))
                    tar.members = []  # type: ignore[attr-defined]
        except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
            raise DataSourceError(
                f"{self.path} could not be read to the end ({err}); it may be truncated. Nothing was cached."
            ) from err
        unique = {name: key for key, name in reversed(found)}  # a name twice in the archive: its first copy
        return make_listing(((key, name) for name, key in unique.items()), self.path)


ImageSource = ImageFolder | ZipImages | TarImages


def open_image_source(path: Path) -> ImageSource:
    """The reader for an image-folder dataset at ``path`` (a folder, a tar archive or a zip)."""
    if path.is_dir():
        return ImageFolder(path)
    check_regular_file(path, "A dataset archive")
    if path.name.lower().endswith(".zip"):
        return ZipImages(path)
    return TarImages(path)


def check_regular_file(path: Path, what: str) -> None:
    """:class:`DataSourceError` unless ``path`` is a regular file (through symlinks): a FIFO or ``/dev/zero`` named
    ``.tar`` would be read forever."""
    import stat

    try:
        ok = stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        ok = False
    if not ok:
        raise DataSourceError(
            f"{what} must be a regular file; {str(path)[:200]!r} is not (a pipe, a device, a dangling link or missing)."
        )


def storage_side(sizes: list[tuple[int, int]]) -> int:
    """The square side images are stored at: their common side, else the median over images of the longest side."""
    distinct = set(sizes)
    if len(distinct) == 1 and (w := next(iter(distinct)))[0] == w[1] and w[0] <= config.MAX_STORAGE_SIDE:
        return w[0]
    return min(config.MAX_STORAGE_SIDE, int(np.median([max(s) for s in sizes])))
