"""Label lists: replacement labels for some images, by split, index and class name. The same file serves the audit
(``audit --labels``: audit a dataset as if it carried these labels, as with CIFAR-10N's human labels) and label fixes
(a user's corrections, which training and evaluation apply).

A list is CSV with ``split,index,label`` columns (class names; a spreadsheet's formula guard, a leading ``'``, is
undone), or the JSON the app saves. Every row is checked: the split exists, the index is a whole number in range, the
class is one of the dataset's, and no image is given two labels.

    fixes = read_label_file("aggre_labels.csv", dataset)      # {"train": (indices, label ids)}
    labels = relabelled(dataset.labels("train"), fixes.get("train"))
    labels_digest(fixes)                                     # part of the key of whatever used them
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lib.data.lists import LABEL_LISTS, MAX_JSON_BYTES, open_list
from lib.errors import ConfigError, DataSourceError
from lib.safe_text import csv_value
from lib.store.layout import CacheLayout

if TYPE_CHECKING:
    from lib.data.sources import Dataset

FORMAT = "transfer-explorer-labels"
Fixes = dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (image indices, new label ids), indices sorted


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a label")


def _json_rows(
    text: str, name: str, fingerprint: str, origin: dict[str, Any]
) -> Iterator[tuple[str, str, str, str | None]]:
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as err:
        raise DataSourceError(f"{name} is not valid JSON ({str(err)[:80]}).") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("labels"), list):
        raise DataSourceError(f'{name} is JSON but not a label list (no "format": "{FORMAT}" with "labels").')
    if data.get("dataset") not in (None, "", fingerprint):
        raise DataSourceError(
            f"{name} was made for another dataset ({str(data.get('dataset'))[:40]!r}, this one is {fingerprint!r}). "
            "Nothing was changed."
        )
    origin["fingerprinted"] = data.get("dataset") == fingerprint
    for n, r in enumerate(data["labels"], start=1):
        if not isinstance(
            r, dict
        ):  # rows as arrays were once dropped in silence, and the run trained on the given labels
            raise DataSourceError(
                f'{name}: row {n} of "labels" is {type(r).__name__ if r is not None else "null"}, not an object '
                '{"split": ..., "index": ..., "label": ...}. Nothing was changed.'
            )
        yield str(r.get("split", "")), str(r.get("index", "")), str(r.get("label", "")), None


def _csv_rows(lines: Iterable[str], name: str) -> Iterator[tuple[str, str, str, str | None]]:
    reader = csv.reader(lines)
    header = [h.strip().removeprefix("\ufeff").strip().lower() for h in next(reader, [])]
    if not {"split", "index", "label"} <= set(header):
        raise DataSourceError(
            f"{name} needs CSV with 'split', 'index' and 'label' columns (class names), or the app's JSON."
        )
    at = {col: header.index(col) for col in ("split", "index", "label")}  # spaces around a header name are allowed
    given = (
        header.index("given") if "given" in header else None
    )  # what the app's CSV export adds: the label it replaces
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        cell = [row[at[c]].strip() if at[c] < len(row) else "" for c in ("split", "index", "label")]
        was = csv_value(row[given].strip()) if given is not None and given < len(row) else None
        yield cell[0], cell[1], csv_value(cell[2]), was


def parse_labels(
    text: str | Iterable[str], dataset: Dataset, name: str = "the label list", force: bool = False
) -> Fixes:
    """Split -> (indices, label ids); :class:`DataSourceError` naming the first rows that do not fit the dataset, or if
    no row names an image. ``text`` is the whole list, or its lines (a CSV file read as it streams). A list that does
    not carry this dataset's fingerprint and looks made for another one is refused unless ``force`` (see
    :func:`check_origin`)."""
    origin: dict[str, Any] = {"fingerprinted": False, "given_differs": 0, "given_rows": 0}
    if isinstance(text, str):
        text = text.removeprefix("\ufeff")
        rows = (
            _json_rows(text, name, dataset.fingerprint, origin)
            if text.lstrip().startswith("{")
            else _csv_rows(io.StringIO(text), name)
        )
    else:
        rows = _csv_rows(text, name)
    classes = {c: i for i, c in enumerate(dataset.classes)}
    limit = sum(dataset.size(s) for s in dataset.splits)  # each image once: more rows than images cannot fit
    found: dict[str, dict[int, int]] = {}
    bad: list[str] = []
    count = 0
    for split, index, label, given in rows:
        count += 1
        if count > limit:
            raise DataSourceError(
                f"{name} has more rows than this dataset has images ({limit:,}); a label list names each image "
                "at most once. Nothing was changed."
            )
        where = f"{split[:20]}/{index[:12]}"
        if split not in dataset.splits:
            bad.append(f"{where} (no split {split[:20]!r})")
        elif not re.fullmatch(r"[0-9]{1,12}", index) or int(index) >= dataset.size(split):
            bad.append(f"{where} (no such image; {split} has {dataset.size(split):,})")
        elif label not in classes:
            bad.append(f"{where} (unknown class {label[:40]!r})")
        elif found.setdefault(split, {}).setdefault(int(index), classes[label]) != classes[label]:
            bad.append(f"{where} (given two different labels)")
        elif given is not None:
            origin["given_rows"] += 1
            origin["given_differs"] += int(classes.get(given, -1) != int(dataset.labels(split)[int(index)]))
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DataSourceError(f"{name} does not fit this dataset: {shown}. Nothing was changed.")
    if not count:
        raise DataSourceError(
            f'{name} has no rows: it names no image (a header alone, or an empty "labels" list). Nothing was changed.'
        )
    fixes = {
        s: (np.fromiter(sorted(m), np.int64), np.asarray([m[i] for i in sorted(m)], np.int64))
        for s, m in found.items()
        if m
    }
    if not origin["fingerprinted"]:
        check_origin(fixes, dataset, name, force, origin["given_rows"], origin["given_differs"])
    return fixes


def read_label_file(path: Path | str, dataset: Dataset, force: bool = False) -> Fixes:
    """:func:`parse_labels` of a file, with clear errors for a missing, huge or unreadable one. A CSV is read as it
    streams (its size is bounded by the dataset's, not by memory); JSON, which the app writes, is read whole."""
    name = f"Label list {str(path)[:200]!r}"
    try:
        with open_list(path, "Label list") as fh:
            head = fh.read(4096)
            if head.lstrip().startswith("{"):
                if Path(path).expanduser().stat().st_size > MAX_JSON_BYTES:
                    raise DataSourceError(
                        f"{name} is JSON over {MAX_JSON_BYTES // 2**20} MB; give a list that large as CSV (it streams)."
                    )
                return parse_labels(head + fh.read(), dataset, name, force)
            return parse_labels(itertools.chain(io.StringIO(head + fh.readline()), fh), dataset, name, force)
    except (OSError, UnicodeDecodeError) as err:
        raise DataSourceError(f"{name} cannot be read as text: {err}") from err


SUSPECT_SHARE = 0.5  # a list that changes more than this share of its rows needs a confirmation (app) or --force (CLI)


def check_origin(
    fixes: Fixes, dataset: Dataset, name: str, force: bool, given_rows: int = 0, given_differs: int = 0
) -> None:
    """A list without this dataset's fingerprint (any CSV) fits whenever its indices do, even one made for another
    dataset (a CIFAR-10N slice once changed 72 of 80 labels of another dataset in silence). Refused unless ``force``:
    a list whose ``given`` column (the app's CSV export) disagrees with this dataset's labels on more than half of its
    rows, and a list without that column that changes more than half of the labels it names."""
    changed = sum(changed_count(fixes, dataset).values())
    rows = sum(len(idx) for idx, _lab in fixes.values())
    if given_rows:
        share, what = (
            given_differs / given_rows,
            f"its 'given' column disagrees with this dataset's labels on {given_differs:,} of {given_rows:,} rows",
        )
    else:
        share, what = (
            (changed / rows if rows else 0.0),
            f"it changes {changed:,} of the {rows:,} labels it names ({changed / max(rows, 1):.0%})",
        )
    if share > SUSPECT_SHARE and not force:
        raise DataSourceError(
            f"{name}: {what}. Was it made for another dataset? Nothing was changed; confirm to use it anyway "
            "(the CLI's --force)."
        )


def describe_changes(fixes: Fixes, dataset: Dataset) -> str:
    """How many of the labels a list names it changes, per split (what a command or page says when it applies one)."""
    rows = {s: len(idx) for s, (idx, _lab) in fixes.items()}
    return ", ".join(
        f"{s}: {n:,} of {rows[s]:,} labels changed ({n / max(rows[s], 1):.0%})"
        for s, n in changed_count(fixes, dataset).items()
    )


def read_label_source(
    path: Path | str, dataset: Dataset, force: bool = False
) -> tuple[dict[str, tuple[list[int], list[int]]], dict[str, Any]]:
    """A label-fix list for training: split -> (indices, label ids) as lists, and what a run records of the file (its
    name, sha256 and the labels' digest). A list that looks made for another dataset needs ``force``."""
    fixes = read_label_file(path, dataset, force)
    sha = hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
    source = {"name": Path(path).name, "path": str(path), "sha256": sha, "labels_digest": labels_digest(fixes)}
    return {s: ([int(i) for i in idx], [int(v) for v in lab]) for s, (idx, lab) in fixes.items()}, source


def check_not_excluded(fixes: dict[str, Any], exclude: dict[str, Any] | None) -> None:
    """:class:`ConfigError` naming the images that are both relabelled (``fixes``: split -> (indices, labels)) and
    excluded (split -> indices): an image is either left out or fixed, never both."""

    both = [
        f"{split}/{i}"
        for split, (idx, _lab) in sorted(fixes.items())
        for i in np.intersect1d(np.asarray(idx, np.int64), np.asarray((exclude or {}).get(split, []), np.int64))
    ]  # every split
    if both:
        shown = ", ".join(both[:5]) + (f" and {len(both) - 5} more" if len(both) > 5 else "")
        what = "1 image is" if len(both) == 1 else f"{len(both):,} images are"
        raise ConfigError(
            f"{what} both excluded and relabelled ({shown}); an image is either left out or fixed. Remove "
            f"{'it' if len(both) == 1 else 'them'} from one of the two lists."
        )


def relabelled(labels: np.ndarray, fix: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """``labels`` with the fixed ones replaced (a copy; the same array when there is nothing to fix)."""
    if fix is None or not len(fix[0]):
        return labels
    out = np.array(labels, copy=True)
    out[fix[0]] = fix[1]
    return out


def labels_digest(fixes: Fixes) -> str:
    """A short hash of the replacement labels (what an artifact made with them is keyed by)."""
    h = hashlib.sha256()
    for split in sorted(fixes):
        idx, lab = fixes[split]
        h.update(split.encode() + b"\0" + np.ascontiguousarray(idx).tobytes() + np.ascontiguousarray(lab).tobytes())
    return h.hexdigest()[:16]


def changed_count(fixes: Fixes, dataset: Dataset) -> dict[str, int]:
    """Per split, how many listed labels differ from the dataset's own."""
    return {s: int((dataset.labels(s)[idx] != lab).sum()) for s, (idx, lab) in fixes.items()}


def to_json(dataset: Dataset, fixes: Fixes, note: str = "") -> dict[str, Any]:
    """The JSON form of a label list."""
    rows = [
        {"split": s, "index": int(i), "label": dataset.classes[int(lab)]}
        for s in sorted(fixes)
        for i, lab in zip(*fixes[s])
    ]
    return {"format": FORMAT, "version": 1, "dataset": dataset.fingerprint, "note": note, "labels": rows}


def save_label_list(layout: CacheLayout, name: str, dataset: Dataset, fixes: Fixes, note: str = "") -> Path:
    """Write the list atomically under the cache's ``labels/`` (a name outside it is refused by the layout)."""
    return LABEL_LISTS.save(layout, name, to_json(dataset, fixes, note))


def saved_label_lists(layout: CacheLayout) -> list[Path]:
    """The saved label lists, newest first."""
    return LABEL_LISTS.saved(layout)


def read_saved(layout: CacheLayout, name: str, dataset: Dataset) -> Fixes:
    """The saved list ``name`` (empty if there is none yet); :class:`DataSourceError` if it does not fit ``dataset``."""

    path = LABEL_LISTS.path(layout, name)
    return read_label_file(path, dataset) if path.is_file() else {}


def update_saved(
    layout: CacheLayout,
    name: str,
    dataset: Dataset,
    add: dict[tuple[str, int], int] | None = None,
    remove: list[tuple[str, int]] | None = None,
    note: str = "",
) -> tuple[Path, Fixes]:
    """Add fixes (``(split, index) -> label id``, replacing an earlier fix of the same image) to the saved list ``name``
    and drop ``remove``; written atomically. Every index and class is checked against ``dataset`` first."""
    rows = {
        (s, int(i)): int(lab)
        for s, (idx, labs) in read_saved(layout, name, dataset).items()
        for i, lab in zip(idx, labs, strict=True)
    }
    for (split, index), label in (add or {}).items():
        if (
            split not in dataset.splits
            or not 0 <= int(index) < dataset.size(split)
            or not 0 <= int(label) < len(dataset.classes)
        ):
            raise DataSourceError(
                f"{split[:20]}/{index} as class {label} does not fit this dataset; nothing was changed."
            )
        rows[(split, int(index))] = int(label)
    for key in remove or ():
        rows.pop((key[0], int(key[1])), None)
    fixes: Fixes = {}
    for split in sorted({s for s, _ in rows}):
        idx = sorted(i for s, i in rows if s == split)
        fixes[split] = (np.asarray(idx, np.int64), np.asarray([rows[(split, i)] for i in idx], np.int64))
    return save_label_list(layout, name, dataset, fixes, note), fixes


def to_csv_rows(dataset: Dataset, fixes: Fixes) -> list[dict[str, Any]]:
    """One row per listed image: split, index, the given label and the fixed one (the CSV ``audit --labels`` and
    ``train --relabel`` read; the ``given`` column is ignored on reading)."""
    rows = []
    for s in sorted(fixes):
        given = dataset.labels(s)  # read once per split (a list can name every image of it)
        rows += [
            {
                "split": s,
                "index": int(i),
                "label": dataset.classes[int(lab)],
                "given": dataset.classes[int(given[int(i)])],
            }
            for i, lab in zip(*fixes[s], strict=True)
        ]
    return rows
