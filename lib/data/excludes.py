"""Exclude lists: images a user marked (on the Data quality page, or by hand) to leave out of a run.

A list names images by split and index (the image's position in that split in the dataset's order, as
Browse and ``audit`` show it). It is read from JSON (what the page saves) or CSV with ``split`` and
``index`` columns (what the page's label-issue export writes, so an export can be trimmed and fed back).

    images = read_exclude_file("flagged.csv", dataset)      # {"train": array([...]), "test": array([...])}
    save_exclude_list(layout, "cifar-issues", dataset, images)
    train --exclude flagged.csv                            # the run records what it left out
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lib.data.lists import EXCLUDE_LISTS, open_list
from lib.errors import DataSourceError
from lib.store.layout import CacheLayout

if TYPE_CHECKING:
    from lib.data.sources import Dataset

FORMAT = "transfer-explorer-exclude-list"


def parse_exclude(text: str, dataset: Dataset, name: str = "the exclude list") -> dict[str, np.ndarray]:
    """Split -> sorted unique indices; :class:`DataSourceError` naming any image that does not exist."""
    text = text.removeprefix("\ufeff")  # Excel's "CSV UTF-8" starts with a byte-order mark
    stripped = text.lstrip()
    raw: dict[str, list[Any]] = {}
    if stripped.startswith("{"):
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as err:
            raise DataSourceError(f"{name} is not valid JSON: {err.msg} (line {err.lineno}).") from err
        except ValueError as err:
            raise DataSourceError(f"{name} is not valid JSON: {err}.") from err
        if data.get("format") != FORMAT or not isinstance(data.get("images"), dict):
            raise DataSourceError(f'{name} is JSON but not an exclude list (no "format": "{FORMAT}" with "images").')
        if data.get("dataset") not in (None, dataset.fingerprint):
            raise DataSourceError(
                f"{name} was made for another dataset ({str(data['dataset'])[:16]}), not this one "
                f"({dataset.fingerprint[:16]})."
            )
        raw = {str(k): list(v) if isinstance(v, list) else [v] for k, v in data["images"].items()}
    else:
        reader = csv.reader(io.StringIO(text))
        header = [h.strip().lower() for h in next(reader, [])]
        if not {"split", "index"} <= set(header):
            raise DataSourceError(
                f"{name} needs JSON from the Data quality page, or CSV with 'split' and 'index' columns."
            )
        at_split, at_index = header.index("split"), header.index("index")  # spaces around a header name are allowed
        limit = sum(dataset.size(s) for s in dataset.splits)
        for n, row in enumerate(reader, start=1):
            if n > limit:  # each image once: a longer list cannot fit (and its size is then bounded by the dataset's)
                raise DataSourceError(f"{name} has more rows than this dataset has images ({limit:,}).")
            cell = [row[k].strip() if k < len(row) else "" for k in (at_split, at_index)]
            if any(cell):
                raw.setdefault(cell[0], []).append(cell[1])
    out: dict[str, np.ndarray] = {}
    bad: list[str] = []
    for split, values in raw.items():
        if split not in dataset.splits:
            bad.extend(f"{split}/{v}" for v in values[:3])
            continue
        keep = []
        for v in values:
            i = _index(v)
            if i is None:
                bad.append(f"{split}/{str(v)[:20]}")
                continue
            if 0 <= i < dataset.size(split):
                keep.append(i)
            else:
                bad.append(f"{split}/{i}")
        out[split] = np.unique(np.asarray(keep, np.int64))
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        sizes = ", ".join(f"{s}: 0-{dataset.size(s) - 1}" for s in dataset.splits)
        raise DataSourceError(f"{name} names images that do not exist: {shown} (this dataset has {sizes}).")
    return {s: v for s, v in out.items() if len(v)}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not an image index")


def _index(value: Any) -> int | None:
    """An image index: a whole number written as one (``7``, ``"7"``), never ``1.7``, ``true`` or ``"1e3"``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,12}", value.strip()):
        return int(value.strip())
    return None


def read_exclude_file(path: Path | str, dataset: Dataset, what: str = "Exclude list") -> dict[str, np.ndarray]:
    """:func:`parse_exclude` of a file, with clear errors for a missing, huge or unreadable one (``what`` names the
    list in them: an exclude list, or a selection, which has the same form)."""
    try:
        with open_list(path, what) as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as err:
        raise DataSourceError(f"{what} {str(path)[:200]!r} cannot be read as text: {err}") from err
    return parse_exclude(text, dataset, f"{what} {str(path)[:200]!r}")


def to_json(dataset: Dataset, images: dict[str, np.ndarray], note: str = "") -> dict[str, Any]:
    """The JSON form of an exclude list."""
    return {
        "format": FORMAT,
        "version": 1,
        "dataset": dataset.fingerprint,
        "note": note,
        "images": {s: [int(i) for i in np.unique(v)] for s, v in sorted(images.items()) if len(v)},
    }


def save_exclude_list(
    layout: CacheLayout, name: str, dataset: Dataset, images: dict[str, np.ndarray], note: str = ""
) -> Path:
    """Write the list atomically under the cache's ``excludes/`` (a name outside it is refused by the layout)."""
    return EXCLUDE_LISTS.save(layout, name, to_json(dataset, images, note))


def saved_exclude_lists(layout: CacheLayout) -> list[Path]:
    """The saved lists, newest first."""
    return EXCLUDE_LISTS.saved(layout)
