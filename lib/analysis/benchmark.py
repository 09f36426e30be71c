"""Speed versus accuracy: measure each (backbone x input size x runtime) the user asks for.

For every configuration one row: load-or-convert time, single-image latency (p50/p95 over at least 50
calls after warm-up), throughput at batch 64, model size on disk, peak memory while measuring, and the
test accuracy of two heads on its features: a linear probe (:func:`linear_probe`, original view), and the
``best`` preset (MLP, flips, TTA).
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

BENCHMARK_VERSION = 2  # 2: tf/litert share heads when their features agree
LATENCY_CALLS = 50  # single-image calls timed after warm-up
THROUGHPUT_BATCH = 64
THROUGHPUT_SECONDS = 1.0  # at least this long (and 4 batches) at batch 64
LINEAR_PROBE_C = 0.1  # inverse L2 strength of the linear probe
SHARED_FEATURES_TOLERANCE = 1e-4  # max relative difference for tf and litert to share heads
DEFAULT_LIMIT = 50  # images per class of each split for the accuracy columns, unless --full (keeps the default grid under 30 min)


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
    accuracy_features: str = ""  # the runtime whose features trained the heads
    feature_max_rel_diff: float | None = None  # when another runtime's: how far its features were from these


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


def _timings(loaded: Any, images: np.ndarray, size: int) -> tuple[float, float, float, np.ndarray]:
    """p50 and p95 single-image latency (ms), images/s at batch 64, and the features of that batch."""
    one = np.ascontiguousarray(images[:1])
    for _ in range(5):
        loaded.embed(one, size)
    calls = []
    for _ in range(LATENCY_CALLS):
        t0 = time.perf_counter()
        loaded.embed(one, size)
        calls.append(time.perf_counter() - t0)
    batch = np.ascontiguousarray(images[:THROUGHPUT_BATCH])
    features = np.asarray(loaded.embed(batch, size), np.float32)
    t0, n = time.perf_counter(), 0
    while n < 4 * THROUGHPUT_BATCH or time.perf_counter() - t0 < THROUGHPUT_SECONDS:
        loaded.embed(batch, size)
        n += len(batch)
    ips = n / (time.perf_counter() - t0)
    return float(np.percentile(calls, 50) * 1e3), float(np.percentile(calls, 95) * 1e3), ips, features


@dataclass
class _Accuracy:
    """The head accuracies of one feature set, and the timing-batch features that identify it."""

    runtime: str
    batch_features: np.ndarray
    linear: float
    best: float
    n_train: int
    n_test: int
    feature_dim: int


@dataclass
class BenchmarkSession:
    """What one benchmark shares between its rows: each TF backbone loads once, and runtimes whose features
    agree (``tf`` and ``litert``, within :data:`SHARED_FEATURES_TOLERANCE`) train their heads once."""

    ds: Any
    cache_dir: Path
    limit: int | None
    tf_models: dict[str, tuple[Any, float]] = dataclasses.field(default_factory=dict)
    accuracies: dict[tuple[str, int, str], _Accuracy] = dataclasses.field(default_factory=dict)
    convert_seconds: dict[tuple[str, int, str], float] = dataclasses.field(default_factory=dict)  # converted ahead, in parallel

    def tf_model(self, spec: Any) -> tuple[Any, float]:
        """The TF-loaded backbone and the seconds its (first) load took."""
        if spec.handle not in self.tf_models:
            from lib.models.backbones import load_backbone

            self.tf_models.clear()  # rows come backbone by backbone: keep one TF model in memory, not all of them

            t0 = time.perf_counter()
            loaded = load_backbone(spec)
            self.tf_models[spec.handle] = (loaded, time.perf_counter() - t0)
        return self.tf_models[spec.handle]


def _family(runtime: str) -> str:
    """Runtimes whose features must agree within the tolerance share a family (tf and float LiteRT)."""
    return "float" if runtime in ("tf", "litert") else runtime


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a64 - b64).max() / max(float(np.abs(b64).max()), 1e-12))


def _accuracies(session: BenchmarkSession, spec: Any, size: int, runtime: str, loaded: Any, batch_features: np.ndarray) -> _Accuracy:
    """Train the linear probe and the best preset on this runtime's features of the subset."""
    from lib.models.protocols import PROTOCOLS
    from lib.pipeline.training import fit_head, gather_features

    ds, backbones = session.ds, {size: loaded}
    common = ((size,), ("original", "flip"), session.cache_dir, session.limit, THROUGHPUT_BATCH, None, backbones, runtime)
    train = gather_features(ds, spec, "train", *common)
    test = gather_features(ds, spec, "test", *common)
    x_train, x_test = train.parts[(size, "original")], test.parts[(size, "original")]
    linear = float((linear_probe(x_train, train.labels).predict(x_test) == test.labels).mean())
    best = PROTOCOLS["best"]
    tuned = fit_head(train, test, (size,), best.train_views, best.tta, best.head, len(ds.classes))
    return _Accuracy(runtime, batch_features, linear, float((tuned.probs.argmax(1) == test.labels).mean()), len(train.labels), len(test.labels),
                     int(x_train.shape[1]))  # fmt: skip


