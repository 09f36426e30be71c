"""Atomic writes: a temp file or folder beside the target, then ``os.replace``.

A reader never sees a half-written artifact: either the old state or the new one.
Two writers of the same key both produce complete files, and the last rename wins.

    with atomic_path(target) as tmp:
        np.save(tmp, array)          # tmp is renamed onto target only on success
    write_json_atomic(path, {"a": 1})
    save_npz_checked(path, {"x": array}, {"version": 1}); load_npz_checked(path)   # None if damaged
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lib.errors import CacheWriteError, ReadOnlyError

_read_only: tuple[Path, str] | None = None  # (cache root, why) while this process must not write there


def set_read_only(root: Path | str | None, why: str = "") -> None:
    """From now on refuse every write and delete under ``root`` (None lifts it). The hosted demo sets this at start,
    so no request, crafted or not, can change the shared cache: every writer in the project goes through here."""
    global _read_only
    _read_only = (Path(root).resolve(), why) if root is not None else None


def check_writable(target: Path | str) -> None:
    """:class:`ReadOnlyError` if ``target`` is inside a read-only cache."""
    if _read_only is None:
        return
    root, why = _read_only
    path = Path(target).resolve()
    if path == root or root in path.parents:
        raise ReadOnlyError(why or f"{root} is read-only here; nothing was written.")


FREE_MARGIN = 1 << 20  # bytes kept free beyond what a writer says it needs


def check_free_space(folder: Path, needed: int, doing: str = "extracting these features") -> None:
    """Raise a "disk full" :class:`CacheWriteError` before work starts if ``needed`` bytes will not fit under
    ``folder``."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    if free < needed + FREE_MARGIN:
        raise CacheWriteError(
            f"Disk full: {doing} needs {needed / 1e6:,.1f} MB under {folder}, and {free / 1e6:,.1f} MB are free. "
            "Free some space or point --cache-dir elsewhere; nothing was saved."
        )


def describe_os_error(err: OSError, target: Path) -> str:
    if err.errno == errno.ENOSPC:
        return f"Disk full while writing {target}. Free some space or point --cache-dir elsewhere; nothing was saved."
    if err.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return f"Cannot write {target}: {err.strerror}. Choose a writable --cache-dir; nothing was saved."
    return f"Could not write {target}: {err}. Nothing was saved."


@contextlib.contextmanager
def atomic_path(target: Path | str, suffix: str = "", create_parent: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success rename it onto ``target``."""
    target = Path(target)
    check_writable(target)
    try:
        if create_parent:
            target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
        os.close(fd)
    except OSError as err:
        raise CacheWriteError(describe_os_error(err, target)) from err
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as err:
        raise CacheWriteError(describe_os_error(err, target)) from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _keep_first_writer(tmp: Path, target: Path) -> None:
    try:
        os.replace(tmp, target)
    except OSError as err:
        # A non-empty target means a concurrent writer won the race: both were computed
        # from the same key, so either result is valid and ours is dropped.
        if not (err.errno in (errno.ENOTEMPTY, errno.EEXIST) and target.is_dir()):
            raise


@contextlib.contextmanager
def atomic_dir(target: Path | str, install: Callable[[Path, Path], None] = _keep_first_writer) -> Iterator[Path]:
    """Yield a temp folder beside ``target``; on success ``install`` moves it onto ``target``.

    By default a target that another writer finished first is kept. Whatever fails, the temp
    folder is removed, and an OS error becomes a :class:`CacheWriteError` that says why.
    """
    target = Path(target)
    check_writable(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as err:
        raise CacheWriteError(describe_os_error(err, target)) from err
    try:
        yield tmp
        install(tmp, target)
    except OSError as err:
        raise CacheWriteError(describe_os_error(err, target)) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: Path | str, payload: Any) -> None:
    """Write ``payload`` as pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))


def save_npy_atomic(path: Path | str, array: Any, create_parent: bool = True) -> None:
    """Save a numpy array to ``path`` (a ``.npy``), atomically, with ordinary file I/O."""
    import numpy as np

    with atomic_path(path, create_parent=create_parent) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def _arrays_crc(arrays: dict[str, Any]) -> int:
    import zlib

    import numpy as np

    crc = 0
    for name in sorted(arrays):
        crc = zlib.crc32(name.encode() + np.ascontiguousarray(arrays[name]).tobytes(), crc)
    return crc


def save_npz_checked(path: Path | str, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
    """Save named arrays and a JSON ``meta`` (plus a CRC-32 over every array) as one ``.npz``, atomically."""
    import numpy as np

    header = np.frombuffer(json.dumps({**meta, "crc32": _arrays_crc(arrays)}).encode(), np.uint8)
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{"meta": header, **arrays})


def load_npz_checked(path: Path | str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(meta, arrays)`` of a :func:`save_npz_checked` file, or None if it is missing, unreadable or fails its CRC."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["meta"]).decode())
            arrays = {k: npz[k] for k in npz.files if k != "meta"}
    except (
        OSError,
        ValueError,
        KeyError,
        EOFError,
        UnicodeDecodeError,
        zipfile.BadZipFile,
    ):  # JSONDecodeError is a ValueError
        return None
    if not isinstance(meta, dict) or meta.get("crc32") != _arrays_crc(arrays):
        return None
    return meta, arrays


def npz_meta(path: Path | str) -> dict[str, Any] | None:
    """The JSON ``meta`` of a :func:`save_npz_checked` file, reading only that member (no arrays, no checksum), or
    None."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["meta"]).decode())
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, zipfile.BadZipFile):
        return None
    return meta if isinstance(meta, dict) else None


def read_json(path: Path | str) -> Any | None:
    """Read JSON, or None if the file is missing or not valid JSON (a corrupt artifact)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def newest_first(paths: list[Path]) -> list[Path]:
    """``paths`` by modification time, newest first; a file deleted meanwhile (another session) is left out, not a
    crash."""
    stamped = []
    for p in paths:
        try:
            stamped.append((p.stat().st_mtime, p))
        except OSError:
            continue
    return [p for _t, p in sorted(stamped, key=lambda tp: tp[0], reverse=True)]
