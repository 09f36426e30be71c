"""Speed versus accuracy: the benchmark's JSON contract, its artifact key, resuming, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib.analysis.benchmark import benchmark_key, grid_configurations, run_benchmark
from lib.errors import ConfigError
from lib.store.layout import CacheLayout
from tests.fixtures import cli

ROW_KEYS = {
    "backbone",
    "image_size",
    "runtime",
    "latency_ms_p50",
    "latency_ms_p95",
    "images_per_second",
    "model_mb",
    "peak_rss_mb",
    "linear_accuracy",
    "best_accuracy",
    "n_train",
    "n_test",
}


def test_cli_json_contract_and_resume(assets: dict[str, Path], cache_dir: Path, layout: CacheLayout) -> None:
    """`python -m lib benchmark --json` prints one object with rows; a second run reuses the stored rows."""
    out = cli(  # the CLI's main(argv) in this process: its stdout is the JSON
        "benchmark",
        "--source",
        str(assets["cifar_tar"]),
        "--backbone",
        str(assets["savedmodel"]),
        "--backbone",
        str(assets["tflite"]),
        "--image-sizes",
        "32,48",
        "--runtimes",
        "tf,litert",
        "--limit",
        "3",
        "--json",
        cache=cache_dir,
    )
    rows = out["rows"]
    assert len(rows) == 5  # 2 sizes x 2 runtimes for the SavedModel, and the .tflite once at its own size
    for row in rows:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["latency_ms_p95"] >= row["latency_ms_p50"] > 0 and row["images_per_second"] > 0
        assert 0.0 <= row["linear_accuracy"] <= 1.0 and 0.0 <= row["best_accuracy"] <= 1.0
        assert row["n_train"] == 30 and row["n_test"] == 30  # 3 per class, as asked
    assert {r["runtime"] for r in rows} == {"tf", "litert", "tflite"}
    by = {(r["image_size"], r["runtime"]): r for r in rows}
    for size in (32, 48):
        tf_row, lite_row = by[(size, "tf")], by[(size, "litert")]
        # litert extracts the subset; tf checked on the timing batch that its features agree, then shared the heads
        assert lite_row["accuracy_features"] == "litert" and lite_row["feature_max_rel_diff"] is None
        assert tf_row["accuracy_features"] == "litert" and 0.0 <= tf_row["feature_max_rel_diff"] <= 1e-4
        assert (
            tf_row["best_accuracy"] == lite_row["best_accuracy"]
            and tf_row["linear_accuracy"] == lite_row["linear_accuracy"]
        )
    assert out["machine"]["cores"] and out["machine"]["cpu"] and "3 images per class" in out["subset"]
    assert out["peak_probe"]["gflops"] > 0
    for size in (32, 48):  # the same graph at one size: the same multiply-adds for both runtimes, and more at 48 px
        assert by[(size, "tf")]["multiply_adds_m"] == by[(size, "litert")]["multiply_adds_m"] > 0
        for rt in ("tf", "litert"):
            r = by[(size, rt)]
            assert r["gflops"] == pytest.approx(
                2 * r["multiply_adds_m"] * 1e6 * r["images_per_second"] / 1e9, rel=0.02, abs=0.06
            )
            assert r["peak_fraction"] == pytest.approx(r["gflops"] / out["peak_probe"]["gflops"], rel=0.05, abs=0.002)
    assert by[(48, "litert")]["multiply_adds_m"] > by[(32, "litert")]["multiply_adds_m"]
    stored = list((cache_dir / "benchmarks").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["rows"] == rows
    again = run_benchmark(
        str(assets["cifar_tar"]),
        [str(assets["savedmodel"]), str(assets["tflite"])],
        [32, 48],
        ["tf", "litert"],
        layout,
        3,
    )
    assert again["rows"] == rows  # measured once, read back


def test_runtimes_whose_features_disagree_train_their_own_heads(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout
) -> None:
    """Heads are shared only when the timing-batch features agree within the tolerance."""
    from lib.analysis.benchmark import BenchmarkSession, _Accuracy, measure_row
    from lib.data.sources import load_dataset
    from lib.models.specs import resolve_backbone

    ds = load_dataset(str(assets["cifar_tar"]), layout)
    session = BenchmarkSession(ds, layout, 3)
    spec = resolve_backbone(str(assets["savedmodel"]))
    first = measure_row(session, str(assets["savedmodel"]), 32, "tf")
    assert first.accuracy_features == "tf" and first.feature_max_rel_diff is None
    stored = session.accuracies[(spec.handle, 32, "float")]
    # Pretend a litert row came first with features 1% off, and 99% accuracy: tf must not inherit it.
    session.accuracies[(spec.handle, 32, "float")] = _Accuracy(
        "litert", stored.batch_features * 1.01, 0.99, 0.99, 30, 30, stored.feature_dim
    )
    again = measure_row(session, str(assets["savedmodel"]), 32, "tf")
    assert (
        again.accuracy_features == "tf" and again.feature_max_rel_diff is not None and again.feature_max_rel_diff > 1e-3
    )
    assert again.best_accuracy == first.best_accuracy != 0.99


def test_key_follows_grid_machine_and_versions() -> None:
    machine, versions = {"cpu": "x", "cores": 2}, {"tensorflow": "2.21.0"}
    base = benchmark_key({"configs": [["a", 128, "tf"]]}, machine, versions)
    assert base != benchmark_key({"configs": [["a", 96, "tf"]]}, machine, versions)
    assert base != benchmark_key({"configs": [["a", 128, "tf"]]}, {"cpu": "y", "cores": 2}, versions)
    assert base != benchmark_key({"configs": [["a", 128, "tf"]]}, machine, {"tensorflow": "2.22.0"})


def test_unknown_runtime_is_refused_before_any_work(assets: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="Unknown runtime"):
        grid_configurations([str(assets["savedmodel"])], [32], ["onnx"])
