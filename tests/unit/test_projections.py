"""Projections and neighbours: pure functions returning coordinates plus the rows they kept."""

from __future__ import annotations

import numpy as np

from lib.analysis.projections import nearest_neighbours, project, stratified_sample


def clusters() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 10, (3, 20))
    x = np.concatenate([c + rng.normal(0, 1, (40, 20)) for c in centers]).astype(np.float32)
    return x, np.repeat(np.arange(3), 40)


def test_stratified_sample_keeps_proportions_and_is_seeded() -> None:
    _, y = clusters()
    idx = stratified_sample(y, 30, seed=1)
    assert len(idx) == 30 and np.all(np.diff(idx) > 0)
    assert np.bincount(y[idx]).tolist() == [10, 10, 10]
    np.testing.assert_array_equal(idx, stratified_sample(y, 30, seed=1))
    assert len(stratified_sample(y, 1000)) == 120


def test_pca_returns_rows_and_explained_variance() -> None:
    x, y = clusters()
    rows = np.arange(0, 120, 2)
    proj = project(x, rows, "pca")
    assert proj.coords.shape == (60, 2) and np.array_equal(proj.indices, rows)
    assert proj.explained_variance is not None and proj.explained_variance[0] >= proj.explained_variance[1] > 0
    # Well-separated clusters stay separated along the first component.
    c = proj.coords[:, 0]
    means = [c[y[rows] == k].mean() for k in range(3)]
    assert min(abs(a - b) for i, a in enumerate(means) for b in means[i + 1 :]) > 1


def test_tsne_is_deterministic_by_seed() -> None:
    x, _ = clusters()
    rows = np.arange(120)
    a = project(x, rows, "tsne", perplexity=10, max_iter=250, seed=3)
    b = project(x, rows, "tsne", perplexity=10, max_iter=250, seed=3)
    np.testing.assert_allclose(a.coords, b.coords)
    assert a.coords.shape == (120, 2)


def test_nearest_neighbours_are_cosine_and_exclude_the_query() -> None:
    x = np.array([[1, 0], [2, 0.1], [0, 1], [-1, 0], [3, 0]], dtype=np.float32)
    rows, sims = nearest_neighbours(x, 0, k=2)
    assert 0 not in rows and set(rows.tolist()) == {1, 4}
    assert sims[0] >= sims[1] and abs(sims.max() - 1.0) < 1e-6
