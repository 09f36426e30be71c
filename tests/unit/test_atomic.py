"""lib/store/atomic.py: a reader never sees a half-written artifact; a read-only cache refuses every write."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from lib.errors import CacheWriteError, ReadOnlyError
from lib.store import atomic


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic.write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert atomic.read_json(target) == {"v": 1} and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_full_disk_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CacheWriteError, match="Disk full"), atomic.atomic_path(tmp_path / "b.bin") as tmp:
        monkeypatch.setattr(tmp.__class__, "write_bytes", full)
        tmp.write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []


def test_checked_npz_round_trip_and_damage(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    atomic.save_npz_checked(path, {"x": np.arange(5)}, {"version": 1, "feature_keys": {"train": "ab"}})
    meta, arrays = atomic.load_npz_checked(path)
    assert meta["version"] == 1 and np.array_equal(arrays["x"], np.arange(5))
    assert atomic.npz_meta(path)["feature_keys"] == {"train": "ab"}
    path.write_bytes(path.read_bytes()[:-30])
    assert atomic.load_npz_checked(path) is None and atomic.npz_meta(tmp_path / "missing.npz") is None


def test_read_only_refuses_inside_and_allows_outside(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    atomic.set_read_only(cache, "demo")
    try:
        with pytest.raises(ReadOnlyError):
            atomic.write_json_atomic(cache / "x.json", {})
        atomic.write_json_atomic(tmp_path / "y.json", {})
    finally:
        atomic.set_read_only(None)
    assert not (cache / "x.json").exists() and (tmp_path / "y.json").exists()
