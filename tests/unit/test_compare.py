"""Comparing two runs: McNemar's exact test, alignment on shared test images, and the disagreement lists."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from lib.analysis.compare import compare_runs, mcnemar, verdict
from lib.errors import ConfigError


def _run(
    run_id: str, indices: list[int], y: list[int], pred: list[int], conf: float = 0.9, fingerprint: str = "fp"
) -> SimpleNamespace:
    probs = np.full((len(y), 3), (1 - conf) / 2, np.float32)
    probs[np.arange(len(y)), pred] = conf
    manifest = SimpleNamespace(dataset_fingerprint=fingerprint, test_split="test", classes=["a", "b", "c"])
    return SimpleNamespace(
        run_id=run_id, manifest=manifest, indices=np.asarray(indices), y_true=np.asarray(y), probs=probs
    )


def test_mcnemar_exact_p_value() -> None:
    # 10 images only A gets right, 2 only B: two-sided exact p = 2 * P(X <= 2 | n = 12, 1/2) = 2 * 79 / 4096.
    assert mcnemar(10, 2)["p_value"] == pytest.approx(158 / 4096)
    assert mcnemar(2, 10)["p_value"] == pytest.approx(158 / 4096)
    assert mcnemar(5, 5)["p_value"] == pytest.approx(1.0) and mcnemar(0, 0)["p_value"] == 1.0
    assert mcnemar(10, 2)["chi2"] == pytest.approx(49 / 12, abs=1e-4)


def test_compare_aligns_shared_images_and_lists_disagreements() -> None:
    y = [0, 1, 2, 0, 1, 2]
    a = _run("A", [0, 1, 2, 3, 4, 5], y, [0, 1, 2, 0, 0, 0])  # right on 0-3
    b = _run(
        "B", [5, 4, 3, 2, 1, 0], y[::-1], [2, 1, 1, 1, 1, 0]
    )  # indices in another order: right on 5, 4, 0 (index 1 is given 1)
    b.probs[0, 2] = 0.95  # the same label set differently by index: B is right on index 5 with more confidence
    r = compare_runs(a, b)
    assert r["images"] == 6 and r["accuracy"]["a"] == pytest.approx(4 / 6)
    right_b = {5, 4, 1, 0}
    assert r["accuracy"]["b"] == pytest.approx(len(right_b) / 6)
    assert {d["index"] for d in r["only_a"]} == {2, 3} and {d["index"] for d in r["only_b"]} == {4, 5}
    assert r["mcnemar"]["a_only"] == 2 and r["mcnemar"]["b_only"] == 2
    assert np.asarray(r["confusion_difference"]).sum() == 0  # both matrices count the same six images
    assert "could be chance" in verdict(r)


def test_compare_refuses_runs_on_other_data() -> None:
    a = _run("A", [0, 1], [0, 1], [0, 1])
    with pytest.raises(ConfigError, match="different data"):
        compare_runs(a, _run("B", [0, 1], [0, 1], [0, 1], fingerprint="other"))
    with pytest.raises(ConfigError, match="share no test image"):
        compare_runs(a, _run("B", [5, 6], [0, 1], [0, 1]))
    with pytest.raises(ConfigError, match="two different runs"):
        compare_runs(a, a)
