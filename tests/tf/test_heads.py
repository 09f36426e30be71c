"""Heads: they learn, are deterministic, stop early and report progress."""

from __future__ import annotations

import numpy as np

from lib.models.heads import HeadConfig, TrainedHead, softmax, stratified_split, train_head


def blobs(
    n_per_class: int = 60, classes: int = 4, dim: int = 12, seed: int = 0, noise_seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around class centres drawn from ``seed``; ``noise_seed`` draws other points around the same
    centres."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (classes, dim))
    noise = np.random.default_rng(noise_seed) if noise_seed is not None else rng
    x = np.concatenate([c + noise.normal(0, 1, (n_per_class, dim)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(classes), n_per_class)
    return x, y


def test_linear_and_mlp_learn_separable_data() -> None:
    x, y = blobs()
    xt, yt = blobs(seed=0, noise_seed=123)  # held-out points around the same centres, never trained on
    assert not np.allclose(x, xt)
    for cfg in (
        HeadConfig(head="linear", epochs=30, batch_size=16, val_fraction=0),
        HeadConfig(head="mlp", hidden=32, dropout=0.2, epochs=30, batch_size=16, val_fraction=0),
    ):
        head = train_head(x, y, 4, cfg)
        acc = (head.predict_proba(xt).argmax(1) == yt).mean()
        assert acc > 0.95, (cfg.head, acc)
        probs = head.predict_proba(xt)
        np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)


def test_same_seed_same_model_different_seed_different_model() -> None:
    x, y = blobs()
    cfg = HeadConfig(head="mlp", hidden=16, epochs=3, val_fraction=0.2, seed=7)
    a, b = train_head(x, y, 4, cfg), train_head(x, y, 4, cfg)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)
    c = train_head(x, y, 4, HeadConfig(head="mlp", hidden=16, epochs=3, val_fraction=0.2, seed=8))
    assert not np.allclose(a.weights[0], c.weights[0])


def test_progress_callback_after_each_epoch() -> None:
    x, y = blobs()
    tr, va = stratified_split(y, 0.25, 0)
    reports = []
    train_head(
        x[tr], y[tr], 4, HeadConfig(epochs=4, batch_size=16, patience=None), x[va], y[va], progress=reports.append
    )
    assert [r.epoch for r in reports] == [1, 2, 3, 4]
    assert all(r.val_accuracy is not None and r.elapsed >= 0 for r in reports)
    assert reports[-1].loss < reports[0].loss


def test_early_stopping_halts_and_restores_best() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype(np.float32)
    y = rng.integers(0, 3, 200)  # pure noise: validation loss cannot keep improving
    xv, yv = rng.normal(size=(60, 8)).astype(np.float32), rng.integers(0, 3, 60)
    head = train_head(
        x, y, 3, HeadConfig(head="mlp", hidden=64, dropout=0, learning_rate=1e-2, epochs=100, patience=2), xv, yv
    )
    assert len(head.history) < 100
    assert head.best_epoch == len(head.history) - 2


def test_steps_budget_and_round_trip_of_arrays() -> None:
    x, y = blobs()
    head = train_head(x, y, 4, HeadConfig(batch_size=10, steps=50, val_fraction=0))
    assert 50 <= head.steps <= 72  # 24 steps per epoch, rounded up to whole epochs
    again = TrainedHead.from_arrays(head.config, head.arrays())
    np.testing.assert_array_equal(again.predict_proba(x), head.predict_proba(x))


def test_softmax_is_stable() -> None:
    p = softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_allclose(p, [[1, 0], [0.5, 0.5]])


def test_stratified_split_keeps_classes() -> None:
    y = np.repeat(np.arange(5), 20)
    tr, va = stratified_split(y, 0.1, 0)
    assert len(va) == 10 and set(y[va]) == set(range(5)) and not set(tr) & set(va)


def test_out_of_range_settings_are_user_errors() -> None:
    import pytest

    from lib.errors import ConfigError

    x, y = blobs()
    for bad in (
        HeadConfig(head="transformer"),
        HeadConfig(optimizer="lbfgs"),
        HeadConfig(dropout=1.0),
        HeadConfig(batch_size=0),
    ):
        with pytest.raises(ConfigError):
            train_head(x, y, 4, bad)
