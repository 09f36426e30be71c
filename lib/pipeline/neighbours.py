"""Exact cosine nearest neighbours over the features of every split: of a dataset image, of an upload's feature
vector, or among the images of one class.

    hits = nearest_across(features, "test", 12, k=8)          # [(split, index, similarity)], most similar first
    hits = nearest_to(features, query_vector, k=8)             # an upload
"""

from __future__ import annotations

import numpy as np


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
