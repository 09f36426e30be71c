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
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lib.errors import DataSourceError
from lib.safe_text import csv_value

if TYPE_CHECKING:
    from lib.data.sources import Dataset

FORMAT = "transfer-explorer-labels"
MAX_BYTES = 200 * 1024 * 1024
Fixes = dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (image indices, new label ids), indices sorted


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a label")


def _rows(text: str, name: str, fingerprint: str) -> list[tuple[str, str, str]]:
    text = text.removeprefix("\ufeff")
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as err:
            raise DataSourceError(f"{name} is not valid JSON ({str(err)[:80]}).") from err
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("labels"), list):
            raise DataSourceError(f"{name} is JSON but not a label list (no \"format\": \"{FORMAT}\" with \"labels\").")
        if data.get("dataset") not in (None, "", fingerprint):
            raise DataSourceError(f"{name} was made for another dataset ({str(data.get('dataset'))[:40]!r}, this one is {fingerprint!r}). Nothing was changed.")
        return [(str(r.get("split", "")), str(r.get("index", "")), str(r.get("label", ""))) for r in data["labels"] if isinstance(r, dict)]
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"split", "index", "label"} <= {f.strip() for f in reader.fieldnames}:
        raise DataSourceError(f"{name} needs CSV with 'split', 'index' and 'label' columns (class names), or the app's JSON.")
    return [(str(r.get("split") or "").strip(), str(r.get("index") or "").strip(), csv_value(str(r.get("label") or "").strip())) for r in reader]


def parse_labels(text: str, dataset: Dataset, name: str = "the label list") -> Fixes:
    """Split -> (indices, label ids); :class:`DataSourceError` naming the first rows that do not fit the dataset."""
    classes = {c: i for i, c in enumerate(dataset.classes)}
    found: dict[str, dict[int, int]] = {}
    bad: list[str] = []
    for split, index, label in _rows(text, name, dataset.fingerprint):
        where = f"{split[:20]}/{index[:12]}"
        if split not in dataset.splits:
            bad.append(f"{where} (no split {split[:20]!r})")
        elif not re.fullmatch(r"[0-9]{1,12}", index) or int(index) >= dataset.size(split):
            bad.append(f"{where} (no such image; {split} has {dataset.size(split):,})")
        elif label not in classes:
            bad.append(f"{where} (unknown class {label[:40]!r})")
        elif found.setdefault(split, {}).setdefault(int(index), classes[label]) != classes[label]:
            bad.append(f"{where} (given two different labels)")
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DataSourceError(f"{name} does not fit this dataset: {shown}. Nothing was changed.")
    return {s: (np.fromiter(sorted(m), np.int64), np.asarray([m[i] for i in sorted(m)], np.int64)) for s, m in found.items() if m}


