"""The full-dataset map widget: a Streamlit v2 component (ui/scatter_map.js, a plain canvas, nothing from a CDN).

    sel = scatter_map(coords, labels, colours, preds, scores, splits, classes, sprites, key="fs_map")
    sel.selection   # {"shape": "box"|"lasso", "points": [[x, y], ...]} in map coordinates, or None
    sel.clicked     # {"split": "train", "index": 123} after a click on a point

Coordinates cross as uint16 (1/65535 of the map's extent: far below a pixel), colours and labels as one
byte per point, all base64 in one JSON payload (about 550 KB for 60,000 points). Thumbnails are not in
it: the browser fetches a sprite sheet from Streamlit's static files on the first hover in that sheet.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from lib.analysis.map_view import MapColours
from lib.data.thumbs import THUMBS_PER_ROW, Sprites

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"  # served at app/static/ (server.enableStaticServing)
THUMBS_ROOT = STATIC_DIR / "thumbs"

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


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _quantise(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = (hi - lo) or 1.0
    return np.clip(np.round((v - lo) / span * 65535), 0, 65535).astype("<u2")


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
) -> dict[str, Any]:
    """The JSON-ready data the component draws (see the module docs)."""
    x, y = coords[:, 0].astype(np.float64), coords[:, 1].astype(np.float64)
    bounds = [float(x.min()), float(x.max()), float(y.min()), float(y.max())] if len(x) else [0.0, 1.0, 0.0, 1.0]
    starts = np.cumsum([0] + [c for _n, c in splits])
    score_bytes = None
    if scores is not None:
        s = np.asarray(scores, np.float64)
        score_bytes = np.where(np.isfinite(s), np.clip(np.round(np.nan_to_num(s) * 254), 0, 254), 255).astype(np.uint8)
    data: dict[str, Any] = {
        "x": _b64(_quantise(x, bounds[0], bounds[1])),
        "y": _b64(_quantise(y, bounds[2], bounds[3])),
        "bounds": bounds,
        "colour": _b64(colours.codes.astype(np.uint8)),
        "priority": _b64(colours.priority.astype(np.uint8)),
        "label": _b64(np.asarray(labels, np.uint8)),
        "pred": _b64(np.where(preds >= 0, preds, 255).astype(np.uint8)),
        "score": _b64(score_bytes) if score_bytes is not None else None,
        "shown": _b64(np.asarray(shown, np.uint8)),
        "palette": colours.palette,
        "legend": [[str(n), int(i)] for n, i in colours.legend],
        "classes": [str(c) for c in classes],
        "splits": [{"name": n, "start": int(starts[k]), "count": int(c)} for k, (n, c) in enumerate(splits)],
        "sprites": (
            {"base": f"app/static/thumbs/{sprites.folder.name}", "side": sprites.side, "per_row": THUMBS_PER_ROW}
            if sprites
            else None
        ),
        "view_key": view_key,
        "height": int(height),
    }
    data["key"] = hashlib.sha256(
        repr(sorted((k, v if isinstance(v, str) else repr(v)) for k, v in data.items())).encode()
    ).hexdigest()[:16]
    return data


def scatter_map(payload: dict[str, Any], key: str) -> Any:
    """Draw the map; returns the component's state (``selection``, ``clicked``)."""
    return _component(
        key=key, data=payload, height="content", on_selection_change=lambda: None, on_clicked_change=lambda: None
    )