def linear_probe(x: np.ndarray, y: np.ndarray) -> Any:
    """The standard linear probe: multinomial logistic regression (L-BFGS, C=0.1) on standardised features.

    scikit-learn's, not a Keras head: it is deterministic and fits a few thousand rows in well under a second,
    where a Keras fit pays about 3 s of set-up whatever the size, which the default grid cannot afford 80 times.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=LINEAR_PROBE_C, max_iter=1000)).fit(np.asarray(x, np.float32), y)


def measure_row(session: BenchmarkSession, backbone: str, size: int, runtime: str) -> BenchmarkRow:
    """Measure one configuration (see the module docs).

    ``load_seconds`` is the SavedModel load for ``tf`` (once per backbone and benchmark), the conversion plus
    interpreter start for ``litert``/``litert-int8`` (the interpreter start alone when it was converted by an
    earlier benchmark; the conversion time of a worker when :func:`preconvert` did it), and
    the interpreter start for a ``.tflite`` file. The accuracies come from this runtime's own features,
    unless a runtime of the same family (``tf``/``litert``) was measured at this size in this benchmark and
    its features on the timing batch agree with these within the tolerance: then its heads are reused and
    the row says so (``accuracy_features``, ``feature_max_rel_diff``).
    """
    from lib.cli.common import peak_rss_mb
    from lib.models.runtimes import effective_runtime, load_for_runtime
    from lib.models.specs import resolve_backbone

    spec = resolve_backbone(backbone)
    actual = effective_runtime(spec, runtime)
    _reset_peak_rss()
    t0 = time.perf_counter()
    if actual == "tf":
        loaded, load_seconds = session.tf_model(spec)
    else:
        loaded = load_for_runtime(spec, runtime, size, session.ds, session.cache_dir, lambda: session.tf_model(spec)[0])
        load_seconds = time.perf_counter() - t0 + session.convert_seconds.get((spec.handle, size, actual), 0.0)
    size = int(getattr(loaded, "fixed_size", None) or size)  # a .tflite file runs at its own size
    loaded.check_size(size)
    p50, p95, ips, batch_features = _timings(loaded, np.asarray(session.ds.images("test")[:THROUGHPUT_BATCH]), size)
    group = (spec.handle, size, _family(actual))
    shared, rel = session.accuracies.get(group), None
    if shared is not None and shared.runtime != actual:
        rel = _relative_difference(batch_features, shared.batch_features)
        if rel > SHARED_FEATURES_TOLERANCE:
            shared = None  # they disagree: this runtime's features train their own heads
    accuracy = shared if shared is not None else _accuracies(session, spec, size, runtime, loaded, batch_features)
    session.accuracies.setdefault(group, accuracy)
    return BenchmarkRow(
        backbone=spec.handle, backbone_name=spec.name, image_size=size, runtime=actual, load_seconds=round(load_seconds, 3),
        latency_ms_p50=round(p50, 3), latency_ms_p95=round(p95, 3), images_per_second=round(ips, 1), model_mb=_model_mb(spec, loaded, session.cache_dir),
        peak_rss_mb=peak_rss_mb(), linear_accuracy=accuracy.linear, best_accuracy=accuracy.best, n_train=accuracy.n_train,
        n_test=accuracy.n_test, feature_dim=accuracy.feature_dim, accuracy_features=accuracy.runtime,
        feature_max_rel_diff=rel,
    )  # fmt: skip


# Within a (backbone, size), the faster float runtime extracts the accuracy subset; the other checks it agrees.
_RUNTIME_ORDER = {"litert": 0, "tf": 1, "litert-int8": 2}


def grid_configurations(backbones: list[str], sizes: list[int], runtimes: list[str]) -> list[tuple[str, int, str]]:
    """Every (backbone, size, runtime) to measure; a ``.tflite`` backbone once, at its own size."""
    from lib.models.runtimes import check_runtime
    from lib.models.specs import resolve_backbone

    runtimes = [check_runtime(r) for r in runtimes]
    out: list[tuple[str, int, str]] = []
    for backbone in backbones:
        spec = resolve_backbone(backbone)
        if spec.kind == "tflite":
            out.append((backbone, int(spec.native_size or 0), "tf"))  # 0: its own fixed size, read when loaded
            continue
        out.extend((backbone, int(size), runtime) for size in sizes for runtime in sorted(runtimes, key=_RUNTIME_ORDER.__getitem__))
    return out


DEFAULT_SIZES = (96, 128, 160, 192, 224)
_WORKER_MODELS: dict[str, Any] = {}  # in a conversion worker: the TF-loaded backbone it converts now


def _convert_in_worker(source: str, cache_dir: str, backbone: str, size: int, runtime: str) -> tuple[float, str | None]:
    """One conversion in a worker process: (seconds, None) or (seconds, the one-line error)."""
    from lib.process import configure_process

    configure_process(cache_dir)
    from lib.data.sources import load_dataset
    from lib.errors import UserFacingError
    from lib.models.backbones import load_backbone
    from lib.models.runtimes import convert
    from lib.models.specs import resolve_backbone

    t0 = time.perf_counter()
    try:
        spec = resolve_backbone(backbone)
        if spec.handle not in _WORKER_MODELS:
            _WORKER_MODELS.clear()  # one backbone at a time per worker: memory stays bounded
            _WORKER_MODELS[spec.handle] = load_backbone(spec)
        convert(spec, size, runtime, load_dataset(source, cache_dir), cache_dir, lambda: _WORKER_MODELS[spec.handle])
        return time.perf_counter() - t0, None
    except UserFacingError as err:
        return time.perf_counter() - t0, str(err)


def preconvert(source: str, ds: Any, configs: list[tuple[str, int, str]], cache_dir: Path, workers: int,
               progress: Callable[[int, int, str], None] | None = None) -> dict[tuple[str, int, str], float]:  # fmt: skip
    """Convert every LiteRT model the configurations need and the cache lacks, ``workers`` at a time.

    TFLite's converter, and above all its int8 calibration, runs on one core; converting ahead in parallel
    processes uses every core and keeps conversion out of the timed measurements, which then run alone.
    Returns the seconds each conversion took in its worker. A model that cannot be converted stops the
    benchmark before anything is measured, with the converter's reason.
    """
    import concurrent.futures as cf
    import multiprocessing

    from lib.errors import BackboneError
    from lib.models.runtimes import converted_key, effective_runtime
    from lib.models.specs import resolve_backbone
    from lib.store.layout import CacheLayout

    layout, jobs = CacheLayout(cache_dir), []
    for backbone, size, runtime in configs:
        spec = resolve_backbone(backbone)
        if effective_runtime(spec, runtime) in ("litert", "litert-int8") and not layout.converted_model(converted_key(spec, size, runtime, ds)).is_file():
            jobs.append((spec.handle, size, runtime, spec.name))
    done: dict[tuple[str, int, str], float] = {}
    if not jobs:
        return done
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked TensorFlow state
    with cf.ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx) as pool:
        futures = {pool.submit(_convert_in_worker, source, str(cache_dir), h, size, rt): (h, size, rt, name) for h, size, rt, name in jobs}
        try:
            for n, fut in enumerate(cf.as_completed(futures)):
                handle, size, runtime, name = futures[fut]
                seconds, error = fut.result()
                if error:
                    raise BackboneError(error)
                done[(handle, size, runtime)] = seconds
                if progress:
                    progress(n + 1, len(jobs), f"converted {name} @{size} {runtime}")
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return done


def default_grid() -> list[tuple[str, int, str]]:
    """Every backbone in ``../shared/models`` at every default size with every runtime."""
    from lib.models.runtimes import RUNTIMES
    from lib.models.specs import local_backbones

    return grid_configurations(local_backbones(), list(DEFAULT_SIZES), list(RUNTIMES))


def config_key(backbone: str, size: int, runtime: str) -> tuple[str, int, str]:
    """How a row is matched to a configuration: handle, size (0 for a .tflite file's own) and the runtime that runs."""
    from lib.models.runtimes import effective_runtime
    from lib.models.specs import resolve_backbone

    spec = resolve_backbone(backbone)
    actual = effective_runtime(spec, runtime)
    return spec.handle, (0 if actual == "tflite" else int(size)), actual


def row_key(row: dict[str, Any]) -> tuple[Any, Any, Any]:
    """:func:`config_key` of a stored row."""
    return row.get("backbone"), (0 if row.get("runtime") == "tflite" else row.get("image_size")), row.get("runtime")


def missing_configurations(configs: list[tuple[str, int, str]], rows: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """The configurations no row measures yet."""
    done = {row_key(r) for r in rows}
    return [c for c in configs if config_key(*c) not in done]


def run_benchmark(source: str, backbones: list[str], sizes: list[int], runtimes: list[str], cache_dir: Path | str, limit: int | None = DEFAULT_LIMIT,
                  progress: Callable[[int, int, str], None] | None = None, convert_workers: int = 1) -> dict[str, Any]:  # fmt: skip
    """Measure the (backbones x sizes x runtimes) grid; see :func:`run_configurations`."""
    return run_configurations(source, grid_configurations(backbones, sizes, runtimes), cache_dir, limit, progress, convert_workers)


def run_configurations(source: str, configs: list[tuple[str, int, str]], cache_dir: Path | str, limit: int | None = DEFAULT_LIMIT,
                       progress: Callable[[int, int, str], None] | None = None, convert_workers: int = 1) -> dict[str, Any]:  # fmt: skip
    """Measure ``configs``, resuming finished rows; returns ``{"rows": [...], "machine": ..., ...}``.

    ``progress(done, total, label)`` counts the configurations still to measure in this call (rows read back
    from an earlier, interrupted run are not counted), so an ETA from it is honest. With ``convert_workers``
    above 1, the LiteRT conversions run first, that many processes at a time (:func:`preconvert`); the
    progress then counts the conversions first (labels "converted ..."), then the measurements.
    """
    from lib.data.sources import load_dataset
    from lib.models.specs import resolve_backbone
    from lib.pipeline.training import library_versions
    from lib.store.atomic import read_json, write_json_atomic
    from lib.store.layout import CacheLayout

    cache_dir = Path(cache_dir)
    ds = load_dataset(source, cache_dir)
    machine, versions = machine_info(), library_versions()
    grid = {"dataset": ds.fingerprint, "configs": [list(c) for c in configs], "limit": limit}
    path = CacheLayout(cache_dir).benchmark_file(benchmark_key(grid, machine, versions))
    saved = read_json(path)
    rows: list[dict[str, Any]] = list(saved.get("rows", [])) if isinstance(saved, dict) else []
    result: dict[str, Any] = {"source": source, "dataset": ds.fingerprint, "limit": limit, "machine": machine, "versions": versions, "rows": rows,
              "benchmark_version": BENCHMARK_VERSION,
              "subset": f"first {limit} images per class of train and of test" if limit else "every image of train and test"}  # fmt: skip
    todo = missing_configurations(configs, rows)
    session = BenchmarkSession(ds, cache_dir, limit)
    if convert_workers > 1:
        session.convert_seconds = preconvert(source, ds, todo, cache_dir, convert_workers, progress)
    for i, (backbone, size, runtime) in enumerate(todo):
        if progress:
            progress(i, len(todo), f"{resolve_backbone(backbone).name} @{size or 'own size'} {runtime}")
        rows.append(dataclasses.asdict(measure_row(session, backbone, size, runtime)))
        result["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json_atomic(path, result)  # after every row: Ctrl-C keeps what finished
    if progress:
        progress(len(todo), len(todo), "done")
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


def merged_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored results merged per (dataset, accuracy subset, machine, benchmark version), newest first; within a
    group the newest row of each configuration wins. Figures from different machines or subsets are never mixed."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for res in results:  # newest first
        m = res["machine"]
        key = (res.get("dataset"), res.get("limit"), m.get("cpu"), m.get("cores"), res.get("benchmark_version"))
        group = groups.setdefault(key, {**res, "rows": [], "files": []})
        seen = {row_key(r) for r in group["rows"]}
        group["rows"].extend(r for r in res["rows"] if row_key(r) not in seen)
        group["files"].append(res.get("path"))
    return list(groups.values())


def int8_loss(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (backbone, size) measured both in float and in int8: the best-preset accuracy each reaches, the
    int8 loss in points, and int8's speed-up over the fastest float runtime."""
    by_key: dict[tuple[Any, Any], dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_key.setdefault((r["backbone"], r["image_size"]), {})[r["runtime"]] = r
    out = []
    for (backbone, size), found in by_key.items():
        floats = [found[k] for k in ("litert", "tf") if k in found]
        if "litert-int8" not in found or not floats:
            continue
        q, f = found["litert-int8"], max(floats, key=lambda r: r["images_per_second"])
        out.append({"backbone": q.get("backbone_name") or backbone, "image_size": size, "float_runtime": f["runtime"], "float_best": f["best_accuracy"],
                    "int8_best": q["best_accuracy"], "loss_points": round(100 * (f["best_accuracy"] - q["best_accuracy"]), 2),
                    "int8_speedup": round(q["images_per_second"] / f["images_per_second"], 2)})  # fmt: skip
    return out


def int8_loss_from_runs(manifests: list[Any]) -> list[dict[str, Any]]:
    """The same comparison on full training and test sets, from trained runs: pairs of runs on every image
    with the same dataset, backbone, sizes and head, one with a float runtime and one with ``litert-int8``."""
    full = [m for m in manifests if m.limit is None and not m.finetuned]
    out = []
    for q in (m for m in full if m.runtime == "litert-int8"):
        twins = [m for m in full if m.runtime in ("tf", "litert") and (m.dataset_fingerprint, m.backbone_identity, tuple(m.image_sizes), m.head) ==
                 (q.dataset_fingerprint, q.backbone_identity, tuple(q.image_sizes), q.head) and (m.train_views, m.tta) == (q.train_views, q.tta)]  # fmt: skip
        if twins:
            f = max(twins, key=lambda m: m.created)
            out.append({"backbone": q.backbone_name, "image_sizes": ",".join(map(str, q.image_sizes)), "protocol": q.protocol or "custom",
                        "float_run": f.run_id, "float_accuracy": f.metrics.test_accuracy, "int8_run": q.run_id,
                        "int8_accuracy": q.metrics.test_accuracy, "loss_points": round(100 * (f.metrics.test_accuracy - q.metrics.test_accuracy), 2),
                        "test_images": q.metrics.test_images})  # fmt: skip
    return out
