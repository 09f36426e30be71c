"""What a full-dataset map shows besides coordinates: per-point colours, predictions, selections.

    preds = run_predictions(run, ds, spec, cache_dir)               # split -> predicted class, -1 if unknown
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

from lib.store.layout import CacheLike

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


def head_probabilities(
    run: Any, ds: Any, spec: Any, cache_dir: CacheLike, split: str, limit: int | None = None, dtype: Any = np.float32
) -> np.ndarray | None:
    """The run's head on cached features of ``split`` (its sizes and views; ``limit`` images per class, None: all),
    or None if any are not cached. ``dtype`` rounds the features first (float16: what a bundle stores)."""
    from lib.models.predict import combine_views, np_concat, np_mean, part_key
    from lib.models.specs import resolve_backbone
    from lib.pipeline.features import cached_feature_result

    m = run.manifest
    views = {False: "original", True: "flip"}
    parts: dict[tuple[Any, bool], np.ndarray] = {}
    for j, (handle, _identity, sizes) in enumerate(m.backbones()):
        part_spec = spec if j == 0 else resolve_backbone(handle)
        for size in sizes:
            for flip in (False, True) if m.tta else (False,):
                found = cached_feature_result(ds, split, part_spec, size, views[flip], limit, cache_dir, m.runtime)
                if found is None:
                    return None
                parts[(part_key(j, size), flip)] = np.asarray(found.features, dtype).astype(np.float32)
    return combine_views(
        lambda key, flip: parts[(key, flip)], run.head.predict_proba, m.part_keys(), m.tta, np_concat, np_mean
    )


def run_predictions(run: Any, ds: Any, spec: Any, cache_dir: CacheLike, splits: list[str]) -> dict[str, np.ndarray]:
    """The run's predicted class of every image of each split; -1 where it cannot be told without new work.

    The run's own test split uses its stored predictions. Another split (train) is predicted by the run's
    head from cached features of the run's sizes and views (never extracted here); a fine-tuned run has
    no separate head, so only its stored predictions are known. A hosting bundle brings them instead of features.
    """
    from lib.store.bundle_hosting import read_split_predictions
    from lib.store.layout import CacheLayout

    brought = read_split_predictions(CacheLayout.at(cache_dir), run.run_id, ds) or {}
    out: dict[str, np.ndarray] = {}
    for split in splits:
        pred = np.full(ds.size(split), -1, np.int64)
        if split == run.manifest.test_split:
            pred[np.asarray(run.indices, np.int64)] = run.y_pred
        elif split in brought:
            pred[:] = brought[split]
        elif not run.manifest.finetuned:
            probs = head_probabilities(run, ds, spec, cache_dir, split)
            if probs is not None:
                pred[:] = probs.argmax(axis=1)
        out[split] = pred
    return out


def row_norms(x: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """L2 norm of each row, in chunks (no temporary the size of ``x``)."""
    if not len(x):
        return np.zeros(0, np.float32)
    return np.concatenate(
        [np.linalg.norm(np.asarray(x[i : i + chunk], np.float32), axis=1) for i in range(0, len(x), chunk)]
    )


def nearest_across(
    features: dict[str, np.ndarray], split: str, index: int, k: int, norms: dict[str, np.ndarray] | None = None
) -> list[tuple[str, int, float]]:
    """The ``k`` images most cosine-similar to image ``index`` of ``split``, searched in every split (itself excluded).
    ``norms`` (split -> row norms) saves recomputing them for each query."""
    return nearest_to(features, np.asarray(features[split][index], np.float32), k, norms, skip=(split, index))


def nearest_to(
    features: dict[str, np.ndarray],
    query: np.ndarray,
    k: int,
    norms: dict[str, np.ndarray] | None = None,
    skip: tuple[str, int] | None = None,
) -> list[tuple[str, int, float]]:
    """The ``k`` images of every split most cosine-similar to the feature vector ``query`` (an upload's, or a dataset
    image's with ``skip`` naming it), as ``(split, index, similarity)``, most similar first."""
    q = np.asarray(query, np.float32).ravel()
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    found: list[tuple[str, int, float]] = []
    for name, f in features.items():
        if np.shape(f)[1:] != q.shape:
            raise ValueError(f"features of {name} have {np.shape(f)[1:]} dimensions, the query {q.shape}")
        n = norms[name] if norms is not None else row_norms(f)
        sims = (np.asarray(f) @ q) / np.maximum(n, 1e-12)
        if skip is not None and name == skip[0]:
            sims[skip[1]] = -np.inf
        take = min(k, len(sims))
        top: np.ndarray = np.argpartition(-sims, take - 1)[:take] if take else np.zeros(0, np.int64)
        found += [(name, int(i), float(sims[i])) for i in top if np.isfinite(sims[i])]
    return sorted(found, key=lambda t: -t[2])[:k]


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


def nearest_of_class(
    base: np.ndarray, base_labels: np.ndarray, query: np.ndarray, label: int, k: int = 6, exclude: int | None = None
) -> list[tuple[int, float]]:
    """The ``k`` rows of ``base`` labelled ``label`` most cosine-similar to ``query`` (row ``exclude`` left out: the
    query itself when it is a row of ``base``), most similar first, as ``(row, similarity)``."""
    rows = np.flatnonzero(np.asarray(base_labels) == label)
    if exclude is not None:
        rows = rows[rows != exclude]
    if not len(rows):
        return []
    x = np.asarray(base[rows], np.float32)
    q = np.asarray(query, np.float32)
    sims = (x @ q) / np.maximum(np.linalg.norm(x, axis=1) * max(float(np.linalg.norm(q)), 1e-12), 1e-12)
    top = np.argsort(-sims, kind="stable")[:k]
    return [(int(rows[i]), float(sims[i])) for i in top]
