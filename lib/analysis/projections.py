"""Feature-space projections (PCA, t-SNE) and cosine nearest neighbours; pure functions.

Each projection returns 2-D coordinates plus the row indices it kept, so callers can
join them back to images and labels. Heavy imports happen inside the functions.

    idx = stratified_sample(labels, 2000, seed=SEED)
    proj = project(features, idx, method="tsne", perplexity=30, max_iter=500, seed=SEED)
    proj.coords, proj.indices, proj.explained_variance
    rows, sims = nearest_neighbours(features, query=12, k=8)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lib.config import SEED
from lib.errors import ConfigError, UserFacingError
from lib.store.atomic import save_npy_atomic
from lib.store.layout import CacheLayout, artifact_key

PROJECTION_VERSION = 2  # 2: keyed by lib.store.layout.artifact_key


@dataclass
class Projection:
    """2-D coordinates for rows ``indices`` of the input features."""

    coords: np.ndarray  # float32 [n, 2]
    indices: np.ndarray  # int64 [n]
    method: str
    explained_variance: tuple[float, float] | None = None  # PCA only: share of variance per axis


def stratified_sample(labels: np.ndarray, n: int, seed: int = SEED) -> np.ndarray:
    """Up to ``n`` row indices with class proportions kept, sorted; all rows if n >= len."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(len(labels)), train_size=n, random_state=seed, stratify=labels)
    return np.sort(idx)


def pca_2d(features: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, tuple[float, float]]:
    """PCA to two axes; returns coordinates and each axis's explained-variance ratio."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed)
    coords = pca.fit_transform(np.asarray(features, np.float32))
    ratio = pca.explained_variance_ratio_
    return coords.astype(np.float32), (float(ratio[0]), float(ratio[1]))


def tsne_2d(
    features: np.ndarray, perplexity: float = 30.0, max_iter: int = 500, seed: int = SEED, pca_dims: int = 50
) -> np.ndarray:
    """t-SNE to two axes, run on a PCA-``pca_dims`` reduction first (faster, less noise)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(features, np.float32)
    if x.shape[1] > pca_dims and len(x) > pca_dims:
        x = PCA(n_components=pca_dims, random_state=seed).fit_transform(x)
    perplexity = float(min(perplexity, max(1.0, (len(x) - 1) / 3)))
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        max_iter=max(250, int(max_iter)),
        init="pca",
        random_state=seed,
        n_jobs=-1,
    )
    return tsne.fit_transform(x).astype(np.float32)


def project(
    features: np.ndarray,
    indices: np.ndarray,
    method: str = "pca",
    perplexity: float = 30.0,
    max_iter: int = 500,
    seed: int = SEED,
) -> Projection:
    """Project rows ``indices`` of ``features`` with ``method`` ("pca" or "tsne")."""
    x = np.asarray(features[np.asarray(indices)], np.float32)
    if method == "pca":
        coords, explained = pca_2d(x, seed)
        return Projection(coords, np.asarray(indices), "pca", explained)
    if method == "tsne":
        return Projection(tsne_2d(x, perplexity, max_iter, seed), np.asarray(indices), "tsne")

    raise ConfigError(f"method must be 'pca' or 'tsne', got {method!r}")


def nearest_neighbours(features: np.ndarray, query: int, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows most cosine-similar to row ``query`` (itself excluded) and their similarities."""
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(features, np.float32)
    k = min(k, len(x) - 1)
    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(x)
    dist, rows = nn.kneighbors(x[query : query + 1])
    keep = rows[0] != query
    rows, sims = rows[0][keep][:k], 1.0 - dist[0][keep][:k]
    return rows.astype(np.int64), sims.astype(np.float32)


def projection_key(
    feature_file: str, rows: np.ndarray, method: str, perplexity: float, max_iter: int, seed: int
) -> str:
    """A hash of everything that changes a projection: the features (their artifact name), rows and parameters."""
    rows_digest = hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()
    return artifact_key(
        {
            "features": Path(feature_file).name,
            "rows": rows_digest,
            "method": method,
            "perplexity": float(perplexity),
            "max_iter": int(max_iter),
            "seed": int(seed),
            "v": PROJECTION_VERSION,
        }
    )


def cached_projection(
    layout: CacheLayout,
    feature_file: Path | str,
    rows: np.ndarray,
    method: str = "pca",
    perplexity: float = 30.0,
    max_iter: int = 500,
    seed: int = SEED,
) -> Projection:
    """Project rows of a cached feature file; t-SNE coordinates are kept on disk, keyed by every parameter.

    PCA is fast enough to recompute. A stored t-SNE whose shape or values are wrong is recomputed.
    """

    feats = np.load(feature_file, mmap_mode="r")
    idx = np.asarray(rows, dtype=np.int64)
    if method != "tsne":
        return project(feats, idx, method, seed=seed)
    disk = layout.projection_file("tsne", projection_key(str(feature_file), idx, method, perplexity, max_iter, seed))
    try:
        coords = np.load(disk)
        if coords.shape == (len(idx), 2) and coords.dtype == np.float32 and np.all(np.isfinite(coords)):
            return Projection(coords, idx, "tsne")
    except (OSError, ValueError, EOFError):
        pass
    proj = project(feats, idx, "tsne", perplexity, max_iter, seed)
    try:
        save_npy_atomic(disk, proj.coords)
    except UserFacingError:
        pass  # a full disk only costs the disk copy; callers' in-memory caches still hold it
    return proj
