"""Speed versus accuracy: the benchmark's JSON contract, its artifact key, resuming, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lib.analysis.benchmark import benchmark_key, grid_configurations, run_benchmark
from lib.errors import ConfigError

ROW_KEYS = {"backbone", "image_size", "runtime", "latency_ms_p50", "latency_ms_p95", "images_per_second", "model_mb", "peak_rss_mb",
            "linear_accuracy", "best_accuracy", "n_train", "n_test"}  # fmt: skip


def test_cli_json_contract_and_resume(assets: dict[str, Path], cache_dir: Path) -> None:
    """`python -m lib benchmark --json` prints one object with rows; a second run reuses the stored rows."""
    cmd = [sys.executable, "-m", "lib", "benchmark", "--source", str(assets["cifar_tar"]), "--backbone", str(assets["savedmodel"]),
           "--backbone", str(assets["tflite"]), "--image-sizes", "32,48", "--runtimes", "tf,litert", "--limit", "3", "--cache-dir", str(cache_dir), "--json"]  # fmt: skip
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    rows = out["rows"]
    assert len(rows) == 5  # 2 sizes x 2 runtimes for the SavedModel, and the .tflite once at its own size
    for row in rows:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["latency_ms_p95"] >= row["latency_ms_p50"] > 0 and row["images_per_second"] > 0
        assert 0.0 <= row["linear_accuracy"] <= 1.0 and 0.0 <= row["best_accuracy"] <= 1.0
        assert row["n_train"] == 30 and row["n_test"] == 30  # 3 per class, as asked
    assert {r["runtime"] for r in rows} == {"tf", "litert", "tflite"}
    assert out["machine"]["cores"] and out["machine"]["cpu"] and "3 images per class" in out["subset"]
    stored = list((cache_dir / "benchmarks").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["rows"] == rows
    again = run_benchmark(str(assets["cifar_tar"]), [str(assets["savedmodel"]), str(assets["tflite"])], [32, 48], ["tf", "litert"], cache_dir, 3)
    assert again["rows"] == rows  # measured once, read back


def test_key_follows_grid_machine_and_versions() -> None:
    machine, versions = {"cpu": "x", "cores": 2}, {"tensorflow": "2.21.0"}
    base = benchmark_key({"configs": [["a", 128, "tf"]]}, machine, versions)
    assert base != benchmark_key({"configs": [["a", 96, "tf"]]}, machine, versions)
    assert base != benchmark_key({"configs": [["a", 128, "tf"]]}, {"cpu": "y", "cores": 2}, versions)
    assert base != benchmark_key({"configs": [["a", 128, "tf"]]}, machine, {"tensorflow": "2.22.0"})


def test_unknown_runtime_is_refused_before_any_work(assets: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="Unknown runtime"):
        grid_configurations([str(assets["savedmodel"])], [32], ["onnx"])
