"""Reduced features, for a bundle made for hosting: every image's feature vector as ``DIMS`` float16 numbers (a
truncated SVD of the unit-length vectors: uncentred PCA, so dot products, hence cosines, carry over), an eighth of
float16 features' bytes. They find nearest neighbours only; a head needs the real features.

Reduced search alone finds about 73% of the exact 8 nearest (CIFAR-10, MobileNet v1 @128), too few. So a search
takes the ``CANDIDATES`` nearest in the reduced space (they hold 99.9% of the exact 8) and re-ranks them by the real
features of those images, computed on the spot by the backbone (its float LiteRT model in the demo: about 0.25 s).

    basis = fit_basis([train, test]); codes = project(train, basis)   # making a hosting bundle
    write_reduced(layout, key, manifest_dict, codes, basis)       # a feature artifact whose manifest says ``reduced``
    hits = nearest_reranked(reduced, basis, query, k, embed, images, size)   # exact neighbours again
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lib.pipeline.feature_store import file_crc32
from lib.pipeline.neighbours import nearest_to
from lib.store.atomic import atomic_path, save_npy_atomic
from lib.store.layout import CacheLayout

DIMS = 128
CANDIDATES = 128  # re-ranked per query (the exact 8 are among them on 99.9% of queries, measured)
FIT_ROWS = 20_000  # rows the SVD is fitted on (every row is projected)
METHOD = "truncated-svd"


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def fit_basis(parts: list[np.ndarray], dims: int = DIMS, seed: int = 0) -> np.ndarray:
    """The float32 ``[dims, D]`` basis of a truncated SVD of unit rows sampled from every split of one backbone part
    (one basis for all its splits, so reduced vectors of different splits compare)."""
    from sklearn.decomposition import TruncatedSVD

    total = sum(len(p) for p in parts)
    rng = np.random.default_rng(seed)
    rows = [
        p[np.sort(rng.choice(len(p), min(len(p), max(1, round(FIT_ROWS * len(p) / total))), replace=False))]
        for p in parts
        if len(p)
    ]
    sample = _unit(np.concatenate(rows))
    svd = TruncatedSVD(min(dims, sample.shape[1] - 1), algorithm="randomized", random_state=seed).fit(sample)
    return svd.components_.astype(np.float32)


def project(full: np.ndarray, basis: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """The float16 reduced rows of ``full`` (read in chunks: a memory map is never loaded whole)."""
    return np.concatenate(
        [(_unit(full[i : i + chunk]) @ basis.T).astype(np.float16) for i in range(0, len(full), chunk)]
    )


def basis_path(layout: CacheLayout, key: str) -> Path:
    """The basis file beside a reduced feature artifact (the layout's feature folder owns both)."""
    return layout.feature_files(key)[0].with_suffix(".basis.npy")


def write_reduced(
    layout: CacheLayout, key: str, manifest: dict[str, Any], codes: np.ndarray, basis: np.ndarray
) -> None:
    """Write a reduced artifact under ``key`` (features and basis first, the manifest last, each atomically)."""

    npy, manifest_path = layout.feature_files(key)
    npy.parent.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(basis_path(layout, key), basis)
    save_npy_atomic(npy, codes)
    data = dict(manifest) | {
        "shape": list(codes.shape),
        "crc32": file_crc32(npy),
        "reduced": {"method": METHOD, "dims": int(codes.shape[1]), "of": int(basis.shape[1])},
    }
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def load_basis(layout: CacheLayout, key: str, dims: int, of: int) -> np.ndarray | None:
    """The basis of a reduced artifact, or None if missing or not ``[dims, of]`` float32."""
    try:
        basis = np.load(basis_path(layout, key))
    except (OSError, ValueError, EOFError):
        return None
    return basis if basis.shape == (dims, of) and basis.dtype == np.float32 else None


Hit = tuple[str, int, float]


def nearest_reranked(
    reduced: dict[str, np.ndarray],
    basis: np.ndarray,
    query: np.ndarray | None,
    k: int,
    embed: Callable[[np.ndarray], np.ndarray] | None,
    images: dict[str, np.ndarray],
    skip: tuple[str, int] | None = None,
    norms: dict[str, np.ndarray] | None = None,
) -> tuple[list[Hit], bool]:
    """The ``k`` nearest images (cosine) to ``query`` (a full feature vector; None: the image ``skip`` names, whose
    features ``embed`` computes) in every split of ``reduced``: the ``CANDIDATES`` nearest by reduced features,
    re-ranked by the real features of those images (``embed``: uint8 images -> feature rows). Returns ``(hits,
    exact)``; without ``embed`` the reduced ranking is returned as is, and ``exact`` is False."""

    if query is None and skip is not None:
        if embed is None:
            q_red = np.asarray(reduced[skip[0]][skip[1]], np.float32)
        else:
            query = embed(np.asarray(images[skip[0]][skip[1]])[None])[0]
    if query is not None:
        q_red = _unit(query) @ basis.T
    found = nearest_to(reduced, q_red, CANDIDATES if embed is not None else k, norms, skip=skip)
    if embed is None or query is None or not found:
        return found[:k], False
    real = _unit(embed(np.stack([np.asarray(images[s][i]) for s, i, _ in found])))
    sims = real @ _unit(query)
    order = np.argsort(-sims, kind="stable")[:k]
    return [(found[j][0], found[j][1], float(sims[j])) for j in order], True


def nearest_search(
    results: dict[str, Any],
    query: np.ndarray | None,
    k: int,
    skip: tuple[str, int] | None = None,
    norms: dict[str, np.ndarray] | None = None,
    embed: Callable[[np.ndarray], np.ndarray] | None = None,
    images: dict[str, np.ndarray] | None = None,
) -> tuple[list[Hit], bool]:
    """Cosine neighbours among ``results`` (split -> :class:`lib.pipeline.features.FeatureResult`) of ``query`` (a full
    feature vector) or, with ``query`` None, of the image ``skip`` names. Real features: exact search. Reduced ones:
    :func:`nearest_reranked`. Returns ``(hits, exact)``; hits hold rows of each split's features."""

    if query is None and skip is None:  # both searches need one or the other
        raise ValueError("a query vector or the image to search from is needed")
    feats = {s: r.features for s, r in results.items()}
    basis = next((r.basis for r in results.values() if r.basis is not None), None)
    if basis is None:
        if query is None:
            assert skip is not None  # checked above
            query = np.asarray(feats[skip[0]][skip[1]], np.float32)
        return nearest_to(feats, query, k, norms, skip), True
    return nearest_reranked(feats, basis, query, k, embed, images or {}, skip, norms)
