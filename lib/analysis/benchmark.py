"""Speed versus accuracy: measure each (backbone x input size x runtime) the user asks for.

For every configuration one row: load-or-convert time, single-image latency (p50/p95 over at least 50
calls after warm-up), throughput at batch 64, model size on disk, peak memory while measuring, and the
test accuracy of two heads on its features: a linear probe (:func:`linear_probe`, original view), and the
``best`` preset (MLP, flips, TTA).
Accuracies use the first ``limit`` images per class of train and test (``None``: every image) and the
rows say so. Results are an artifact keyed by the grid, the library versions and the machine, rewritten
atomically after every row: an interrupted benchmark keeps the rows it finished, and a rerun skips them.

    result = run_benchmark("../shared/data/cifar10-jpeg.tar.gz", ["../shared/models/..."], [96, 128],
                           selectable(), layout, limit=100, progress=print)
    result["rows"][0]["images_per_second"], result["machine"]["cpu"]
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lib.analysis.benchmark_results import missing_configurations
from lib.analysis.flops import matmul_gflops, multiply_adds
from lib.config import ORIGINAL, VIEWS
from lib.data.sources import load_dataset
from lib.models.protocols import PROTOCOLS
from lib.models.specs import local_backbones, resolve_backbone
from lib.pipeline.engines import LocalEngine
from lib.pipeline.training import fit_head, gather_features
from lib.process import library_versions, machine_info, peak_rss_mb
from lib.runtimes import DEFAULT_RUNTIME, effective, get_runtime, registry, runtime_identity, selectable
from lib.runtimes.backbones import load_backbone
from lib.runtimes.litert import LiteRTRuntime
from lib.runtimes.preconvert import preconvert
from lib.store.atomic import read_json, write_json_atomic
from lib.store.layout import CacheLayout, artifact_key

BENCHMARK_VERSION = 2  # 2: tf/litert share heads when their features agree
LATENCY_CALLS = 50  # single-image calls timed after warm-up
THROUGHPUT_BATCH = 64
THROUGHPUT_SECONDS = 1.0  # at least this long (and 4 batches) at batch 64
LINEAR_PROBE_C = 0.1  # inverse L2 strength of the linear probe
SHARED_FEATURES_TOLERANCE = 1e-4  # max relative difference for tf and litert to share heads
DEFAULT_LIMIT = (
    50  # images per class of each split for the accuracy columns, unless --full (keeps the default grid under 30 min)
)


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
    multiply_adds_m: float | None = (
        None  # millions of multiply-adds per image, counted from the float LiteRT graph (lib.analysis.flops)
    )
    gflops: float | None = None  # 2 x multiply-adds x images/s: the arithmetic rate this runtime reached at batch 64
    peak_fraction: float | None = (
        None  # gflops / the machine's float32 matrix-multiply rate (the benchmark's peak probe)
    )


def benchmark_key(grid: dict[str, Any], machine: dict[str, Any], versions: dict[str, str]) -> str:
    """A hash of the grid, the machine and the library versions."""
    return artifact_key({"grid": grid, "machine": machine, "versions": versions, "v": BENCHMARK_VERSION})


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, so each row reports its own peak
    except OSError:
        pass


def _model_mb(spec: Any, loaded: Any) -> float | None:
    """Size on disk of what runs: a converted model's file, else the local SavedModel or .tflite (None for a hub
    download)."""
    converted = getattr(loaded, "path", None)
    path = Path(converted) if converted is not None else (Path(spec.handle) if Path(spec.handle).exists() else None)
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
    layout: CacheLayout
    limit: int | None
    tf_models: dict[str, tuple[Any, float]] = dataclasses.field(default_factory=dict)
    accuracies: dict[tuple[str, int, str], _Accuracy] = dataclasses.field(default_factory=dict)
    convert_seconds: dict[tuple[str, int, str], float] = dataclasses.field(
        default_factory=dict
    )  # converted ahead, in parallel
    macs: dict[tuple[str, int], float | None] = dataclasses.field(default_factory=dict)
    peak_gflops: float | None = None  # measured once, before the first row (lib.analysis.flops.matmul_gflops)

    def multiply_adds(self, spec: Any, size: int, loaded: Any) -> float | None:
        """Multiply-adds per image of ``spec`` at ``size``, from its float LiteRT graph (the loaded one if it is a
        LiteRT
        model, else converted once); None if it cannot be counted."""
        key = (spec.handle, size)
        if key not in self.macs:
            try:
                path = getattr(loaded, "path", None) or LiteRTRuntime(quantized=False).convert(
                    spec, size, self.ds, self.layout, lambda: self.tf_model(spec)[0]
                )
                self.macs[key] = float(multiply_adds(path))
            # a graph that cannot be converted or read: the row has no arithmetic figures
            except Exception:  # noqa: BLE001
                self.macs[key] = None
        return self.macs[key]

    def tf_model(self, spec: Any) -> tuple[Any, float]:
        """The TF-loaded backbone and the seconds its (first) load took."""
        if spec.handle not in self.tf_models:
            self.tf_models.clear()  # rows come backbone by backbone: keep one TF model in memory, not all of them

            t0 = time.perf_counter()
            loaded = load_backbone(spec)
            self.tf_models[spec.handle] = (loaded, time.perf_counter() - t0)
        return self.tf_models[spec.handle]


def _family(runtime: str) -> str:
    """Runtimes whose features must agree within the tolerance share a family (the exact ones: tf and float LiteRT)."""
    return "float" if registry()[runtime].exact else runtime


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a64 - b64).max() / max(float(np.abs(b64).max()), 1e-12))


def _accuracies(
    session: BenchmarkSession, spec: Any, size: int, runtime: str, loaded: Any, batch_features: np.ndarray
) -> _Accuracy:
    """Train the linear probe and the best preset on this runtime's features of the subset."""

    ds = session.ds
    common = (
        (size,),
        VIEWS,
        session.layout,
        session.limit,
        THROUGHPUT_BATCH,
        None,
        LocalEngine(session.layout, loaded),
        runtime,
    )
    train = gather_features(ds, spec, "train", *common)
    test = gather_features(ds, spec, "test", *common)
    x_train, x_test = train.parts[(size, ORIGINAL)], test.parts[(size, ORIGINAL)]
    linear = float((linear_probe(x_train, train.labels).predict(x_test) == test.labels).mean())
    best = PROTOCOLS["best"]
    tuned = fit_head(train, test, (size,), best.train_views, best.tta, best.head, len(ds.classes))
    return _Accuracy(
        runtime,
        batch_features,
        linear,
        float((tuned.probs.argmax(1) == test.labels).mean()),
        len(train.labels),
        len(test.labels),
        int(x_train.shape[1]),
    )


