"""Two runs side by side on the test images they both scored: accuracy, ECE, per-class differences, the confusion
matrix difference, the images one gets right and the other wrong, and McNemar's test of whether the difference is
more than chance. Pure numpy over the runs' stored predictions (no TensorFlow).

    result = compare_runs(run_a, run_b)
    result["mcnemar"]["p_value"], result["only_a"][:10]      # images A gets right and B wrong, most confident first
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lib.errors import ConfigError
from lib.models.metrics import confusion, reliability


def mcnemar(a_only: int, b_only: int) -> dict[str, Any]:
    """McNemar's test on the discordant pairs: the exact two-sided binomial p-value (``scipy.stats.binomtest``), and the
    chi-square statistic with continuity correction for reference."""
    from scipy.stats import binomtest

    n = a_only + b_only
    p = float(binomtest(min(a_only, b_only), n, 0.5).pvalue) if n else 1.0
    chi2 = (abs(a_only - b_only) - 1) ** 2 / n if n else 0.0
    return {
        "a_only": a_only,
        "b_only": b_only,
        "discordant": n,
        "p_value": p,
        "chi2": round(chi2, 4),
        "test": "exact binomial (two-sided)",
    }


def _disagreements(
    rows: np.ndarray,
    indices: np.ndarray,
    y: np.ndarray,
    wrong_probs: np.ndarray,
    right_probs: np.ndarray,
    classes: list[str],
) -> list[dict[str, Any]]:
    """Rows one run gets right and the other wrong, the wrong run's most confident mistakes first."""
    wrong_pred = wrong_probs[rows].argmax(axis=1)
    conf = wrong_probs[rows, wrong_pred]
    order = np.argsort(-conf, kind="stable")
    return [
        {
            "index": int(indices[rows[k]]),
            "label": classes[int(y[rows[k]])],
            "wrong_prediction": classes[int(wrong_pred[k])],
            "wrong_confidence": float(conf[k]),
            "right_confidence": float(right_probs[rows[k], y[rows[k]]]),
        }
        for k in order
    ]


def compare_runs(a: Any, b: Any) -> dict[str, Any]:
    """Compare two loaded runs (:class:`lib.runs.registry.Run`); :class:`ConfigError` unless they were scored on the
    same
    dataset's test split with the same classes and share test images."""

    ma, mb = a.manifest, b.manifest
    if a.run_id == b.run_id:
        raise ConfigError("Pick two different runs to compare.")
    if ma.dataset_fingerprint != mb.dataset_fingerprint or ma.test_split != mb.test_split:
        raise ConfigError(
            f"Runs {a.run_id} and {b.run_id} were scored on different data (dataset or test split differ); they "
            "cannot be compared."
        )
    if list(ma.classes) != list(mb.classes):
        raise ConfigError(f"Runs {a.run_id} and {b.run_id} have different classes; they cannot be compared.")
    common, ia, ib = np.intersect1d(a.indices, b.indices, return_indices=True)
    if not len(common):
        raise ConfigError(f"Runs {a.run_id} and {b.run_id} share no test image (different --limit or exclude lists).")
    y = np.asarray(a.y_true)[ia]
    pa, pb = np.asarray(a.probs)[ia], np.asarray(b.probs)[ib]
    ra, rb = pa.argmax(axis=1) == y, pb.argmax(axis=1) == y
    classes, k = list(ma.classes), len(ma.classes)
    per_class = []
    for c, name in enumerate(classes):
        rows = y == c
        acc_a, acc_b = (float(ra[rows].mean()), float(rb[rows].mean())) if rows.any() else (float("nan"), float("nan"))
        per_class.append(
            {"class": name, "a": acc_a, "b": acc_b, "difference": acc_b - acc_a, "images": int(rows.sum())}
        )
    only_a, only_b = np.flatnonzero(ra & ~rb), np.flatnonzero(rb & ~ra)
    return {
        "a": a.run_id,
        "b": b.run_id,
        "images": len(common),
        "skipped": {"a": int(len(a.indices) - len(common)), "b": int(len(b.indices) - len(common))},
        "accuracy": {"a": float(ra.mean()), "b": float(rb.mean())},
        "ece": {"a": reliability(y, pa)["ece"], "b": reliability(y, pb)["ece"]},
        "per_class": per_class,
        "confusion_difference": (
            confusion(y, pb.argmax(axis=1), k) - confusion(y, pa.argmax(axis=1), k)
        ).tolist(),  # B minus A
        "mcnemar": mcnemar(len(only_a), len(only_b)),
        "both_right": int((ra & rb).sum()),
        "both_wrong": int((~ra & ~rb).sum()),
        "only_a": _disagreements(
            only_a, common, y, pb, pa, classes
        ),  # A right, B wrong: B's most confident mistakes first
        "only_b": _disagreements(only_b, common, y, pa, pb, classes),
    }


def verdict(result: dict[str, Any], alpha: float = 0.05) -> str:
    """One sentence on whether the difference is more than chance."""
    m, acc = result["mcnemar"], result["accuracy"]
    better = "B" if acc["b"] > acc["a"] else "A"
    diff = abs(acc["b"] - acc["a"])
    if m["p_value"] < alpha:
        return (
            f"{better} is better by {diff:.2%} on {result['images']:,} shared test images, and the difference is "
            f"more than chance (McNemar p = {m['p_value']:.2g}; {m['a_only']:,} images only A gets right, "
            f"{m['b_only']:,} only B)."
        )
    return (
        f"The difference ({diff:.2%} on {result['images']:,} shared test images) could be chance (McNemar p = "
        f"{m['p_value']:.2g}; {m['a_only']:,} images only A gets right, {m['b_only']:,} only B)."
    )
