"""Calibrated probabilities: temperature scaling (Guo et al., 2017) fitted on held-out rows.

One number T divides the head's logits before the softmax; it is chosen to minimise the negative log-likelihood of
rows the head did not train on (the run's validation rows), so "p = 0.9" means right about nine times in ten. The
argmax, hence the accuracy, is unchanged. The temperature is stored with the head (``head.npz``), so every
probability shown or exported (Evaluate, the map, uploads, the exported model) is the calibrated one.

    t = fit_temperature(lambda t: probabilities_at(t), y_val)        # 1.0 if there is nothing to fit on
    head.temperature = t
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MIN_ROWS = 50  # fewer held-out rows than this cannot pin a temperature down: it stays 1
BOUNDS = (0.05, 20.0)  # temperatures searched (log-uniformly)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels."""
    p = np.clip(probs[np.arange(len(labels)), np.asarray(labels)], 1e-12, 1.0)
    return float(-np.log(p).mean())


def fit_temperature(probs_at: Callable[[float], np.ndarray], labels: np.ndarray) -> float:
    """The temperature minimising the NLL of ``probs_at(t)`` (the held-out rows' probabilities at temperature ``t``,
    test-time views averaged as the run averages them); 1.0 with fewer than :data:`MIN_ROWS` rows."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels)
    if len(labels) < MIN_ROWS:
        return 1.0
    lo, hi = np.log(BOUNDS[0]), np.log(BOUNDS[1])
    best = minimize_scalar(
        lambda log_t: nll(probs_at(float(np.exp(log_t))), labels),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-3},
    )
    return float(np.exp(best.x)) if best.success else 1.0
