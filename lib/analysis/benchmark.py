"""Speed versus accuracy: measure each (backbone x input size x runtime) the user asks for.

For every configuration one row: load-or-convert time, single-image latency (p50/p95 over at least 50
calls after warm-up), throughput at batch 64, model size on disk, peak memory while measuring, and the
test accuracy of two heads on its features: a linear probe, and the ``best`` preset (MLP, flips, TTA).
Accuracies use the first ``limit`` images per class of train and test (``None``: every image) and the
rows say so. Results are an artifact keyed by the grid, the library versions and the machine, rewritten
atomically after every row: an interrupted benchmark keeps the rows it finished, and a rerun skips them.

    result = run_benchmark("../shared/data/cifar10-jpeg.tar.gz", ["../shared/models/..."], [96, 128],
                           ["tf", "litert"], cache_dir="cache", limit=100, progress=print)
    result["rows"][0]["images_per_second"], result["machine"]["cpu"]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BENCHMARK_VERSION = 1
LATENCY_CALLS = 50  # single-image calls timed after warm-up
THROUGHPUT_BATCH = 64
DEFAULT_LIMIT = 100  # images per class of each split for the accuracy columns, unless --full


@dataclass
class BenchmarkRow:
    """The figures of one (backbone, size, runtime)."""

    backbone: str
    image_size: int
    runtime: str
    load_seconds: float
    latency_ms_p50: float
    latency_ms_p95: float
    images_per_second: float
    model_mb: float | None
    peak_rss_mb: float | None
    linear_accuracy: float
    best_accuracy: float
    n_train: int
    n_test: int
    feature_dim: int
    backbone_name: str = ""


def machine_info() -> dict[str, Any]:
    """CPU model, core count and platform: figures are only comparable on one machine."""
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}


def benchmark_key(grid: dict[str, Any], machine: dict[str, Any], versions: dict[str, str]) -> str:
    """A hash of the grid, the machine and the library versions."""
    text = json.dumps({"grid": grid, "machine": machine, "versions": versions, "v": BENCHMARK_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, so each row reports its own peak
    except OSError:
        pass


def _model_mb(spec: Any, loaded: Any, cache_dir: Path) -> float | None:
    path = Path(spec.handle) if spec.kind in ("savedmodel", "tflite") else None
    if getattr(loaded, "runtime", "tf") in ("litert", "litert-int8"):
        path = Path(loaded.path)
    if path is None or not path.exists():
        return None
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    return round(size / 1e6, 2)


def _timings(loaded: Any, images: np.ndarray, size: int) -> tuple[float, float, float]:
    one = np.ascontiguousarray(images[:1])
    for _ in range(5):
        loaded.embed(one, size)
    calls = []
    for _ in range(LATENCY_CALLS):
        t0 = time.perf_counter()
        loaded.embed(one, size)
        calls.append(time.perf_counter() - t0)
    batch = np.ascontiguousarray(images[:THROUGHPUT_BATCH])
    loaded.embed(batch, size)
    t0, n = time.perf_counter(), 0
    while n < 4 * THROUGHPUT_BATCH or time.perf_counter() - t0 < 2.0:
        loaded.embed(batch, size)
        n += len(batch)
    ips = n / (time.perf_counter() - t0)
    return float(np.percentile(calls, 50) * 1e3), float(np.percentile(calls, 95) * 1e3), ips


def measure_row(ds: Any, backbone: str, size: int, runtime: str, cache_dir: Path, limit: int | None) -> BenchmarkRow:
    """Measure one configuration (see the module docs)."""
    from lib.cli.common import peak_rss_mb
    from lib.models.protocols import PROTOCOLS
    from lib.models.runtimes import effective_runtime, load_for_runtime
    from lib.models.specs import resolve_backbone
    from lib.pipeline.training import fit_head, gather_features

    spec = resolve_backbone(backbone)
    _reset_peak_rss()
    t0 = time.perf_counter()
    loaded = load_for_runtime(spec, runtime, size, ds, cache_dir)
    load_seconds = time.perf_counter() - t0
    size = int(getattr(loaded, "fixed_size", None) or size)  # a .tflite file runs at its own size
    loaded.check_size(size)
    p50, p95, ips = _timings(loaded, np.asarray(ds.images("test")[:THROUGHPUT_BATCH]), size)
    backbones = {size: loaded}
    train = gather_features(ds, spec, "train", (size,), ("original", "flip"), cache_dir, limit, 64, None, backbones, runtime)
    test = gather_features(ds, spec, "test", (size,), ("original", "flip"), cache_dir, limit, 64, None, backbones, runtime)
    from lib.models.heads import HeadConfig

    linear = fit_head(train, test, (size,), ("original",), False, HeadConfig(head="linear", epochs=30, patience=5), len(ds.classes))
    best = PROTOCOLS["best"]
    tuned = fit_head(train, test, (size,), best.train_views, best.tta, best.head, len(ds.classes))
    acc = lambda probs: float((probs.argmax(1) == test.labels).mean())  # noqa: E731
    return BenchmarkRow(
        backbone=spec.handle, backbone_name=spec.name, image_size=size, runtime=effective_runtime(spec, runtime), load_seconds=round(load_seconds, 3),
        latency_ms_p50=round(p50, 3), latency_ms_p95=round(p95, 3), images_per_second=round(ips, 1), model_mb=_model_mb(spec, loaded, cache_dir),
        peak_rss_mb=peak_rss_mb(), linear_accuracy=acc(linear.probs), best_accuracy=acc(tuned.probs), n_train=len(train.labels),
        n_test=len(test.labels), feature_dim=int(train.parts[(size, "original")].shape[1]),
    )  # fmt: skip


def grid_configurations(backbones: list[str], sizes: list[int], runtimes: list[str]) -> list[tuple[str, int, str]]:
    """Every (backbone, size, runtime) to measure; a ``.tflite`` backbone once, at its own size."""
    from lib.models.runtimes import check_runtime
    from lib.models.specs import resolve_backbone

    out: list[tuple[str, int, str]] = []
    for backbone in backbones:
        spec = resolve_backbone(backbone)
        if spec.kind == "tflite":
            out.append((backbone, int(spec.native_size or 0), "tf"))  # 0: its own fixed size, read when loaded
            continue
        out.extend((backbone, int(size), check_runtime(runtime)) for size in sizes for runtime in runtimes)
    return out


def run_benchmark(source: str, backbones: list[str], sizes: list[int], runtimes: list[str], cache_dir: Path | str, limit: int | None = DEFAULT_LIMIT,
                  progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """Measure the grid, resuming finished rows; returns ``{"rows": [...], "machine": ..., ...}``."""
    from lib.data.sources import load_dataset
    from lib.pipeline.training import library_versions
    from lib.store.atomic import read_json, write_json_atomic
    from lib.store.layout import CacheLayout

    cache_dir = Path(cache_dir)
    ds = load_dataset(source, cache_dir)
    configs = grid_configurations(backbones, sizes, runtimes)
    machine, versions = machine_info(), library_versions()
    grid = {"dataset": ds.fingerprint, "configs": configs, "limit": limit}
    path = CacheLayout(cache_dir).benchmark_file(benchmark_key(grid, machine, versions))
    saved = read_json(path)
    rows: list[dict[str, Any]] = list(saved.get("rows", [])) if isinstance(saved, dict) else []
    done = {(r.get("backbone"), r.get("image_size") if r.get("runtime") != "tflite" else 0, r.get("runtime")) for r in rows}
    result: dict[str, Any] = {"source": source, "dataset": ds.fingerprint, "limit": limit, "machine": machine, "versions": versions, "rows": rows,
              "subset": f"first {limit} images per class of train and of test" if limit else "every image of train and test"}  # fmt: skip
    from lib.models.runtimes import effective_runtime
    from lib.models.specs import resolve_backbone

    for i, (backbone, size, runtime) in enumerate(configs):
        spec = resolve_backbone(backbone)
        actual = effective_runtime(spec, runtime)
        if (spec.handle, size if actual != "tflite" else 0, actual) in done:
            continue
        if progress:
            progress(i, len(configs), f"{spec.name} @{size} {runtime}")
        rows.append(dataclasses.asdict(measure_row(ds, backbone, size, runtime, cache_dir, limit)))
        result["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json_atomic(path, result)  # after every row: Ctrl-C keeps what finished
    if progress:
        progress(len(configs), len(configs), "done")
    write_json_atomic(path, result)
    result["path"] = str(path)
    return result


def stored_benchmarks(cache_dir: Path | str) -> list[dict[str, Any]]:
    """Every stored benchmark result with at least one row, newest first (damaged files are skipped)."""
    from lib.store.atomic import read_json
    from lib.store.layout import CacheLayout

    out = []
    for path in CacheLayout(cache_dir).benchmarks.glob("*.json"):
        data = read_json(path)
        if isinstance(data, dict) and isinstance(data.get("rows"), list) and data["rows"] and isinstance(data.get("machine"), dict):
            rows = [r for r in data["rows"] if isinstance(r, dict) and {"backbone", "image_size", "runtime", "best_accuracy"} <= set(r)]
            out.append({**data, "rows": rows, "path": str(path), "mtime": path.stat().st_mtime})
    return sorted(out, key=lambda d: d["mtime"], reverse=True)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (higher speed, higher accuracy), by speed."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1]))
    front, best = [], -1.0
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pick_within_budget(rows: list[dict[str, Any]], budget_ms: float) -> dict[str, Any] | None:
    """The most accurate configuration (``best`` preset) whose single-image p50 latency fits the budget."""
    fitting = [r for r in rows if r["latency_ms_p50"] <= budget_ms]
    return max(fitting, key=lambda r: (r["best_accuracy"], -r["latency_ms_p50"])) if fitting else None
