"""Content hashes of files and folders, memoised per process by path, size and mtime.

A source archive or a local model is hashed once per process; an edited file is hashed again
because its size or mtime changed.

    file_digest(Path("data.tar.gz"))            # sha256 hex
    tree_digest(Path("my_model/"))              # over every file's name and bytes
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from lib import config


def hash_file(path: Path | str, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in blocks (not memoised: what the file holds now)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def image_file_state(path: Path | str) -> os.stat_result | None:
    """The stat of a dataset file that can be read as an image (a regular file, through any symlink, of at most
    ``config.MAX_IMAGE_FILE_BYTES``), or None for what cannot: a dangling symlink, a FIFO, a socket, a device or a
    huge file. Such an entry is an unreadable image, counted as skipped, never opened (opening a FIFO would wait
    forever). :class:`FileNotFoundError` if the entry itself is gone."""

    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return None  # a dangling symlink
        raise
    return st if stat.S_ISREG(st.st_mode) and st.st_size <= config.MAX_IMAGE_FILE_BYTES else None


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # the content of an entry image_file_state rejects


def image_file_digest(path: Path) -> str:
    """:func:`hash_file` of a dataset file, or :data:`EMPTY_SHA256` for an entry that is not a readable file."""
    return hash_file(path) if image_file_state(path) is not None else EMPTY_SHA256


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, algorithm: str, _size: int, _mtime_ns: int) -> str:
    return hash_file(path, algorithm)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes."""
    st = path.stat()
    return _file_digest(str(path.resolve()), algorithm, st.st_size, st.st_mtime_ns)


def existing_path(text: str) -> Path | None:
    """``text`` as an existing path (``~`` expanded), or None, also when the file system refuses the name (too long)."""
    path = Path(text).expanduser()
    try:
        return path if path.exists() else None
    except OSError:
        return None


def tree_files(root: Path) -> list[Path]:
    """Every regular file below ``root`` (hidden folders skipped), sorted."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in filenames)
    return sorted(out)


_tree_memo: dict[
    str, str
] = {}  # signature of (names, sizes, mtimes) -> digest; a big folder is hashed once per process


def tree_digest(
    root: Path, files: list[Path] | None = None, progress: Callable[[int, int, str], None] | None = None
) -> str:
    """sha256 over the relative names and contents of ``files`` (default: every file below ``root``).

    Memoised by every file's name, size and mtime: a folder of 200,000 images is read once per
    process, and after that only stat-ed.
    """
    paths = files if files is not None else tree_files(root)
    names = [str(p.relative_to(root)) for p in paths]
    signature = hashlib.sha256(str(root.resolve()).encode())
    for name, p in zip(names, paths):
        st = image_file_state(p)
        signature.update((f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0" if st else f"{name}\0-\0").encode())
    key = signature.hexdigest()
    if key not in _tree_memo:
        if len(_tree_memo) > 64:
            _tree_memo.clear()
        total = len(paths)

        def hashed() -> Iterator[tuple[str, str]]:
            for i, (name, p) in enumerate(zip(names, paths), 1):
                yield name, image_file_digest(p)
                if progress and (i % 2000 == 0 or i == total):
                    progress(i, total, "fingerprint")

        _tree_memo[key] = digest_of_files(hashed())
    return _tree_memo[key]


def digest_of_files(named_digests: Iterable[tuple[str, str]]) -> str:
    """The tree digest from ``(relative name, sha256 hex of the file)`` pairs, in order."""
    digest = hashlib.sha256()
    for name, hexdigest in named_digests:
        digest.update(name.encode())
        digest.update(hexdigest.encode())
    return digest.hexdigest()
