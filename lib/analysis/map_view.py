"""What a full-dataset map shows besides coordinates: per-point colours, predictions, selections.

    preds = run_predictions(run, ds, spec, layout)               # split -> predicted class, -1 if unknown
    col = colour_points("correct vs wrong", classes, labels, preds_all, split_names, scores)
    mask = points_in_polygon(xy, [(x0, y0), (x1, y0), (x1, y1)])    # what a box or lasso selected

Points are all splits concatenated in the map's split order (train first). Colours are small integer
codes into a palette, so a 60,000-point map crosses to the browser as one byte per point.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Any

import numpy as np

COLOUR_MODES = ("true label", "predicted label", "correct vs wrong", "split", "label-issue score")
TABLEAU10 = [
    "#4c78a8",
    "#f58518",
    "#e45756",
    "#72b7b2",
    "#54a24b",
    "#eeca3b",
    "#b279a2",
    "#ff9da6",
    "#9d755d",
    "#bab0ac",
]
NA_COLOUR = "#d0d0d0"
SCORE_BINS = 8
# Sequential (viridis) for the label-issue score, low to high.
VIRIDIS8 = ["#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725"]


@dataclass
class MapColours:
    """Per-point palette codes and draw priority (higher drawn on top), with the palette and legend."""

    codes: np.ndarray  # uint8 [n]
    priority: np.ndarray  # uint8 [n]
    palette: list[str]
    legend: list[tuple[str, int]]


def class_palette(n: int) -> list[str]:
    """Tableau 10 for up to 10 classes, evenly spaced hues beyond."""
    if n <= len(TABLEAU10):
        return TABLEAU10[:n]
    rgb = [colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.85) for i in range(n)]
    return ["#" + "".join(f"{int(255 * c):02x}" for c in colour) for colour in rgb]


def colour_points(
    mode: str,
    classes: list[str],
    labels: np.ndarray,
    preds: np.ndarray,
    splits: list[tuple[str, int]],
    scores: np.ndarray | None = None,
) -> MapColours:
    """Codes for one colour mode. ``preds`` is -1 where unknown, ``scores`` NaN where unknown."""
    n = len(labels)
    labels = np.asarray(labels, np.int64)
    preds = np.asarray(preds, np.int64)
    if mode not in COLOUR_MODES:
        raise ValueError(f"unknown colour mode {mode!r}")
    priority = np.zeros(n, np.uint8)
    if mode == "true label":
        return MapColours(
            labels.astype(np.uint8), priority, class_palette(len(classes)), [(c, i) for i, c in enumerate(classes)]
        )
    if mode == "predicted label":
        na = len(classes)
        codes = np.where(preds >= 0, preds, na).astype(np.uint8)
        priority[preds >= 0] = 1
        legend = [(c, i) for i, c in enumerate(classes)] + ([("no prediction", na)] if (preds < 0).any() else [])
        return MapColours(codes, priority, [*class_palette(len(classes)), NA_COLOUR], legend)
    if mode == "correct vs wrong":
        codes = np.full(n, 2, np.uint8)
        codes[(preds >= 0) & (preds == labels)] = 0
        codes[(preds >= 0) & (preds != labels)] = 1
        priority[codes == 0], priority[codes == 1] = 1, 2  # mistakes on top
        legend = [("correct", 0), ("wrong", 1)] + ([("no prediction", 2)] if (codes == 2).any() else [])
        return MapColours(codes, priority, ["#4c78a8", "#e45756", NA_COLOUR], legend)
    if mode == "split":
        codes = (
            np.concatenate([np.full(count, k, np.uint8) for k, (_name, count) in enumerate(splits)])
            if splits
            else np.zeros(0, np.uint8)
        )
        priority = codes.copy()  # later splits (test: fewer images) are drawn on top
        return MapColours(
            codes,
            priority,
            ["#9ecae9", "#e45756", "#54a24b", "#b279a2"][: len(splits)] or ["#9ecae9"],
            [(name, k) for k, (name, _c) in enumerate(splits)],
        )
    s = np.asarray(scores if scores is not None else np.full(n, np.nan), np.float64)
    known = np.isfinite(s)
    bins = np.clip((np.nan_to_num(s) * SCORE_BINS).astype(np.int64), 0, SCORE_BINS - 1)
    codes = np.where(known, bins, SCORE_BINS).astype(np.uint8)
    priority = np.where(known, bins + 1, 0).astype(np.uint8)  # worst on top
    legend = [(f"{k / SCORE_BINS:.3g}–{(k + 1) / SCORE_BINS:.3g}", k) for k in range(SCORE_BINS)] + (
        [("not audited", SCORE_BINS)] if (~known).any() else []
    )
    return MapColours(codes, priority, [*VIRIDIS8, NA_COLOUR], legend)


def points_in_polygon(xy: np.ndarray, polygon: list[tuple[float, float]] | np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``xy`` [n, 2] inside ``polygon`` (even-odd rule, as the browser draws it)."""
    poly = np.asarray(polygon, np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3 or not np.isfinite(poly).all():
        raise ValueError("a selection needs at least three finite (x, y) corners")
    x, y = np.asarray(xy[:, 0], np.float64), np.asarray(xy[:, 1], np.float64)
    inside = np.zeros(len(xy), bool)
    xj, yj = poly[-1]
    for xi, yi in poly:
        crosses = (yi > y) != (yj > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = (xj - xi) * (y - yi) / (yj - yi) + xi
        inside ^= crosses & (x < x_cross)
        xj, yj = xi, yi
    return inside


def place_among(coords: dict[str, np.ndarray], hits: list[tuple[str, int, float]]) -> np.ndarray | None:
    """Where a new image sits on a stored map: the similarity-weighted mean of its neighbours' positions (a map is
    not refitted for one image), or None without neighbours on it."""
    pts = [(coords[s][i], max(sim, 0.0)) for s, i, sim in hits if s in coords and i < len(coords[s])]
    if not pts:
        return None
    w = np.asarray([p[1] for p in pts], np.float64) + 1e-9
    return np.asarray((np.asarray([p[0] for p in pts], np.float64) * w[:, None]).sum(axis=0) / w.sum(), np.float32)


def selection_mask(selection: dict[str, Any], n: int) -> np.ndarray | None:
    """The points a browser selection marked (``bits``: base64, one bit per point, little-endian), or None
    if it carries no well-formed mask for ``n`` points. Untrusted input: checked, never evaluated."""
    import base64
    import binascii

    bits, count = selection.get("bits"), selection.get("n")
    if not isinstance(bits, str) or count != n or len(bits) > 4 * (n // 8 + 3):
        return None
    try:
        raw = np.frombuffer(base64.b64decode(bits, validate=True), np.uint8)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != (n + 7) // 8:
        return None
    return np.unpackbits(raw, bitorder="little")[:n].astype(bool)


def map_clusters(
    xy: np.ndarray, labels: np.ndarray, classes: list[str], k: int = 0, min_share: float = 0.005, seed: int = 0
) -> list[dict[str, Any]]:
    """Where the map's groups are and what they hold, for labels drawn on it: k-means on the 2-D positions (``k``
    from the number of points and classes when 0), then per cluster its majority class, the share of its points
    that have that label (its purity) and a place to write the label (the point nearest the cluster's median, so a
    label never floats in an empty ring). Clusters under ``min_share`` of the points are left out; largest first."""
    from sklearn.cluster import MiniBatchKMeans

    xy = np.asarray(xy, np.float64)
    labels = np.asarray(labels)
    ok = np.isfinite(xy).all(axis=1)
    n = int(ok.sum())
    if n < 20:
        return []
    k = k or int(min(max(2 * len(classes), 8), 48, n // 10))
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(ok)
    fit_rows = rng.choice(rows, min(n, 50_000), replace=False) if n > 50_000 else rows
    km = MiniBatchKMeans(k, random_state=seed, n_init=3, batch_size=4096).fit(xy[fit_rows])
    assign = km.predict(xy[rows])
    out = []
    for c in range(k):
        members = rows[assign == c]
        if len(members) < max(min_share * n, 1):
            continue
        counts = np.bincount(labels[members].astype(np.int64), minlength=len(classes))
        top = int(counts.argmax())
        centre = np.median(xy[members], axis=0)
        at = members[int(((xy[members] - centre) ** 2).sum(axis=1).argmin())]
        out.append(
            {
                "x": float(xy[at, 0]),
                "y": float(xy[at, 1]),
                "name": str(classes[top]) if top < len(classes) else str(top),
                "purity": round(float(counts[top] / len(members)), 4),
                "count": len(members),
            }
        )
    return sorted(out, key=lambda c: -c["count"])
