"""Is a near-duplicate candidate the same photograph? A check on the pixels that survives what copies go through.

The audit's exact search over features finds candidates: images whose features are similar. Similar features also
come from two different photographs of similar things (two red cars side on), so each candidate pair is confirmed or
rejected here, on the images themselves:

- both images in grey levels, each window standardised (zero mean, unit variance), so brightness, contrast and most
  colour changes (a tint, saturation, a grey copy) drop out;
- the central part of one image is searched over every position in the other (shifts), at several zooms (crops
  that were scaled back up), mirrored and not, and in both directions (either one may be the crop);
- the best normalised cross-correlation over all of that is the pair's score: about 1 for the same photograph
  however it was shifted, cropped, mirrored or recoloured, and lower for a different photograph, whose edges do not
  line up anywhere. Gradients are compared as well as grey levels, so two smooth skies do not pass for one.

    scores = same_photo_scores(images_a, images_b)        # float32 [N], one per pair
    same = scores >= SAME_PHOTO
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

ZOOMS = (1.0, 1.15, 1.3)  # one image scaled up by these before its centre is searched in the other
WINDOW = 0.6  # the searched centre's side, as a fraction of the image side
SAME_PHOTO = 0.80  # from this score a pair counts as the same photograph (chosen on measured pairs; see the README)


def _grey(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, np.float32)
    return x @ np.array([0.299, 0.587, 0.114], np.float32) if x.ndim == 4 else x


def _zoom(grey: np.ndarray, factor: float) -> np.ndarray:
    """Scale ``[N, H, W]`` up by ``factor`` about the centre and keep the central ``H x W`` (bilinear)."""
    if factor == 1.0:
        return grey
    h, w = grey.shape[1:]
    ys = (np.arange(h) - (h - 1) / 2) / factor + (h - 1) / 2
    xs = (np.arange(w) - (w - 1) / 2) / factor + (w - 1) / 2
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[None, :, None], (xs - x0)[None, None, :]
    top = grey[:, y0][:, :, x0] * (1 - fx) + grey[:, y0][:, :, x1] * fx
    bottom = grey[:, y1][:, :, x0] * (1 - fx) + grey[:, y1][:, :, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _gradient(grey: np.ndarray) -> np.ndarray:
    gy = np.zeros_like(grey)
    gx = np.zeros_like(grey)
    gy[:, 1:-1] = grey[:, 2:] - grey[:, :-2]
    gx[:, :, 1:-1] = grey[:, :, 2:] - grey[:, :, :-2]
    return np.hypot(gx, gy)


def _standardise(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    x = x - x.mean(axis=axes, keepdims=True)
    return x / np.maximum(np.sqrt((x * x).mean(axis=axes, keepdims=True)), 1e-3)


def _window_side(h: int, w: int) -> int:
    """The side of the central window searched for (:data:`WINDOW` of the image side)."""
    return max(4, round(min(h, w) * WINDOW))


def _window_stats(search: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the standard deviation (floored as :func:`_standardise` floors it) of every ``k x k`` window of
    ``[N, H, W]``, each ``[N, H-k+1, W-k+1]``, from box sums (in float64: a variance is a small difference of large
    sums)."""
    x = np.asarray(search, np.float64)
    n, h, w = x.shape

    def box(v: np.ndarray) -> np.ndarray:
        c = np.zeros((n, h + 1, w + 1))
        c[:, 1:, 1:] = v.cumsum(axis=1).cumsum(axis=2)
        return c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]

    mean = box(x) / (k * k)
    var = np.maximum(box(x * x) / (k * k) - mean * mean, 0.0)
    return mean.astype(np.float32), np.maximum(np.sqrt(var), 1e-3).astype(np.float32)


