"""The one store of image lists under the cache: label lists (``labels/``) and exclude lists (``excludes/``) are named
JSON files, written atomically, listed newest first, and read from any path with the same checks (exists, not huge,
text). What a list says is its own module's (:mod:`lib.data.labels`, :mod:`lib.data.excludes`).

    LABEL_LISTS.save(layout, "fixes", payload)      # <cache>/labels/fixes.json (a name outside is refused)
    LABEL_LISTS.saved(layout)                       # newest first
    text = open_list(path, "Label list")            # DataSourceError for a missing, huge or unreadable file
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lib.errors import DataSourceError
from lib.store.atomic import newest_first, write_json_atomic
from lib.store.layout import CacheLayout

MAX_BYTES = 200 * 1024 * 1024  # any list file; a CSV streams, so memory is bounded by the dataset, not the file
MAX_JSON_BYTES = 64 * 1024 * 1024  # JSON is parsed whole (about 10x its size in memory)


@dataclass(frozen=True)
class ListStore:
    """Where one kind of list lives in the cache (the layout names the files and refuses a name outside)."""

    what: str  # how messages name a list of this kind
    file: Callable[[CacheLayout, str], Path]
    files: Callable[[CacheLayout], list[Path]]

    def path(self, layout: CacheLayout, name: str) -> Path:
        """Where the list ``name`` is (or would be)."""
        return self.file(layout, name)

    def save(self, layout: CacheLayout, name: str, payload: dict[str, Any]) -> Path:
        """Write the list atomically; returns its path."""
        path = self.path(layout, name)
        write_json_atomic(path, payload)
        return path

    def saved(self, layout: CacheLayout) -> list[Path]:
        """The saved lists of this kind, newest first."""
        return newest_first(self.files(layout))


LABEL_LISTS = ListStore("Label list", CacheLayout.label_file, CacheLayout.label_files)
EXCLUDE_LISTS = ListStore("Exclude list", CacheLayout.exclude_file, CacheLayout.exclude_files)


def open_list(path: Path | str, what: str) -> IO[str]:
    """A list file opened as text (UTF-8, a byte-order mark dropped), after the checks every list gets: it exists, it
    is a file, it is not over :data:`MAX_BYTES`. :class:`DataSourceError` names the file otherwise."""
    p = Path(path).expanduser()
    shown = f"{what} {str(path)[:200]!r}"
    if not p.is_file():
        raise DataSourceError(f"{shown} does not exist or is not a file.")
    if p.stat().st_size > MAX_BYTES:
        raise DataSourceError(f"{shown} is over {MAX_BYTES // 2**20} MB; that is not a list of images.")
    try:
        return open(p, encoding="utf-8-sig", newline="")
    except OSError as err:
        raise DataSourceError(f"{shown} cannot be read: {err.strerror or err}") from err
