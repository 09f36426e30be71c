"""Evaluation: pure functions over stored labels and probabilities (no TensorFlow).

report = evaluate(y_true, probs, classes)
report["accuracy"], report["per_class"], report["confusion"]
cell = misclassified(y_true, probs, true_class=3, predicted_class=5)   # most confident first
"""

from __future__ import annotations

from typing import Any

import numpy as np


def accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Top-1 accuracy."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, probs.argmax(axis=1)))


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int = 5) -> float | None:
    """Share of rows whose true class is among the k most probable; None where ``k`` is not below the number of
    classes (top-5 of a 2-class or 5-class problem says nothing: it is always 1)."""
    from sklearn.metrics import top_k_accuracy_score

    classes = probs.shape[1]
    if k >= classes:
        return None
    if classes == 2:  # scikit-learn takes binary scores as one column (and only k=1 is below 2 classes)
        return float(top_k_accuracy_score(y_true, probs[:, 1], k=k, labels=np.arange(2)))
    return float(top_k_accuracy_score(y_true, probs, k=k, labels=np.arange(classes)))


def percent(value: float | None) -> str:
    """A share as ``83.35%``, or ``n/a`` where there is none (top-5 of five classes or fewer)."""
    return "n/a" if value is None else f"{value:.2%}"


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, normalize: bool = False) -> np.ndarray:
    """Confusion matrix (rows true, columns predicted), counts or row-normalized."""
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))
    if not normalize:
        return cm
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)


def per_class_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: list[str] | tuple[str, ...]
) -> list[dict[str, Any]]:
    """Per class: accuracy (= recall), precision, recall, F1 and support."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = np.arange(len(classes))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return [
        {
            "class": c,
            "accuracy": float(r[i]),
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, c in enumerate(classes)
    ]


def top_confused_pairs(cm: np.ndarray, classes: list[str] | tuple[str, ...], n: int = 10) -> list[dict[str, Any]]:
    """The off-diagonal cells with the most errors, largest first."""
    off = cm.astype(float).copy()
    np.fill_diagonal(off, -1)
    order = np.argsort(-off, axis=None, kind="stable")[:n]
    rows = []
    for flat in order:
        t, p = np.unravel_index(flat, cm.shape)
        if off[t, p] <= 0:
            break
        support = cm[t].sum()
        rows.append(
            {
                "true": classes[t],
                "predicted": classes[p],
                "true_index": int(t),
                "predicted_index": int(p),
                "count": int(cm[t, p]),
                "share_of_true": float(cm[t, p] / support) if support else 0.0,
            }
        )
    return rows


def misclassified(y_true: np.ndarray, probs: np.ndarray, true_class: int, predicted_class: int) -> np.ndarray:
    """Row indices with this (true, predicted) pair, sorted by the predicted class's probability, highest first."""
    pred = probs.argmax(axis=1)
    rows = np.flatnonzero((np.asarray(y_true) == true_class) & (pred == predicted_class))
    conf = probs[rows, predicted_class]
    return rows[np.argsort(-conf, kind="stable")]


def reliability(y_true: np.ndarray, probs: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """Reliability curve over equal-width confidence bins, and the expected calibration error."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        if count:
            acc, mean_conf = float(correct[mask].mean()), float(conf[mask].mean())
            ece += count / len(conf) * abs(acc - mean_conf)
        else:
            acc = mean_conf = float("nan")
        rows.append(
            {
                "bin_low": float(edges[b]),
                "bin_high": float(edges[b + 1]),
                "count": count,
                "accuracy": acc,
                "confidence": mean_conf,
            }
        )
    return {"bins": rows, "ece": float(ece)}


def evaluate_for_run(
    y_true: np.ndarray, probs: np.ndarray, classes: list[str] | tuple[str, ...], warn: Any = None
) -> dict[str, Any]:
    """:func:`evaluate`, but a trained head is never lost to a failure of it: if any figure beyond accuracy and ECE
    cannot be computed, those two are returned (and ``warn`` is told why), so the run is still saved."""
    try:
        return evaluate(y_true, probs, classes)
    except Exception as err:  # noqa: BLE001 - whatever the metrics library raises, the trained head is saved
        if warn is not None:
            warn(
                f"Some metrics could not be computed ({type(err).__name__}: {str(err)[:200]}); the run is saved with "
                "accuracy and ECE."
            )
        return {
            "accuracy": accuracy(y_true, probs),
            "top5_accuracy": None,
            "calibration": reliability(y_true, probs),
            "count": len(y_true),
        }


def evaluate(y_true: np.ndarray, probs: np.ndarray, classes: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Everything the Evaluate page and ``python -m lib evaluate`` show, as plain values."""
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(axis=1)
    cm = confusion(y_true, y_pred, len(classes))
    return {
        "accuracy": accuracy(y_true, probs),
        "top5_accuracy": top_k_accuracy(y_true, probs, 5),
        "per_class": per_class_metrics(y_true, y_pred, classes),
        "confusion": cm.tolist(),
        "confusion_normalized": confusion(y_true, y_pred, len(classes), normalize=True).tolist(),
        "top_confused": top_confused_pairs(cm, classes),
        "calibration": reliability(y_true, probs),
        "count": len(y_true),
    }