def _match_map(template_src: np.ndarray, search: np.ndarray, stats: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per pair, the normalised cross-correlation ``[N, positions]`` of the central window of ``template_src`` at every
    position in ``search`` (both ``[N, H, W]``); ``stats``: :func:`_window_stats` of ``search`` (the caller's, shared by
    the zooms it tries).

    With the template standardised (zero mean, unit deviation), the correlation with a standardised window is the
    raw window's product with the template, less the window's mean times the template's sum, over the window's
    deviation: no window is copied or standardised one by one."""
    from numpy.lib.stride_tricks import sliding_window_view

    n, h, w = template_src.shape
    k = _window_side(h, w)
    top, left = (h - k) // 2, (w - k) // 2
    template = _standardise(template_src[:, top : top + k, left : left + k], (1, 2))
    rows_out, cols_out = h - k + 1, w - k + 1
    product = np.zeros((n, rows_out, cols_out), np.float32)
    for i in range(k):  # one template row at a time, against that row of every window position
        strip = sliding_window_view(search[:, i : i + rows_out, :], k, axis=2)  # [N, rows_out, cols_out, k], a view
        product += np.einsum("npqj,nj->npq", strip, template[:, i, :])
    mean, deviation = stats
    total = template.sum(axis=(1, 2))[:, None, None]
    return ((product - mean * total) / (deviation * (k * k))).reshape(n, -1)


def same_photo_scores(a: np.ndarray, b: np.ndarray, chunk: int = 256) -> np.ndarray:
    """One score per pair of images ``a[i]``, ``b[i]`` (uint8 ``[N, H, W, 3]`` or grey ``[N, H, W]``, the same size):
    the best over shifts, zooms, mirroring and direction of the smaller of the grey-level and gradient matches there."""
    a, b = _grey(a), _grey(b)
    if a.shape != b.shape:
        raise ValueError(f"pairs must be of one size, got {a.shape} and {b.shape}")
    k = _window_side(*a.shape[1:])
    out = np.zeros(len(a), np.float32)
    for start in range(0, len(a), chunk):
        ga, gb = a[start : start + chunk], b[start : start + chunk]
        best = np.full(len(ga), -1.0, np.float32)
        for first, second in ((ga, gb), (gb, ga)):
            for mirrored in (False, True):
                other = second[:, :, ::-1] if mirrored else second
                edges = _gradient(other)
                other_stats, edge_stats = _window_stats(other, k), _window_stats(edges, k)  # the same for every zoom
                for zoom in ZOOMS:
                    zoomed = _zoom(first, zoom)
                    # Both must line up at the same position: the grey levels and the edges.
                    both = np.minimum(
                        _match_map(zoomed, other, other_stats), _match_map(_gradient(zoomed), edges, edge_stats)
                    )
                    best = np.maximum(best, both.max(axis=1))
        out[start : start + len(ga)] = best
    return out


# --------------------------------------------------------------------------- candidates from the features

CHUNK = 2048  # query rows per matrix product in the neighbour search


def nearest_neighbours(
    queries: np.ndarray, base: np.ndarray, same: bool = False, progress: Callable[[float], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """For every (L2-normalised) query row, the index of its most similar ``base`` row and the cosine
    similarity, exactly. With ``same`` (queries are base), a row is never its own neighbour, and each pair's
    similarity is computed once (the upper triangle, in blocks), which halves the work."""
    if same:
        return _nearest_within(queries, progress)
    index = np.zeros(len(queries), np.int64)
    sims = np.full(len(queries), -1.0, np.float32)
    if len(base) == 0:
        return index, sims
    for start in range(0, len(queries), CHUNK):
        block = queries[start : start + CHUNK] @ base.T
        best = block.argmax(axis=1)
        index[start : start + len(best)] = best
        sims[start : start + len(best)] = block[np.arange(len(best)), best]
        if progress:
            progress(min(1.0, (start + CHUNK) / len(queries)))
    return index, sims


def _nearest_within(x: np.ndarray, progress: Callable[[float], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    index = np.zeros(n, np.int64)
    sims = np.full(n, -np.inf, np.float32)
    for start in range(0, n, CHUNK):
        block = x[start : start + CHUNK] @ x[start:].T  # rows: this chunk; columns: this row onwards
        rows = np.arange(block.shape[0])
        block[rows, rows] = -np.inf  # never its own neighbour
        # Each row's best among columns >= start (earlier columns reached it as columns of earlier chunks)...
        best = block.argmax(axis=1)
        value = block[rows, best]
        mine = slice(start, start + len(rows))
        better = value > sims[mine]
        index[mine] = np.where(better, start + best, index[mine])
        sims[mine] = np.where(better, value, sims[mine])
        # ...and each later column's best among this chunk's rows (the same similarities, read the other way).
        col_best = block.argmax(axis=0)
        col_value = block[col_best, np.arange(block.shape[1])]
        cols = start + np.arange(block.shape[1])
        better = col_value > sims[cols]
        index[cols[better]] = start + col_best[better]
        sims[cols[better]] = col_value[better]
        if progress:
            progress(min(1.0, (start + CHUNK) / max(n, 1)))
    sims[~np.isfinite(sims)] = -1.0  # a split of one image has no neighbour
    return index, sims


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); an all-zero row stays zero."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


CANDIDATE_FLOOR = (
    0.75  # feature cosine from which a pair is checked on the pixels (same photographs were seen down to ~0.78)
)
TOP_K = 5  # training images checked per test image: its nearest by features is not always its copy
MAX_PAIRS = 20_000  # pixel checks of one search at most (the most similar first), about 3.5 ms each on one core
# Pixel checks per search in an audit (the most similar candidates first): test images copied from train matter most
# (leakage). The full CIFAR-10 copy has 36,284 candidates from cosine 0.75; the budget was set when a check took 18.5
# ms (11 minutes for all of them on 2 cores, 32 s for these 1,750). It takes about 3.5 ms since the correlation is
# computed from box sums (bench/same_photo.py); the budget is unchanged.
PAIR_BUDGET = {"test>train": 1_500, "train>train": 200, "test>test": 50}


def top_neighbours(
    queries: np.ndarray, base: np.ndarray, k: int = TOP_K, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """For every (L2-normalised) query row, its ``k`` most similar ``base`` rows (most similar first) and their cosine
    similarities, exactly."""
    k = min(k, len(base))
    index = np.zeros((len(queries), k), np.int64)
    sims = np.zeros((len(queries), k), np.float32)
    for start in range(0, len(queries), chunk):
        block = queries[start : start + chunk] @ base.T
        top = (
            np.argpartition(-block, k - 1, axis=1)[:, :k]
            if k < block.shape[1]
            else np.tile(np.arange(k), (len(block), 1))
        )
        vals = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-vals, axis=1)
        index[start : start + len(block)] = np.take_along_axis(top, order, axis=1)
        sims[start : start + len(block)] = np.take_along_axis(vals, order, axis=1)
    return index, sims


def candidate_pairs(
    index: np.ndarray, sims: np.ndarray, same_split: bool, floor: float = CANDIDATE_FLOOR
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, similarity)`` of every neighbour at or above ``floor`` (``index``/``sims``: ``[N]`` or ``[N, k]``);
    within
    one split each pair once, the smaller index first."""
    index, sims = index.reshape(len(index), -1), sims.reshape(len(sims), -1)
    rows, cols = np.nonzero(sims >= floor)
    a, b, s = rows.astype(np.int64), index[rows, cols].astype(np.int64), sims[rows, cols].astype(np.float32)
    if same_split and len(a):
        a, b = np.minimum(a, b), np.maximum(a, b)
        keep = a != b
        a, b, s = a[keep], b[keep], s[keep]
        _, first = np.unique(a * (int(b.max()) + 1) + b, return_index=True)
        a, b, s = a[first], b[first], s[first]
    return a, b, s


def confirm(
    images_a: np.ndarray, images_b: np.ndarray, a: np.ndarray, b: np.ndarray, progress: Any = None, chunk: int = 512
) -> np.ndarray:
    """:func:`same_photo_scores` of the pairs ``images_a[a[i]]``, ``images_b[b[i]]``; ``progress(fraction)`` after each
    chunk."""
    out = np.zeros(len(a), np.float32)
    for start in range(0, len(a), chunk):
        rows = slice(start, start + chunk)
        out[rows] = same_photo_scores(np.asarray(images_a[a[rows]]), np.asarray(images_b[b[rows]]))
        if progress:
            progress(min(1.0, (start + chunk) / max(len(a), 1)))
    return out
