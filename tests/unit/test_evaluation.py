"""Evaluation functions against small hand-computed cases."""

from __future__ import annotations

import numpy as np

from lib.models import metrics as ev

Y = np.array([0, 0, 1, 1, 2, 2])
P = np.array(
    [
        [0.9, 0.05, 0.05],  # right
        [0.2, 0.7, 0.1],  # 0 -> 1, conf 0.7
        [0.1, 0.8, 0.1],  # right
        [0.6, 0.3, 0.1],  # 1 -> 0, conf 0.6
        [0.05, 0.05, 0.9],  # right
        [0.45, 0.5, 0.05],  # 2 -> 1, conf 0.5, and 2 is last
    ]
)
CLASSES = ["a", "b", "c"]


def test_accuracy_and_top_k() -> None:
    assert ev.accuracy(Y, P) == 0.5
    assert ev.top_k_accuracy(Y, P, 2) == 5 / 6  # only row 5 misses: its true class is ranked last
    assert (
        ev.top_k_accuracy(Y, P, 3) is None and ev.top_k_accuracy(Y, P, 5) is None
    )  # k not below the classes: no figure
    two = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert (
        ev.top_k_accuracy(np.array([0, 1, 1]), two, 1) == 2 / 3
        and ev.top_k_accuracy(np.array([0, 1, 1]), two, 5) is None
    )


def test_confusion_counts_and_normalized() -> None:
    cm = ev.confusion(Y, P.argmax(1), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [1, 1, 0], [0, 1, 1]])
    np.testing.assert_allclose(ev.confusion(Y, P.argmax(1), 3, normalize=True), cm / 2)


def test_per_class_metrics() -> None:
    rows = {r["class"]: r for r in ev.per_class_metrics(Y, P.argmax(1), CLASSES)}
    assert rows["b"]["precision"] == 1 / 3 and rows["b"]["recall"] == 0.5 and rows["b"]["accuracy"] == 0.5
    assert rows["c"]["precision"] == 1.0 and rows["c"]["f1"] == 2 * 1 * 0.5 / 1.5
    assert rows["a"]["support"] == 2


def test_top_confused_pairs_and_cell_images() -> None:
    cm = ev.confusion(Y, P.argmax(1), 3)
    pairs = ev.top_confused_pairs(cm, CLASSES)
    assert {(p["true"], p["predicted"]) for p in pairs} == {("a", "b"), ("b", "a"), ("c", "b")}
    assert all(p["count"] == 1 for p in pairs)
    np.testing.assert_array_equal(ev.misclassified(Y, P, 0, 1), [1])
    # Two mistakes into the same cell come back most confident first.
    y2, p2 = np.array([0, 0]), np.array([[0.4, 0.6], [0.1, 0.9]])
    np.testing.assert_array_equal(ev.misclassified(y2, p2, 0, 1), [1, 0])


def test_reliability_and_ece() -> None:
    y = np.array([0, 0, 0, 0])
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.65, 0.35], [0.35, 0.65]])
    rel = ev.reliability(y, p, bins=10)
    # bin (0.9,1]: 2 rows, acc 1, conf .95 -> |.05|; bin (0.6,0.7]: 2 rows, acc .5, conf .65 -> |.15|
    assert abs(rel["ece"] - (0.5 * 0.05 + 0.5 * 0.15)) < 1e-9
    assert sum(b["count"] for b in rel["bins"]) == 4


def test_evaluate_bundles_everything() -> None:
    report = ev.evaluate(Y, P, CLASSES)
    assert report["accuracy"] == 0.5 and report["count"] == 6
    assert len(report["per_class"]) == 3 and len(report["confusion"]) == 3
