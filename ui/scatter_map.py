"""The full-dataset map widget: a Streamlit v2 component (ui/scatter_map.js, a plain canvas, nothing from a CDN).

    sel = scatter_map(map_payload(coords, labels, colours, ...), key="fm_map")
    sel.selection   # {"shape": "box"|"lasso", "points": [[x, y], ...], "bits": ...} in map coordinates, or None
    sel.clicked     # {"split": "train", "index": 123} after a click on a point

The points cross to the browser as two binary files served from the app's static folder (``static/maps``), named by
their content: the geometry (float32 x then y, 8 bytes a point: 8 MB for a million points) once per map, and the
attributes (palette code, draw priority, label, prediction, issue score, shown: one byte each) once per colouring.
The browser fetches each once and keeps it for the page's life; a rerun (a selection, another colouring) sends only
the small JSON description, never the points again. Where the static folder is not writable the same bytes go
inline as base64. Thumbnails are not in it either: the browser fetches a sprite sheet from the static files on the
first hover in that sheet.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from lib.analysis.map_view import MapColours
from lib.data.thumbs import THUMBS_PER_ROW, Sprites
from lib.errors import UserFacingError
from lib.store.atomic import atomic_path

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"  # served at app/static/ (server.enableStaticServing)
THUMBS_ROOT = STATIC_DIR / "thumbs"
MAPS_ROOT = STATIC_DIR / "maps"
MAPS_KEEP = 24  # the newest map data files kept in static/maps (each is named by its content and made again if gone)
_BLOB_NAME = re.compile(r"^[0-9a-f]{24}-(xy|attr)\.bin$")

_CSS = """
.tlx-map { font-family: inherit; font-size: 0.85rem; color: #31333f; }
.tlx-bar { display: flex; gap: 0.4rem; align-items: center; margin-bottom: 0.35rem; flex-wrap: wrap; }
.tlx-bar button { border: 1px solid #d0d3da; background: #fff; border-radius: 0.4rem; padding: 0.2rem 0.6rem; cursor:
pointer; font: inherit; }
.tlx-bar button.active { border-color: #ff4b4b; color: #ff4b4b; }
.tlx-info { color: #6b6f7b; margin-left: 0.4rem; }
.tlx-stage { position: relative; width: 100%; border: 1px solid #e6e8ec; border-radius: 0.4rem; overflow: hidden; }
.tlx-stage canvas { position: absolute; left: 0; top: 0; }
.tlx-tip { position: absolute; display: none; pointer-events: none; background: #fff; border: 1px solid #c8ccd4;
border-radius: 0.35rem;
           padding: 4px; box-shadow: 0 2px 6px rgba(0,0,0,0.15); max-width: 180px; }
.tlx-thumb { width: 96px; height: 96px; image-rendering: pixelated; background-color: #eee; background-repeat:
no-repeat; }
.tlx-text { margin-top: 3px; line-height: 1.2; word-break: break-word; }
.tlx-legend { display: flex; flex-wrap: wrap; gap: 0.3rem 0.9rem; margin-top: 0.35rem; }
.tlx-legend i { display: inline-block; width: 0.7rem; height: 0.7rem; border-radius: 50%; margin-right: 0.3rem;
vertical-align: -1px; }
"""

_component = st.components.v2.component(
    "tlx_scatter_map", css=_CSS, js=(Path(__file__).with_name("scatter_map.js")).read_text()
)


def _digest(value: Any) -> str:
    """24 hex digits of SHA-256 over ``value`` (bytes as they are, anything else by its repr)."""
    return hashlib.sha256(value if isinstance(value, bytes) else repr(value).encode()).hexdigest()[:24]


def map_payload(
    coords: np.ndarray,
    labels: np.ndarray,
    colours: MapColours,
    preds: np.ndarray,
    scores: np.ndarray | None,
    shown: np.ndarray,
    splits: list[tuple[str, int]],
    classes: list[str],
    sprites: Sprites | None,
    view_key: str,
    height: int = 560,
    clusters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What the component draws (see the module docs): the JSON description, with the points' bytes under
    ``"_blobs"`` (``{"xy": bytes, "attr": bytes}``) for :func:`scatter_map` to publish."""
    n = len(coords)
    xy = np.ascontiguousarray(np.concatenate([coords[:, 0], coords[:, 1]]).astype("<f4"))
    x, y = xy[:n], xy[n:]
    ok = np.isfinite(x) & np.isfinite(y)  # a point without a place is not drawn; it must not make the bounds NaN
    bounds = (
        [float(x[ok].min()), float(x[ok].max()), float(y[ok].min()), float(y[ok].max())] if ok.any() else [0, 1, 0, 1]
    )
    starts = np.cumsum([0] + [c for _n, c in splits])
    score_bytes = np.full(n, 255, np.uint8)
    if scores is not None:
        s = np.asarray(scores, np.float64)
        score_bytes = np.where(np.isfinite(s), np.clip(np.round(np.nan_to_num(s) * 254), 0, 254), 255).astype(np.uint8)
    attr = np.concatenate(
        [
            colours.codes.astype(np.uint8),
            colours.priority.astype(np.uint8),
            np.asarray(labels, np.uint8),
            np.where(preds >= 0, preds, 255).astype(np.uint8),
            score_bytes,
            np.asarray(shown, np.uint8),
        ]
    )
    blobs = {"xy": xy.tobytes(), "attr": attr.tobytes()}
    data: dict[str, Any] = {
        "n": int(n),
        "bounds": bounds,
        "has_score": scores is not None,
        "palette": colours.palette,
        "legend": [[str(name), int(i)] for name, i in colours.legend],
        "classes": [str(c) for c in classes],
        "splits": [{"name": name, "start": int(starts[k]), "count": int(c)} for k, (name, c) in enumerate(splits)],
        "sprites": (
            {"base": f"app/static/thumbs/{sprites.folder.name}", "side": sprites.side, "per_row": THUMBS_PER_ROW}
            if sprites
            else None
        ),
        "clusters": clusters or [],
        "view_key": view_key,
        "height": int(height),
        "parts": {part: {"name": f"{_digest(blob)}-{part}.bin", "bytes": len(blob)} for part, blob in blobs.items()},
    }
    data["key"] = _digest(sorted((k, v) for k, v in data.items()))[:16]
    data["_blobs"] = blobs
    return data


def _prune(keep: Path) -> None:
    """Keep the newest ``MAPS_KEEP`` map data files (only this module's own names are ever touched)."""
    files = [p for p in MAPS_ROOT.iterdir() if _BLOB_NAME.match(p.name) and p != keep]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[MAPS_KEEP - 1 :]:
        with contextlib.suppress(OSError):
            old.unlink()


def publish(name: str, blob: bytes) -> str | None:
    """The URL of ``blob`` among the app's static files (written once, atomically, under its content's name), or None
    where the static folder cannot be written."""
    if not _BLOB_NAME.match(name):
        raise ValueError(f"not a map data file name: {name!r}")
    path = MAPS_ROOT / name
    try:
        if path.is_file() and path.stat().st_size == len(blob):
            path.touch()  # recently used: pruned last
            return f"app/static/maps/{name}"
        with atomic_path(path) as tmp:
            tmp.write_bytes(blob)
        _prune(path)
    except (OSError, UserFacingError):
        return None
    return f"app/static/maps/{name}"


def _wire(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as the browser gets it: each part as the URL of its static file, or inline base64 if it could
    not be written."""
    blobs = payload["_blobs"]
    parts = {}
    for part, info in payload["parts"].items():
        url = publish(info["name"], blobs[part])
        parts[part] = {**info, "url": url} if url else {**info, "b64": base64.b64encode(blobs[part]).decode("ascii")}
    return {**{k: v for k, v in payload.items() if k != "_blobs"}, "parts": parts}


def scatter_map(payload: dict[str, Any], key: str) -> Any:
    """Draw the map; returns the component's state (``selection``, ``clicked``)."""
    return _component(
        key=key,
        data=_wire(payload),
        height="content",
        on_selection_change=lambda: None,
        on_clicked_change=lambda: None,
        on_reload_change=lambda: None,  # the browser could not fetch a data file: this rerun writes it again
    )
