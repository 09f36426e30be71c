"""lib/data/excludes.py: exclude lists from the page's JSON or any CSV with split,index columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.data.excludes import parse_exclude
from lib.data.sources import load_dataset
from lib.errors import DataSourceError
from lib.store.layout import CacheLayout

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_ds(data_assets: dict[str, Path], cache_dir: Path, layout: CacheLayout):
    return load_dataset(str(data_assets["cifar_tar"]), layout)


def test_exclude_list_with_a_byte_order_mark_is_read(tiny_ds, tmp_path: Path) -> None:
    from lib.data.excludes import read_exclude_file

    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffsplit,index\r\ntrain,3\r\ntest,1\r\n".encode())
    got = read_exclude_file(path, tiny_ds)
    assert got["train"].tolist() == [3] and got["test"].tolist() == [1]


@pytest.mark.parametrize(
    "text",
    [
        '{"format": "transfer-explorer-exclude-list", "images": {"train": [Infinity]}}',
        '{"format": "transfer-explorer-exclude-list", "images": {"train": [NaN]}}',
        '{"format": "transfer-explorer-exclude-list", "images": {"train": [1.7]}}',
        '{"format": "transfer-explorer-exclude-list", "images": {"train": [true]}}',
        "split,index\ntrain,1.7\n",
        "split,index\ntrain,1e3\n",
    ],
)
def test_exclude_indices_must_be_whole_numbers(tiny_ds, text: str) -> None:
    with pytest.raises(DataSourceError):
        parse_exclude(text, tiny_ds)


def test_a_selection_file_is_called_a_selection(
    data_assets: dict, cache_dir: Path, layout: CacheLayout, tmp_path: Path
) -> None:
    from lib.data.excludes import read_exclude_file
    from lib.data.sources import load_dataset
    from lib.errors import DataSourceError

    ds = load_dataset(str(data_assets["cifar_tar"]), layout)
    with pytest.raises(DataSourceError, match=r"^Selection '.*nope\.csv' does not exist"):
        read_exclude_file(tmp_path / "nope.csv", ds, what="Selection")


def test_a_killed_exports_temp_folder_is_removed_by_the_next_export_and_only_ours(
    data_assets: dict, cache_dir: Path, layout: CacheLayout, tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    from lib.data.export_dataset import TEMP_MARK, export_dataset

    ds = load_dataset(str(data_assets["cifar_tar"]), layout)
    tmp_path = tmp_path / "exports"
    tmp_path.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ours = tmp_path / ".clean.zip.parts.abc123.tmp"  # what a killed export leaves
    ours.mkdir()
    (ours / TEMP_MARK).write_text(json.dumps({"pid": dead.pid, "start": "0"}))
    theirs = tmp_path / ".clean.zip.parts.user.tmp"  # the same shape of name, but not ours: never touched
    theirs.mkdir()
    export_dataset(ds, tmp_path / "clean.zip")
    assert (tmp_path / "clean.zip").is_file() and not ours.exists() and theirs.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".clean.zip.parts.user.tmp", "clean.zip"]
