"""lib/runs/manifest.py: a run manifest is typed and validated; a damaged one says so, never a KeyError."""

from __future__ import annotations

import pytest

from lib.errors import RunError
from lib.models.heads import HeadConfig
from lib.runs.manifest import RunManifest, RunMetrics


def _manifest(**metrics: object) -> dict:
    m = RunManifest(
        "src", "fp", ["cats", "dogs"], "bb", "bb", "id", [32], HeadConfig(), RunMetrics(0.9, None, 0.05, 10)
    )
    data = m.to_dict()
    data["metrics"].update(metrics)
    return data


def test_two_class_runs_have_no_top5_and_read_back() -> None:
    m = RunManifest.from_dict(_manifest())
    assert m.metrics.top5_accuracy is None and m.classes == ["cats", "dogs"]


@pytest.mark.parametrize("damage", [{"test_accuracy": 1.5}, {"ece": "x"}, {"top5_accuracy": -1}])
def test_out_of_range_metrics_are_damage(damage: dict) -> None:
    with pytest.raises(RunError, match="damaged"):
        RunManifest.from_dict(_manifest(**damage))


def test_a_manifest_that_is_not_an_object_is_damaged() -> None:
    with pytest.raises(RunError, match="damaged"):
        RunManifest.from_dict([1, 2])
