"""lib/data/meta.py: a converted dataset's metadata, typed, written last, refused when damaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib.data.meta import DatasetMeta
from lib.store.layout import DATASET_FILES


def test_round_trip(tmp_path: Path) -> None:
    meta = DatasetMeta(
        "image-folder",
        "imgs/",
        ["cat", "dog"],
        ["train", "test"],
        {"train": [3, 4], "test": [1, 2]},
        {"train": 1},
        [32, 32, 3],
    )
    meta.write(tmp_path)
    assert DatasetMeta.read(tmp_path) == meta


@pytest.mark.parametrize(
    "damage", [{"classes": "cat"}, {"counts": {"train": [1]}}, {"image_shape": [32, 32]}, {"splits": [1]}]
)
def test_damaged_metadata_is_none(tmp_path: Path, damage: dict) -> None:
    good = {
        "kind": "image-folder",
        "source": "s",
        "classes": ["cat", "dog"],
        "splits": ["train"],
        "counts": {"train": [1, 2]},
        "skipped": {},
        "image_shape": [32, 32, 3],
    }
    (tmp_path / DATASET_FILES.meta).write_text(json.dumps({**good, **damage}))
    assert DatasetMeta.read(tmp_path) is None
    (tmp_path / DATASET_FILES.meta).write_text("{not json")
    assert DatasetMeta.read(tmp_path) is None
