"""bench/map_ladder.py's datasets: N images made from a CIFAR-style source, every one different, the same for the
same N and seed, and read by the app as an image-folder archive."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

from lib.data.sources import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import map_ladder

from lib.store.layout import CacheLayout


def test_a_rung_has_its_size_every_image_differs_and_it_is_made_the_same_again(
    data_assets: dict[str, Path], tmp_path: Path
) -> None:
    source = str(data_assets["cifar_tar"])
    first = tmp_path / "a.tar"
    made = map_ladder.make_rung(source, 150, first, tmp_path / "src-cache")
    assert made["images"] == 150 and not made.get("reused")
    ds = load_dataset(str(first), CacheLayout(tmp_path / "cache"))
    assert ds.size("train") == 125 and ds.size("test") == 25 and sum(ds.skipped.values()) == 0
    small = load_dataset(source, CacheLayout(tmp_path / "src-cache"))
    assert ds.size("train") > small.size("train")  # more images than the source has: copies are augmented
    pixels = {hashlib.sha256(np.asarray(img).tobytes()).hexdigest() for s in ds.splits for img in ds.images(s)}
    assert len(pixels) == 150  # no two images alike
    again = tmp_path / "b.tar"
    map_ladder.make_rung(source, 150, again, tmp_path / "src-cache")
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(again.read_bytes()).digest()
    assert map_ladder.make_rung(source, 150, first, tmp_path / "src-cache")["reused"]


def test_the_first_copy_is_the_image_and_later_copies_keep_its_shape() -> None:
    img = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    assert map_ladder.augment(img, 0, 7) is img
    for copy in (1, 2, 3):
        out = map_ladder.augment(img, copy, 7 + copy)
        assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
    assert np.array_equal(map_ladder.augment(img, 1, 5), map_ladder.augment(img, 1, 5))
