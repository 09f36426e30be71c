"""Streaming conversion of image folders: same arrays as decoding each file, resumable, and a source that
changes underneath is reported, never cached."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lib.data import convert
from lib.data.decode import decode_image_bytes
from lib.data.folders import ImageFolder
from lib.data.sources import load_dataset
from lib.errors import CacheWriteError, DataSourceError
from lib.store.layout import CacheLayout
from tests import fixtures

ROOT = Path(__file__).resolve().parents[2]


class StopError(Exception):
    """Raised from a progress callback: the conversion is interrupted there, like a killed process."""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return fixtures.make_image_folder(tmp_path / "imgs", per_class=30, test_per_class=10)


def _finished(cache_dir: Path) -> list[Path]:
    return (
        [p for p in (cache_dir / "datasets").iterdir() if not p.name.startswith(".")]
        if (cache_dir / "datasets").exists()
        else []
    )


def _partial(cache_dir: Path) -> Path:
    (found,) = [p for p in (cache_dir / "datasets").iterdir() if p.name.endswith(".partial")]
    return found


def test_streamed_arrays_equal_decoding_every_file(folder: Path, cache_dir: Path, layout: CacheLayout) -> None:
    ds = load_dataset(str(folder), layout)
    side = ds.image_shape[0]
    listing = ImageFolder(folder).listing()
    position = 0
    for split in ds.splits:
        refs = [r for r, s in zip(listing.refs, listing.split_of) if listing.splits[s] == split]
        expected = [decode_image_bytes((folder / r).read_bytes(), side) for r in refs]
        kept = [e for e in expected if e is not None]
        np.testing.assert_array_equal(ds.images(split), np.stack(kept))
        assert ds.skipped[split] == len(expected) - len(kept)
        position += len(refs)
    assert ds.skipped["train"] == 1 and ds.size("train") == 90
    assert not list((cache_dir / "datasets").glob(".*.partial"))  # the staging folder is gone


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_archives_give_the_same_arrays_as_the_folder(
    folder: Path, tmp_path: Path, cache_dir: Path, layout: CacheLayout, fmt: str
) -> None:
    archive = tmp_path / f"data.{fmt}"
    files = sorted(folder.rglob("*.*"), reverse=True)  # archive order differs from dataset order
    if fmt == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for p in files:
                zf.write(p, Path("mydata") / p.relative_to(folder))
    else:
        with tarfile.open(archive, "w") as tar:
            for p in files:
                tar.add(p, arcname=str(Path("mydata") / p.relative_to(folder)))
    a, b = load_dataset(str(folder), layout), load_dataset(str(archive), layout)
    for split in a.splits:
        np.testing.assert_array_equal(a.images(split), b.images(split))
        np.testing.assert_array_equal(a.labels(split), b.labels(split))


def _interrupt(folder: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """Convert ``folder`` with checkpoints every 16 images, and stop it once ``after`` images are checkpointed."""
    monkeypatch.setattr(convert, "CHECKPOINT", 16)

    def stop(done: int, total: int, stage: str) -> None:
        if stage == "decode" and done >= after:
            raise StopError

    with pytest.raises(StopError):
        load_dataset(str(folder), CacheLayout(cache_dir), progress=stop)
    assert not _finished(cache_dir)  # nothing half-written is visible as a dataset


def test_interrupted_conversion_resumes_where_it_stopped(
    folder: Path, cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = load_dataset(str(folder), CacheLayout(cache_dir / "reference"))
    _interrupt(folder, cache_dir, monkeypatch, after=32)
    status = np.fromfile(_partial(cache_dir) / "status.u8", np.uint8)
    assert (status != convert.TODO).sum() >= 32

    decoded: list[int] = []
    real = convert.decode_image_bytes
    monkeypatch.setattr(convert, "decode_image_bytes", lambda data, side: decoded.append(1) or real(data, side))
    ds = load_dataset(str(folder), layout)
    assert len(decoded) == len(status) - int((status != convert.TODO).sum())  # only what was left
    for split in ds.splits:
        np.testing.assert_array_equal(ds.images(split), reference.images(split))
        np.testing.assert_array_equal(ds.labels(split), reference.labels(split))


def test_a_lost_staging_file_is_redone_not_trusted(
    folder: Path, cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = load_dataset(str(folder), CacheLayout(cache_dir / "reference"))
    _interrupt(folder, cache_dir, monkeypatch, after=48)
    (_partial(cache_dir) / "train_images.npy").unlink()  # its status bytes now promise rows that are gone
    ds = load_dataset(str(folder), layout)
    np.testing.assert_array_equal(ds.images("train"), reference.images("train"))


@pytest.mark.parametrize("change", ["edit", "delete"])
def test_a_folder_changed_during_conversion_is_reported(
    folder: Path, cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    monkeypatch.setattr(convert, "CHECKPOINT", 16)
    victim = folder / "test" / "frog" / "0003.png"  # near the end of the dataset order: read after the change

    def meddle(done: int, total: int, stage: str) -> None:
        if stage == "decode" and done >= 16 and victim.exists():
            if change == "edit":
                victim.write_bytes((folder / "test" / "cat" / "0001.png").read_bytes())
            else:
                victim.unlink()

    with pytest.raises(DataSourceError, match="changed while it was being converted"):
        load_dataset(str(folder), layout, progress=meddle)
    assert not _finished(cache_dir) and not list((cache_dir / "datasets").glob("*.partial"))
    ds = load_dataset(str(folder), layout)  # converting the new contents works
    assert ds.size("test") == (30 if change == "edit" else 29)


def test_an_archive_replaced_during_conversion_is_reported(
    folder: Path, tmp_path: Path, cache_dir: Path, layout: CacheLayout
) -> None:
    archive = tmp_path / "data.zip"
    shutil.make_archive(str(archive.with_suffix("")), "zip", folder)

    def meddle(done: int, total: int, stage: str) -> None:
        if stage == "decode" and done == total:
            with zipfile.ZipFile(archive, "a") as zf:
                zf.writestr("train/cat/extra.txt", "appended while converting")

    with pytest.raises(DataSourceError, match="changed while it was being converted"):
        load_dataset(str(archive), layout, progress=meddle)
    assert not _finished(cache_dir)


def test_full_disk_while_streaming_is_a_clear_error(
    folder: Path, cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.pwrite
    calls = {"n": 0}

    def fill_up(fd: int, data: bytes, offset: int) -> int:
        calls["n"] += 1
        if calls["n"] > 40:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(convert.os, "pwrite", fill_up)
    with pytest.raises(CacheWriteError, match="Disk full"):
        load_dataset(str(folder), layout)
    monkeypatch.setattr(convert.os, "pwrite", real)
    assert not _finished(cache_dir)
    assert load_dataset(str(folder), layout).size("train") == 90


def test_make_big_folder_writes_a_convertible_dataset(tmp_path: Path, cache_dir: Path, layout: CacheLayout) -> None:
    out = tmp_path / "big"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "make_big_folder.py"), str(out), "--images", "120", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    exts = {p.suffix for p in out.rglob("*.*")}
    assert exts == {".jpg", ".png"}
    ds = load_dataset(str(out), layout)
    assert len(ds.classes) == 10 and ds.size("train") + ds.size("test") == 120 and ds.size("test") == 20
    assert ds.counts["test"] == [2] * 10 and ds.counts["train"] == [10] * 10
    assert sum(ds.skipped.values()) == 0
    sides = {tuple(np.asarray(ds.images("train")).shape[1:3])}
    assert len(sides) == 1 and 16 <= next(iter(sides))[0] <= 96