def linear_probe(x: np.ndarray, y: np.ndarray) -> Any:
    """The standard linear probe: multinomial logistic regression (L-BFGS, C=0.1) on standardised features.

    scikit-learn's, not a Keras head: it is deterministic and fits a few thousand rows in well under a second,
    where a Keras fit pays about 3 s of set-up whatever the size, which the default grid cannot afford 80 times.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=LINEAR_PROBE_C, max_iter=1000)).fit(
        np.asarray(x, np.float32), y
    )


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

    spec = resolve_backbone(backbone)
    rt = effective(spec, runtime)
    actual = rt.name
    _reset_peak_rss()
    t0 = time.perf_counter()
    if rt.any_size:
        loaded, load_seconds = session.tf_model(spec)
    else:
        loaded = rt.load(spec, size, session.ds, session.layout, lambda: session.tf_model(spec)[0])
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
    macs = session.multiply_adds(spec, size, loaded)
    gflops = 2.0 * macs * ips / 1e9 if macs else None
    return BenchmarkRow(
        backbone=spec.handle,
        backbone_name=spec.name,
        image_size=size,
        runtime=actual,
        load_seconds=round(load_seconds, 3),
        latency_ms_p50=round(p50, 3),
        latency_ms_p95=round(p95, 3),
        images_per_second=round(ips, 1),
        model_mb=_model_mb(spec, loaded),
        peak_rss_mb=peak_rss_mb(),
        linear_accuracy=accuracy.linear,
        best_accuracy=accuracy.best,
        n_train=accuracy.n_train,
        n_test=accuracy.n_test,
        feature_dim=accuracy.feature_dim,
        accuracy_features=accuracy.runtime,
        feature_max_rel_diff=rel,
        multiply_adds_m=round(macs / 1e6, 3) if macs else None,
        gflops=round(gflops, 1) if gflops else None,
        peak_fraction=round(gflops / session.peak_gflops, 3) if gflops and session.peak_gflops else None,
    )


def grid_configurations(backbones: list[str], sizes: list[int], runtimes: list[str]) -> list[tuple[str, int, str]]:
    """Every (backbone, size, runtime) to measure; a ``.tflite`` backbone once, at its own size. Within a (backbone,
    size) the runtimes go in their ``bench_order``: the faster exact one extracts the accuracy subset, the other checks
    it agrees."""

    chosen = sorted((get_runtime(r) for r in runtimes), key=lambda rt: rt.bench_order)
    out: list[tuple[str, int, str]] = []
    for backbone in backbones:
        spec = resolve_backbone(backbone)
        if spec.fixed_runtime:
            out.append(
                (backbone, int(spec.native_size or 0), DEFAULT_RUNTIME)
            )  # 0: its own fixed size, read when loaded
            continue
        out.extend((backbone, int(size), rt.name) for size in sizes for rt in chosen)
    return out


DEFAULT_SIZES = (96, 128, 160, 192, 224)


def default_grid() -> list[tuple[str, int, str]]:
    """Every backbone in ``../shared/models`` at every default size with every runtime."""

    return grid_configurations(local_backbones(), list(DEFAULT_SIZES), list(selectable()))


def run_benchmark(
    source: str,
    backbones: list[str],
    sizes: list[int],
    runtimes: list[str],
    layout: CacheLayout,
    limit: int | None = DEFAULT_LIMIT,
    progress: Callable[[int, int, str], None] | None = None,
    convert_workers: int = 1,
) -> dict[str, Any]:
    """Measure the (backbones x sizes x runtimes) grid; see :func:`run_configurations`."""
    return run_configurations(
        source, grid_configurations(backbones, sizes, runtimes), layout, limit, progress, convert_workers
    )


def run_configurations(
    source: str,
    configs: list[tuple[str, int, str]],
    layout: CacheLayout,
    limit: int | None = DEFAULT_LIMIT,
    progress: Callable[[int, int, str], None] | None = None,
    convert_workers: int = 1,
) -> dict[str, Any]:
    """Measure ``configs``, resuming finished rows; returns ``{"rows": [...], "machine": ..., ...}``.

    ``progress(done, total, label)`` counts the configurations still to measure in this call (rows read back
    from an earlier, interrupted run are not counted), so an ETA from it is honest. With ``convert_workers``
    above 1, the LiteRT conversions run first, that many processes at a time (:func:`preconvert`); the
    progress then counts the conversions first (labels "converted ..."), then the measurements.
    """

    ds = load_dataset(source, layout)
    machine, versions = machine_info(), library_versions()

    # keyed by what each runtime is (its converter, calibration, quantisation policy), not only its name: a changed
    # recipe under the same name is measured again, never answered from the old one's rows
    identities = sorted({runtime_identity(resolve_backbone(b), r, ds) for b, _s, r in configs})
    grid = {"dataset": ds.fingerprint, "configs": [list(c) for c in configs], "limit": limit, "runtimes": identities}
    path = layout.benchmark_file(benchmark_key(grid, machine, versions))
    saved = read_json(path)
    rows: list[dict[str, Any]] = list(saved.get("rows", [])) if isinstance(saved, dict) else []
    result: dict[str, Any] = {
        "source": source,
        "dataset": ds.fingerprint,
        "limit": limit,
        "machine": machine,
        "versions": versions,
        "rows": rows,
        "benchmark_version": BENCHMARK_VERSION,
        "subset": f"first {limit} images per class of train and of test" if limit else "every image of train and test",
    }
    todo = missing_configurations(configs, rows)
    session = BenchmarkSession(ds, layout, limit)
    if todo:
        session.peak_gflops = matmul_gflops()  # before any model loads, so the probe has the cores to itself
        result["peak_probe"] = {
            "gflops": round(session.peak_gflops, 1),
            "method": "numpy float32 1024x1024 matrix product, best over 1 s, every core",
        }
    if convert_workers > 1:
        session.convert_seconds = preconvert(source, ds, todo, layout, convert_workers, progress)
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
