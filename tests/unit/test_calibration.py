"""lib/models/calibration.py: temperature scaling fitted on held-out rows."""

from __future__ import annotations

import numpy as np

from lib.models.calibration import fit_temperature, nll
from lib.models.heads import softmax
from lib.models.metrics import reliability


def _logits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a head that is right about 70% of the time but three times too sure of itself."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    logits = rng.normal(0, 1, (n, 10))
    logits[np.arange(n), labels] += 1.6
    return 3.0 * logits, labels


def test_an_overconfident_head_is_cooled_and_its_ece_falls() -> None:
    val_logits, val_y = _logits(3000, 0)
    t = fit_temperature(lambda temp: softmax(val_logits / temp), val_y)
    assert (
        1.5 < t < 4.5
    )  # it cools the logits (not exactly by the factor they were inflated by: the noise is inflated too)
    test_logits, test_y = _logits(3000, 1)
    before, after = softmax(test_logits), softmax(test_logits / t)
    assert reliability(test_y, after)["ece"] < 0.03 < reliability(test_y, before)["ece"]
    assert nll(after, test_y) < nll(before, test_y)
    assert (after.argmax(1) == before.argmax(1)).all()  # accuracy unchanged


def test_too_few_rows_leave_the_temperature_at_one() -> None:
    logits, y = _logits(20, 2)
    assert fit_temperature(lambda temp: softmax(logits / temp), y) == 1.0
