"""The curated dataset, exported: an image folder ``<split>/<class>/<split>-<index>.png`` (lossless PNG of the stored
pixels), as a folder or a ``.zip``, with ``curation.json`` beside the splits saying what was left out, relabelled and
selected. This project loads it back as a source (:mod:`lib.data.folders`): the same pixels, the fixed labels.

    summary = export_dataset(ds, Path("cifar-clean.zip"), exclude={"train": idx}, fixes=fixes)
    python -m lib export-dataset --source ... --out cifar-clean.zip --exclude flagged.json --relabel fixes.csv

It never replaces what the user named: an existing folder or file at ``--out`` is refused, and the export is written
beside it under a hidden temp name and moved into place only when complete.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lib.data.labels import check_not_excluded, relabelled
from lib.errors import ConfigError
from lib.process import is_alive, process_start
from lib.store.atomic import atomic_dir, check_free_space

if TYPE_CHECKING:
    from lib.data.sources import Dataset

FORMAT = "transfer-explorer-curated-dataset"
MANIFEST = "curation.json"
ProgressFn = Callable[[int, int], None]


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _check_target(out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise ConfigError(
            f"{str(out)[:200]!r} already exists; export-dataset never replaces what you name. Choose a new folder or "
            ".zip name."
        )


def _check_class_names(classes: list[str]) -> None:
    for name in classes:
        if not name or name.startswith(".") or "/" in name or "\\" in name or name != name.strip():
            raise ConfigError(
                f"Class name {name[:40]!r} cannot be a folder name; this dataset cannot be exported as an image folder."
            )


def plan(
    ds: Dataset,
    exclude: dict[str, Any] | None = None,
    fixes: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per split, the image indices to write and their (fixed) labels: the selection (every image if None) less the
    excluded ones. :class:`ConfigError` when an image is both excluded and relabelled, or nothing is left."""

    exclude, fixes = exclude or {}, fixes or {}
    check_not_excluded(fixes, exclude)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ds.splits:
        chosen = (
            np.arange(ds.size(split))
            if selection is None
            else np.unique(np.asarray(selection.get(split, []), np.int64))
        )
        chosen = np.setdiff1d(chosen, np.asarray(exclude.get(split, []), np.int64))
        fix = fixes.get(split)
        labels = relabelled(
            ds.labels(split), (np.asarray(fix[0], np.int64), np.asarray(fix[1], np.int64)) if fix else None
        )
        if len(chosen):
            out[split] = (chosen, np.asarray(labels)[chosen])
    if not out:
        raise ConfigError("Nothing to export: the selection less the exclude list leaves no image.")
    return out


def export_dataset(
    ds: Dataset,
    out: Path | str,
    exclude: dict[str, Any] | None = None,
    fixes: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None,
    note: str = "",
    on_progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Write the curated dataset to ``out`` (a folder, or a zip if it ends in ``.zip``); returns its summary (also
    written as ``curation.json``)."""

    out = Path(out).expanduser()
    _check_target(out)
    _check_class_names(list(ds.classes))
    chosen = plan(ds, exclude, fixes, selection)
    total = sum(len(idx) for idx, _ in chosen.values())
    side = ds.images(next(iter(chosen))).shape[1]
    check_free_space(
        out.parent if out.parent.exists() else Path.cwd(), total * (side * side * 3 + 200), "exporting this dataset"
    )
    changed = []
    for split, fix in (fixes or {}).items():
        given = ds.labels(split)
        changed += [
            {"split": split, "index": int(i), "given": ds.classes[int(given[i])], "label": ds.classes[int(lab)]}
            for i, lab in zip(*fix, strict=True)
            if int(given[i]) != int(lab)
        ]
    summary = {
        "format": FORMAT,
        "version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "note": note,
        "source_dataset": ds.fingerprint,
        "classes": list(ds.classes),
        "file_pattern": "<split>/<class>/<split>-<index>.png",
        "images": {s: len(idx) for s, (idx, _) in chosen.items()},
        "per_class": {
            s: {c: int((lab == k).sum()) for k, c in enumerate(ds.classes)} for s, (_, lab) in chosen.items()
        },
        "excluded": {
            s: [int(i) for i in np.unique(np.asarray(v, np.int64))] for s, v in (exclude or {}).items() if len(v)
        },
        "relabelled": changed,
        "selection": None if selection is None else {s: len(v) for s, v in selection.items()},
    }
    width = max(5, len(str(max(ds.size(s) for s in ds.splits) - 1)))

    def files() -> Any:
        done = 0
        for split, (idx, lab) in chosen.items():
            images = ds.images(split)
            for i, k in zip(idx, lab, strict=True):
                yield f"{split}/{ds.classes[int(k)]}/{split}-{int(i):0{width}d}.png", _png(images[int(i)])
                done += 1
                if on_progress is not None and (done % 500 == 0 or done == total):
                    on_progress(done, total)

    text = json.dumps(summary, indent=2)
    remove_stale_temps(out)
    if out.suffix.lower() == ".zip":
        with atomic_dir(
            out.with_name(out.name + ".parts"), install=lambda tmp, _t: _link_new(tmp / out.name, out)
        ) as tmp:
            _mark(tmp)
            with zipfile.ZipFile(tmp / out.name, "w", zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
                for name, data in files():
                    zf.writestr(name, data)
                zf.writestr(MANIFEST, text)
    else:
        with atomic_dir(out, install=_rename_new) as tmp:
            _mark(tmp)
            for name, data in files():
                path = tmp / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            (tmp / MANIFEST).write_text(text)
            (tmp / TEMP_MARK).unlink()  # the finished folder is the user's: nothing of ours stays in it
    return summary | {"out": str(out)}


TEMP_MARK = ".transfer-explorer-export-in-progress"  # in an export's temp folder: which process writes it


def _mark(tmp: Path) -> None:
    (tmp / TEMP_MARK).write_text(json.dumps({"pid": os.getpid(), "start": process_start(os.getpid())}))


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove the temp folders a killed export to ``out`` left beside it (``.NAME.parts.*.tmp``, ``.NAME.*.tmp``). Only
    a folder provably ours goes: it holds our marker, and the process the marker names is gone."""
    removed = []
    for pattern in (f".{out.name}.parts.*.tmp", f".{out.name}.*.tmp"):
        for tmp in out.parent.glob(pattern):
            try:
                mark = json.loads((tmp / TEMP_MARK).read_text()) if tmp.is_dir() and not tmp.is_symlink() else None
            except (OSError, ValueError):
                continue
            if (
                isinstance(mark, dict)
                and isinstance(mark.get("pid"), int)
                and not is_alive(mark["pid"], str(mark.get("start", "")))
            ):
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
    return removed


def _link_new(tmp: Path, target: Path) -> None:
    """Put the finished file at ``target`` only if nothing is there (a hard link cannot replace a file)."""
    try:
        os.link(tmp, target)
    except FileExistsError as err:
        raise ConfigError(
            f"{str(target)[:200]!r} appeared while exporting; it was left as it is and the export discarded."
        ) from err


def _rename_new(tmp: Path, target: Path) -> None:
    """Move the finished folder to ``target`` only if nothing is there."""
    if target.exists() or target.is_symlink():
        raise ConfigError(
            f"{str(target)[:200]!r} appeared while exporting; it was left as it is and the export discarded."
        )
    os.rename(tmp, target)
