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
from pathlib import Path


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, algorithm: str, _size: int, _mtime_ns: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


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


def tree_digest(root: Path, files: list[Path] | None = None) -> str:
    """sha256 over the relative names and contents of ``files`` (default: every file below ``root``)."""
    digest = hashlib.sha256()
    for p in files if files is not None else tree_files(root):
        digest.update(str(p.relative_to(root)).encode())
        digest.update(file_digest(p).encode())
    return digest.hexdigest()
