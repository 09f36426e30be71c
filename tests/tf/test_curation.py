"""The curation loop from the command line: train with label fixes, export the curated dataset (pixels round-trip
exactly, fixed labels come back), and every refusal is one line that changes nothing."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lib.store.layout import CacheLayout
from tests.fixtures import cli


def _fixes_csv(path: Path, rows: list[tuple[str, int, str]]) -> Path:
    path.write_text("split,index,label\n" + "".join(f"{s},{i},{c}\n" for s, i, c in rows))
    return path


def test_train_with_label_fixes_records_them_and_scores_both_ways(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout, tmp_path: Path
) -> None:
    from lib.data.sources import load_dataset
    from lib.runs.registry import load_run

    src, bb = str(assets["cifar_tar"]), str(assets["savedmodel"])
    ds = load_dataset(src, layout)
    given_test = ds.labels("test")
    # Three test labels moved to another class, and two training labels.
    moves = [("test", i, ds.classes[(int(given_test[i]) + 1) % 10]) for i in (0, 4, 9)]
    moves += [
        ("train", 2, ds.classes[(int(ds.labels("train")[2]) + 3) % 10]),
        ("train", 7, ds.classes[int(ds.labels("train")[7])]),
    ]
    fixes = _fixes_csv(tmp_path / "fixes.csv", moves)
    refused = cli(
        "train",
        "--source",
        src,
        "--backbone",
        bb,
        "--image-size",
        "32",
        "--head",
        "linear",
        "--epochs",
        "2",
        "--relabel",
        str(fixes),
        cache=cache_dir,
        ok=False,
    )
    # 4 of its 5 rows change a label: a CSV without a fingerprint that changes most of what it names needs --force
    assert (
        refused.returncode == 2
        and "changes 4 of the 5 labels it names (80%)" in refused.stderr
        and "--force" in refused.stderr
    )
    out = cli(
        "train",
        "--source",
        src,
        "--backbone",
        bb,
        "--image-size",
        "32",
        "--head",
        "linear",
        "--epochs",
        "2",
        "--relabel",
        str(fixes),
        "--force",
        "--json",
        cache=cache_dir,
    )
    relabel = out["relabel"]
    assert (
        relabel["name"] == "fixes.csv"
        and len(relabel["sha256"]) == 64
        and relabel["changed"] == {"train": 1, "test": 3}
    )
    assert relabel["listed"] == {"test": 3, "train": 2}
    run = load_run(layout, out["run_id"])
    assert run.manifest.relabel == relabel
    assert np.array_equal(run.y_true, given_test[run.indices])  # scored against the given labels ...
    assert run.y_fixed is not None and int((run.y_fixed != run.y_true).sum()) == 3  # ... and against the fixed ones
    assert relabel["test_accuracy_fixed"] == pytest.approx(float((run.y_pred == run.y_fixed).mean()))
    assert out["test_accuracy"] == pytest.approx(float((run.y_pred == run.y_true).mean()))


@pytest.mark.parametrize(
    "body, message",
    [
        ("split,index,label\ntest,99,cat\n", "no such image"),
        ("split,index,label\ntest,1,unicorn\n", "unknown class"),
        ("split,index,label\nvalid,1,cat\n", "no split"),
        ('{"format": "transfer-explorer-labels", "dataset": "someone-else", "labels": []}', "another dataset"),
    ],
)
def test_bad_fix_lists_are_refused_in_one_line(
    assets: dict[str, Path], cache_dir: Path, tmp_path: Path, body: str, message: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(body)
    proc = cli(
        "train",
        "--source",
        str(assets["cifar_tar"]),
        "--backbone",
        str(assets["savedmodel"]),
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--relabel",
        str(bad),
        cache=cache_dir,
        ok=False,
    )
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (cache_dir / "runs").exists() or not any((cache_dir / "runs").iterdir())


def test_an_image_cannot_be_both_fixed_and_excluded(assets: dict[str, Path], cache_dir: Path, tmp_path: Path) -> None:
    fixes = _fixes_csv(tmp_path / "fixes.csv", [("train", 3, "cat")])
    excl = tmp_path / "excl.csv"
    excl.write_text("split,index\ntrain,3\n")
    for cmd in (
        ["train", "--backbone", str(assets["savedmodel"]), "--image-size", "32", "--epochs", "1"],
        ["export-dataset", "--out", str(tmp_path / "o")],
    ):
        proc = cli(
            *cmd,
            "--source",
            str(assets["cifar_tar"]),
            "--relabel",
            str(fixes),
            "--exclude",
            str(excl),
            "--force",
            cache=cache_dir,
            ok=False,
        )
        assert (
            proc.returncode == 2
            and "1 image is both excluded and relabelled" in proc.stderr
            and "train/3" in proc.stderr
        )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("as_zip", [False, True])
def test_export_dataset_round_trips_pixels_and_fixed_labels(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout, tmp_path: Path, as_zip: bool
) -> None:
    from lib.data.sources import load_dataset

    src = str(assets["cifar_tar"])
    ds = load_dataset(src, layout)
    fixes = _fixes_csv(
        tmp_path / "fixes.csv", [("train", 0, ds.classes[(int(ds.labels("train")[0]) + 1) % 10]), ("test", 5, "ship")]
    )
    excl = tmp_path / "excl.json"
    excl.write_text(json.dumps({"format": "transfer-explorer-exclude-list", "images": {"train": [1, 2], "test": [7]}}))
    out = tmp_path / ("clean.zip" if as_zip else "clean")
    summary = cli(
        "export-dataset",
        "--source",
        src,
        "--out",
        str(out),
        "--exclude",
        str(excl),
        "--relabel",
        str(fixes),
        "--force",
        "--json",
        cache=cache_dir,
    )
    assert summary["images"] == {"train": 58, "test": 29} and summary["excluded"] == {"train": [1, 2], "test": [7]}
    if as_zip:
        with zipfile.ZipFile(out) as zf:
            assert "curation.json" in zf.namelist() and all(
                n.endswith(".png") for n in zf.namelist() if n != "curation.json"
            )
    else:
        assert json.loads((out / "curation.json").read_text())["relabelled"][0]["index"] == 0

    back = load_dataset(str(out), CacheLayout(tmp_path / "cache2"))
    assert back.splits == ("train", "test") and list(back.classes) == list(ds.classes)
    for split in ("train", "test"):
        kept = np.setdiff1d(np.arange(ds.size(split)), [1, 2] if split == "train" else [7])
        fixed = ds.labels(split).copy()
        if split == "train":
            fixed[0] = (fixed[0] + 1) % 10
        else:
            fixed[5] = ds.classes.index("ship")
        # The loader orders images by class, then file name (the original index): the same order here.
        order = kept[np.lexsort((kept, fixed[kept]))]
        assert back.size(split) == len(kept)
        assert np.array_equal(back.images(split), ds.images(split)[order])  # every pixel, byte for byte
        assert np.array_equal(back.labels(split), fixed[order])


def test_export_dataset_never_replaces_what_the_user_named(
    assets: dict[str, Path], cache_dir: Path, tmp_path: Path
) -> None:
    src = str(assets["cifar_tar"])
    mine = tmp_path / "mine.zip"
    mine.write_bytes(b"my own file")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    sel = tmp_path / "sel.csv"
    sel.write_text("split,index\ntest,3\ntest,4\n")
    for target in (mine, folder):
        proc = cli(
            "export-dataset", "--source", src, "--out", str(target), "--selection", str(sel), cache=cache_dir, ok=False
        )
        assert proc.returncode == 2 and "already exists" in proc.stderr
    assert (
        mine.read_bytes() == b"my own file"
        and (folder / "keep.txt").read_text() == "keep"
        and sorted(p.name for p in tmp_path.iterdir() if p != cache_dir) == ["folder", "mine.zip", "sel.csv"]
    )  # nothing half-written beside them
    picked = cli(
        "export-dataset",
        "--source",
        src,
        "--out",
        str(tmp_path / "two"),
        "--selection",
        str(sel),
        "--json",
        cache=cache_dir,
    )
    assert picked["images"] == {"test": 2} and len(list((tmp_path / "two").rglob("*.png"))) == 2


def test_saved_fix_list_merges_replaces_and_removes(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout
) -> None:
    from lib.data.labels import read_saved, to_csv_rows, update_saved
    from lib.data.sources import load_dataset
    from lib.errors import DataSourceError

    ds = load_dataset(str(assets["cifar_tar"]), layout)
    assert read_saved(layout, "mine", ds) == {}
    update_saved(layout, "mine", ds, add={("train", 5): 1, ("test", 2): 3})
    _path, fixes = update_saved(layout, "mine", ds, add={("train", 5): 2, ("train", 1): 0}, remove=[("test", 2)])
    assert {s: (v[0].tolist(), v[1].tolist()) for s, v in fixes.items()} == {"train": ([1, 5], [0, 2])}
    assert [r["label"] for r in to_csv_rows(ds, read_saved(layout, "mine", ds))] == [ds.classes[0], ds.classes[2]]
    with pytest.raises(DataSourceError, match="does not fit"):
        update_saved(layout, "mine", ds, add={("train", 60): 1})  # 60 training images: indices 0-59
    assert len(read_saved(layout, "mine", ds)["train"][0]) == 2  # nothing was changed
    other = cache_dir / "labels" / "theirs.json"
    other.write_text(json.dumps({"format": "transfer-explorer-labels", "dataset": "elsewhere", "labels": []}))
    with pytest.raises(DataSourceError, match="another dataset"):
        update_saved(layout, "theirs", ds, add={("train", 1): 1})
    assert "elsewhere" in other.read_text()  # a list made for another dataset is never overwritten
