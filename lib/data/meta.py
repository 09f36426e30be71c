"""The typed metadata of a converted dataset, written in one place (last, so a folder without it is no dataset).

DatasetMeta(kind, source, classes, splits, counts, skipped, image_shape).write(folder)
meta = DatasetMeta.read(folder)          # None if missing, damaged or of another format version
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib import config
from lib.store.atomic import read_json
from lib.store.layout import DATASET_FILES


@dataclass
class DatasetMeta:
    """What a converted dataset holds: its classes, splits, per-class counts and image shape."""

    kind: str  # "cifar10-pickle" | "image-folder"
    source: str
    classes: list[str]
    splits: list[str]
    counts: dict[str, list[int]]
    skipped: dict[str, int] = field(default_factory=dict)  # unreadable files left out, per split
    image_shape: list[int] = field(default_factory=lambda: [32, 32, 3])
    format_version: int = config.DATASET_FORMAT_VERSION

    def write(self, folder: Path) -> None:
        """Write ``meta.json`` into ``folder`` (a temp folder renamed into place after: atomic as a whole)."""
        (folder / DATASET_FILES.meta).write_text(json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def read(cls, folder: Path) -> DatasetMeta | None:
        """The metadata of ``folder``, or None if it is missing, damaged or not well-typed."""
        data: Any = read_json(folder / DATASET_FILES.meta)
        if not isinstance(data, dict):
            return None
        try:
            meta = cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})
        except TypeError:
            return None
        ok = (
            isinstance(meta.classes, list)
            and all(isinstance(c, str) for c in meta.classes)
            and isinstance(meta.splits, list)
            and all(isinstance(s, str) for s in meta.splits)
            and isinstance(meta.counts, dict)
            and all(
                s in meta.counts and isinstance(meta.counts[s], list) and len(meta.counts[s]) == len(meta.classes)
                for s in meta.splits
            )
            and isinstance(meta.image_shape, list)
            and len(meta.image_shape) == 3
            and isinstance(meta.skipped, dict)
        )
        return meta if ok else None
