"""lib/data/labels.py: replacement label lists (CSV split,index,label or the app's JSON), checked row by row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lib.data.labels import (
    changed_count,
    labels_digest,
    parse_labels,
    read_label_file,
    relabelled,
    save_label_list,
    saved_label_lists,
    to_json,
)
from lib.data.sources import load_dataset
from lib.errors import DataSourceError
from lib.store.layout import CacheLayout


@pytest.fixture
def tiny_ds(data_assets: dict[str, Path], cache_dir: Path, layout: CacheLayout):
    return load_dataset(str(data_assets["cifar_tar"]), layout)


def test_csv_rows_become_label_ids_and_the_json_round_trips(tiny_ds, cache_dir: Path, layout: CacheLayout) -> None:
    c = tiny_ds.classes
    fixes = parse_labels(
        f"\ufeffsplit,index,label\r\ntrain,3,{c[1]}\r\ntest,0,{c[2]}\r\ntrain,1,{c[0]}\r\n", tiny_ds, force=True
    )
    assert fixes["train"][0].tolist() == [1, 3] and fixes["train"][1].tolist() == [0, 1]
    assert fixes["test"][1].tolist() == [2]
    y = relabelled(tiny_ds.labels("train"), fixes["train"])
    assert y[3] == 1 and y[1] == 0 and (np.delete(y, [1, 3]) == np.delete(tiny_ds.labels("train"), [1, 3])).all()
    path = save_label_list(layout, "mine", tiny_ds, fixes)
    assert saved_label_lists(layout) == [path]
    again = read_label_file(path, tiny_ds)
    assert labels_digest(again) == labels_digest(fixes)
    assert sum(changed_count(fixes, tiny_ds).values()) <= 3


@pytest.mark.parametrize(
    "row, why",
    [
        ("train,99999,{c0}", "no such image"),
        ("valid,1,{c0}", "no split"),
        ("train,-1,{c0}", "no such image"),
        ("train,1.5,{c0}", "no such image"),
        ("train,1,=HYPERLINK()", "unknown class"),
        ("train,1,{c0}\ntrain,1,{c1}", "two different labels"),
    ],
)
def test_rows_that_do_not_fit_are_named(tiny_ds, row: str, why: str) -> None:
    with pytest.raises(DataSourceError, match=why):
        parse_labels("split,index,label\n" + row.format(c0=tiny_ds.classes[0], c1=tiny_ds.classes[1]), tiny_ds)


def test_a_list_for_another_dataset_and_other_files_are_refused(tiny_ds, tmp_path: Path) -> None:
    other = to_json(tiny_ds, {"train": (np.array([1]), np.array([0]))})
    other["dataset"] = "archive-0000000000000000"
    with pytest.raises(DataSourceError, match="another dataset"):
        parse_labels(json.dumps(other), tiny_ds)
    with pytest.raises(DataSourceError, match="'split', 'index' and 'label'"):
        parse_labels("a,b\n1,2\n", tiny_ds)
    with pytest.raises(DataSourceError, match="not a label list"):
        parse_labels('{"images": []}', tiny_ds)
    with pytest.raises(DataSourceError, match="does not exist"):
        read_label_file(tmp_path / "nope.csv", tiny_ds)
    with pytest.raises(Exception, match="label list name"):
        save_label_list(CacheLayout(tmp_path), "../outside", tiny_ds, {})


def test_rows_that_are_not_objects_and_lists_with_no_rows_are_refused(tiny_ds, tmp_path: Path) -> None:
    arrays = to_json(tiny_ds, {"train": (np.array([1]), np.array([0]))})
    arrays["labels"] = [["train", 1, tiny_ds.classes[0]]]
    with pytest.raises(DataSourceError, match='row 1 of "labels" is list, not an object'):
        parse_labels(json.dumps(arrays), tiny_ds)
    with pytest.raises(DataSourceError, match="has no rows"):
        parse_labels("split,index,label\n", tiny_ds)
    with pytest.raises(DataSourceError, match="has no rows"):
        parse_labels(json.dumps({**arrays, "labels": []}), tiny_ds)
    header_only = tmp_path / "header.csv"
    header_only.write_text("split,index,label\r\n")
    with pytest.raises(DataSourceError, match="has no rows"):
        read_label_file(header_only, tiny_ds)


def test_a_header_with_spaces_reads_its_rows(tiny_ds) -> None:
    own = tiny_ds.labels("train")
    fixes = parse_labels(f"split, index, label\ntrain, 2, {tiny_ds.classes[int(own[2])]}\n", tiny_ds)
    assert fixes["train"][0].tolist() == [2]


def test_a_list_that_looks_made_for_another_dataset_needs_force(tiny_ds, tmp_path: Path) -> None:
    own = tiny_ds.labels("train")
    other = [tiny_ds.classes[(int(own[i]) + 1) % 10] for i in range(4)]
    rows = (
        "split,index,label\n"
        + "".join(f"train,{i},{other[i]}\n" for i in range(3))
        + f"train,3,{tiny_ds.classes[int(own[3])]}\n"
    )
    with pytest.raises(DataSourceError, match=r"changes 3 of the 4 labels it names \(75%\).*another dataset"):
        parse_labels(rows, tiny_ds)
    assert len(parse_labels(rows, tiny_ds, force=True)["train"][0]) == 4
    # the app's CSV export carries the label each row replaces: a list whose 'given' column matches this dataset is its
    # own
    given = "split,index,label,given\n" + "".join(
        f"train,{i},{other[i]},{tiny_ds.classes[int(own[i])]}\n" for i in range(3)
    )
    assert len(parse_labels(given, tiny_ds)["train"][0]) == 3
    wrong = "split,index,label,given\n" + "".join(f"train,{i},{other[i]},{other[i]}\n" for i in range(3))
    with pytest.raises(DataSourceError, match="'given' column disagrees"):
        parse_labels(wrong, tiny_ds)
    big = tmp_path / "many.csv"
    big.write_text("split,index,label\n" + f"train,0,{tiny_ds.classes[int(own[0])]}\n" * 200)
    with pytest.raises(DataSourceError, match="more rows than this dataset has images"):
        read_label_file(big, tiny_ds)  # stops reading there: memory is bounded by the dataset, not the file