def read_label_file(path: Path | str, dataset: Dataset) -> Fixes:
    """:func:`parse_labels` of a file, with clear errors for a missing, huge or unreadable one."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataSourceError(f"Label list {str(path)[:200]!r} does not exist or is not a file.")
    if p.stat().st_size > MAX_BYTES:
        raise DataSourceError(f"Label list {str(path)[:200]!r} is over {MAX_BYTES // 2**20} MB; that is not a list of labels.")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataSourceError(f"Label list {str(path)[:200]!r} cannot be read as text: {err}") from err
    return parse_labels(text, dataset, f"Label list {str(path)[:200]!r}")


def read_label_source(path: Path | str, dataset: Dataset) -> tuple[dict[str, tuple[list[int], list[int]]], dict[str, Any]]:
    """A label-fix list for training: split -> (indices, label ids) as lists, and what a run records of the file (its
    name, sha256 and the labels' digest)."""
    fixes = read_label_file(path, dataset)
    sha = hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
    source = {"name": Path(path).name, "path": str(path), "sha256": sha, "labels_digest": labels_digest(fixes)}
    return {s: ([int(i) for i in idx], [int(v) for v in lab]) for s, (idx, lab) in fixes.items()}, source


def check_not_excluded(fixes: dict[str, Any], exclude: dict[str, Any] | None) -> None:
    """:class:`ConfigError` naming the images that are both relabelled (``fixes``: split -> (indices, labels)) and
    excluded (split -> indices): an image is either left out or fixed, never both."""
    from lib.errors import ConfigError

    for split, (idx, _lab) in fixes.items():
        both = np.intersect1d(np.asarray(idx, np.int64), np.asarray((exclude or {}).get(split, []), np.int64))
        if len(both):
            shown = ", ".join(f"{split}/{i}" for i in both[:5]) + (f" and {len(both) - 5} more" if len(both) > 5 else "")
            raise ConfigError(f"{len(both):,} images are both excluded and relabelled ({shown}); an image is either left out or fixed. "
                              "Remove them from one of the two lists.")


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
    rows = [{"split": s, "index": int(i), "label": dataset.classes[int(lab)]} for s in sorted(fixes) for i, lab in zip(*fixes[s])]
    return {"format": FORMAT, "version": 1, "dataset": dataset.fingerprint, "note": note, "labels": rows}


def save_label_list(cache_dir: Any, name: str, dataset: Dataset, fixes: Fixes, note: str = "") -> Path:
    """Write the list atomically under the cache's ``labels/`` (a name outside it is refused by the layout)."""
    from lib.store.atomic import write_json_atomic
    from lib.store.layout import CacheLayout

    path = CacheLayout.at(cache_dir).label_file(name)
    write_json_atomic(path, to_json(dataset, fixes, note))
    return path


def saved_label_lists(cache_dir: Any) -> list[Path]:
    """The saved label lists, newest first."""
    from lib.store.atomic import newest_first
    from lib.store.layout import CacheLayout

    return newest_first(CacheLayout.at(cache_dir).label_files())


def read_saved(cache_dir: Any, name: str, dataset: Dataset) -> Fixes:
    """The saved list ``name`` (empty if there is none yet); :class:`DataSourceError` if it does not fit ``dataset``."""
    from lib.store.layout import CacheLayout

    path = CacheLayout.at(cache_dir).label_file(name)
    return read_label_file(path, dataset) if path.is_file() else {}


def update_saved(cache_dir: Any, name: str, dataset: Dataset, add: dict[tuple[str, int], int] | None = None,
                 remove: list[tuple[str, int]] | None = None, note: str = "") -> tuple[Path, Fixes]:  # fmt: skip
    """Add fixes (``(split, index) -> label id``, replacing an earlier fix of the same image) to the saved list ``name``
    and drop ``remove``; written atomically. Every index and class is checked against ``dataset`` first."""
    rows = {(s, int(i)): int(lab) for s, (idx, labs) in read_saved(cache_dir, name, dataset).items() for i, lab in zip(idx, labs, strict=True)}
    for (split, index), label in (add or {}).items():
        if split not in dataset.splits or not 0 <= int(index) < dataset.size(split) or not 0 <= int(label) < len(dataset.classes):
            raise DataSourceError(f"{split[:20]}/{index} as class {label} does not fit this dataset; nothing was changed.")
        rows[(split, int(index))] = int(label)
    for key in remove or ():
        rows.pop((key[0], int(key[1])), None)
    fixes: Fixes = {}
    for split in sorted({s for s, _ in rows}):
        idx = sorted(i for s, i in rows if s == split)
        fixes[split] = (np.asarray(idx, np.int64), np.asarray([rows[(split, i)] for i in idx], np.int64))
    return save_label_list(cache_dir, name, dataset, fixes, note), fixes


def to_csv_rows(dataset: Dataset, fixes: Fixes) -> list[dict[str, Any]]:
    """One row per listed image: split, index, the given label and the fixed one (the CSV ``audit --labels`` and
    ``train --relabel`` read; the ``given`` column is ignored on reading)."""
    rows = []
    for s in sorted(fixes):
        given = dataset.labels(s)  # read once per split (a list can name every image of it)
        rows += [{"split": s, "index": int(i), "label": dataset.classes[int(lab)], "given": dataset.classes[int(given[int(i)])]}
                 for i, lab in zip(*fixes[s], strict=True)]  # fmt: skip
    return rows
