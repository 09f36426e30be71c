"""AppTest of Speed vs accuracy: measuring, merging results, picking within a budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.helpers import finish_jobs, no_errors, start


def test_speed_page_empty_then_measured_then_pick(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], tmp_path: Path
) -> None:
    """A user opens Speed vs accuracy with nothing measured (it explains itself), measures the active backbone, and
    gets the chart, the table and the most accurate configuration within a latency budget."""
    import shutil

    cache = tmp_path / "speed_cache"
    shutil.copytree(prepared["cache"], cache)
    env = {**prepared, "cache": str(cache)}
    at = start(monkeypatch, env, page="speed.py")
    assert any("Nothing measured yet" in i.value for i in at.info)
    at.multiselect[0].set_value([32])
    at.multiselect[1].set_value(["tf"])
    at.number_input[0].set_value(3)
    assert any(b.label.startswith("Measure the default grid") for b in at.button)  # offered, not run: it takes ~30 min
    at.button(key="FormSubmitter:bench_form-Measure tiny\\_fv\\_32").click().run()
    no_errors(at)
    finish_jobs(at, cache)
    no_errors(at)
    assert not any("Nothing measured yet" in i.value for i in at.info)
    assert len(at.dataframe[0].value) == 1
    at.number_input(key="sp_budget").set_value(10_000.0).run()
    assert any("tiny" in s.value and "32px" in s.value for s in at.success)
    at.number_input(key="sp_budget").set_value(0.1).run()
    assert any("No measured configuration" in w.value for w in at.warning)


def test_speed_page_merges_results_shows_int8_loss_and_offers_the_missing(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], tmp_path: Path
) -> None:
    """Stored results of two machines are kept apart; the int8 loss table appears; what the default grid lacks is
    offered."""
    import json

    from lib.analysis.benchmark import DEFAULT_LIMIT, default_grid

    cache = tmp_path / "speed_rows"
    (cache / "benchmarks").mkdir(parents=True)
    from lib.models.specs import resolve_backbone

    bb = resolve_backbone(default_grid()[0][0]).handle  # rows store the resolved handle (../shared may be a symlink)
    row = {
        "backbone": bb,
        "backbone_name": Path(bb).name,
        "image_size": 128,
        "latency_ms_p50": 2.0,
        "latency_ms_p95": 3.0,
        "model_mb": 1.0,
        "peak_rss_mb": 100.0,
        "n_train": 500,
        "n_test": 500,
        "linear_accuracy": 0.7,
    }
    rows = [
        {**row, "runtime": "tf", "images_per_second": 100.0, "best_accuracy": 0.80},
        {**row, "runtime": "litert", "images_per_second": 180.0, "best_accuracy": 0.80},
        {**row, "runtime": "litert-int8", "images_per_second": 400.0, "best_accuracy": 0.77},
    ]
    for name, cpu in (("a", "Test CPU A"), ("b", "Test CPU B")):
        result = {
            "source": prepared["source"],
            "dataset": "d",
            "limit": DEFAULT_LIMIT,
            "machine": {"cpu": cpu, "cores": 2},
            "benchmark_version": 2,
            "rows": rows,
            "subset": f"first {DEFAULT_LIMIT} images per class of train and of test",
        }
        (cache / "benchmarks" / f"{name}.json").write_text(json.dumps(result))
    at = start(monkeypatch, {**prepared, "cache": str(cache)}, page="speed.py")
    no_errors(at)
    picker = at.selectbox(key="sp_group")
    assert len(picker.options) == 2 and all("3 rows" in o for o in picker.options)
    loss = at.dataframe[0].value
    assert list(loss["loss_points"]) == [3.0] and list(loss["float_runtime"]) == ["litert"]
    missing = len(default_grid()) - 3
    assert any(f"{missing} of the default grid" in i.value for i in at.info)
    assert any(b.label == f"Measure the {missing} missing configurations" for b in at.button)
