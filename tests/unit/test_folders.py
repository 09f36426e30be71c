"""lib/data/folders.py and the conversion's bounds: symlinks, FIFOs, devices, zip bombs, huge images, EXIF orientation,
one class."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib.cli.main import main
from lib.data.sources import load_dataset
from lib.errors import DataSourceError
from lib.store.layout import CacheLayout
from tests import fixtures

ROOT = Path(__file__).resolve().parents[2]


def test_symlinked_class_folders_count_and_dangling_links_are_skipped(
    tmp_path: Path, cache_dir: Path, layout: CacheLayout
) -> None:
    real = fixtures.make_image_folder(
        tmp_path / "real", classes=("cat", "dog", "frog"), per_class=3, test_per_class=2, corrupt=False, mixed=False
    )
    root = tmp_path / "linked"
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for cls in ("cat", "dog", "frog"):
            (root / split / cls).symlink_to(real / split / cls, target_is_directory=True)
    (real / "train" / "cat" / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (root / "train" / "loop").mkdir()
    (root / "train" / "loop" / "again").symlink_to(root / "train", target_is_directory=True)  # a loop is walked once
    ds = load_dataset(str(root), layout)
    assert set(ds.classes) >= {"cat", "dog", "frog"} and ds.counts["train"][list(ds.classes).index("cat")] == 3
    assert ds.skipped["train"] == 1 and ds.size("test") == 6


def test_a_fifo_or_device_named_like_an_archive_is_refused_at_once(
    tmp_path: Path, cache_dir: Path, layout: CacheLayout
) -> None:
    fifo = tmp_path / "data.tar"
    os.mkfifo(fifo)
    (tmp_path / "zero.zip").symlink_to("/dev/zero")
    folder = fixtures.make_image_folder(
        tmp_path / "imgs", classes=("cat", "dog"), per_class=3, test_per_class=2, corrupt=False, mixed=False
    )
    os.mkfifo(folder / "train" / "cat" / "pipe.jpg")  # inside a folder: an unreadable image, never opened
    done: list[object] = []

    def attempt() -> None:
        for source in (fifo, tmp_path / "zero.zip"):
            with pytest.raises(DataSourceError, match="regular file"):
                load_dataset(str(source), layout)
        done.append(load_dataset(str(folder), layout))

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(30)
    assert done, "reading a FIFO or /dev/zero hung"
    assert done[0].skipped["train"] == 1


def test_a_zip_member_that_inflates_to_a_gigabyte_is_skipped_not_read(
    tmp_path: Path, cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lib import config

    monkeypatch.setattr(config, "MAX_IMAGE_FILE_BYTES", 1 << 20)  # the same rule, at a size a test can build quickly
    folder = fixtures.make_image_folder(
        tmp_path / "imgs", classes=("cat", "dog"), per_class=3, test_per_class=2, corrupt=False, mixed=False
    )
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*.*")):
            zf.write(p, p.relative_to(folder))
        zf.writestr("train/cat/bomb.png", bytes(8 << 20))  # 8 MiB of zeros, a few KB compressed
    ds = load_dataset(str(archive), layout)
    assert ds.skipped["train"] == 1 and ds.size("train") == 6


def test_huge_images_decode_a_few_pixels_at_a_time() -> None:
    """The conversion's pixel budget: an image larger than the whole budget runs alone, smaller ones share it."""
    from lib.data.convert import PixelBudget

    budget = PixelBudget(100)
    peak, lock, inside = [0], threading.Lock(), [0]

    def work(pixels: int) -> None:
        with budget.hold(pixels):
            with lock:
                inside[0] += pixels
                peak[0] = max(peak[0], inside[0])
            threading.Event().wait(0.01)
            with lock:
                inside[0] -= pixels

    threads = [threading.Thread(target=work, args=(p,)) for p in (60, 60, 250, 30, 30, 250)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] <= 250


def test_exif_orientation_is_applied_to_folders_and_uploads(
    tmp_path: Path, cache_dir: Path, layout: CacheLayout
) -> None:
    from lib.data.images import decode_upload

    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white: a landscape image
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to view": the camera held it sideways
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    out = decode_upload(buf.getvalue())
    assert out.shape == (40, 20, 3) and out[:20].mean() > 200 and out[20:].mean() < 50  # upright: white on top
    root = tmp_path / "imgs"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            (root / split / cls / "0.jpg").write_bytes(buf.getvalue())
    ds = load_dataset(str(root), layout)
    stored = np.asarray(ds.images("train")[0])
    assert (
        stored[: stored.shape[0] // 2].mean() > stored[stored.shape[0] // 2 :].mean() + 100
    )  # top brighter than bottom


def test_data_prints_a_class_name_with_escapes_as_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = fixtures.make_image_folder(
        tmp_path / "imgs", classes=("cat", "dog\x1b[2J\x1b]0;pwned\x07"), per_class=3, test_per_class=2, corrupt=False
    )
    assert main(["data", "--source", str(root), "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "dog\\x1b[2J" in out


def test_one_class_is_refused_with_one_line(tmp_path: Path) -> None:
    root = fixtures.make_image_folder(
        tmp_path / "imgs", classes=("cats",), per_class=3, test_per_class=2, corrupt=False, mixed=False
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lib",
            "train",
            "--source",
            str(root),
            "--backbone",
            "/nonexistent/model",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert (
        proc.returncode == 2
        and len(errors) == 1
        and "at least two classes" in errors[0]
        and "Traceback" not in proc.stderr
    ), proc.stderr
