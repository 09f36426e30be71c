"""Reading stored speed-versus-accuracy results: merging them per machine, the Pareto front, picking within a latency
budget, and what int8 costs. Pure functions over the stored rows (no TensorFlow).

    groups = merged_results(stored_benchmarks(layout))      # one group per (dataset, subset, machine, version)
    front = pareto_front([(r["images_per_second"], r["best_accuracy"]) for r in rows])
    pick_within_budget(rows, budget_ms=20.0)
"""

from __future__ import annotations

from typing import Any

from lib.models.specs import resolve_backbone
from lib.runtimes import effective, registry
from lib.store.atomic import read_json
from lib.store.layout import CacheLayout


def config_key(backbone: str, size: int, runtime: str) -> tuple[str, int, str]:
    """How a row is matched to a configuration: handle, size (0 for a .tflite file's own) and the runtime that runs."""

    spec = resolve_backbone(backbone)
    actual = effective(spec, runtime)
    return spec.handle, (int(size) if actual.selectable else 0), actual.name


def row_key(row: dict[str, Any]) -> tuple[Any, Any, Any]:
    """:func:`config_key` of a stored row."""
    runtime = registry().get(str(row.get("runtime")))
    return (
        row.get("backbone"),
        (row.get("image_size") if runtime is None or runtime.selectable else 0),
        row.get("runtime"),
    )


def missing_configurations(
    configs: list[tuple[str, int, str]], rows: list[dict[str, Any]]
) -> list[tuple[str, int, str]]:
    """The configurations no row measures yet."""
    done = {row_key(r) for r in rows}
    return [c for c in configs if config_key(*c) not in done]


def stored_benchmarks(layout: CacheLayout) -> list[dict[str, Any]]:
    """Every stored benchmark result with at least one row, newest first (damaged files are skipped)."""

    out = []
    for path in layout.benchmark_files():
        data = read_json(path)
        if (
            isinstance(data, dict)
            and isinstance(data.get("rows"), list)
            and data["rows"]
            and isinstance(data.get("machine"), dict)
        ):
            rows = [
                r
                for r in data["rows"]
                if isinstance(r, dict) and {"backbone", "image_size", "runtime", "best_accuracy"} <= set(r)
            ]
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
    runtimes = registry()
    exact = {name for name, rt in runtimes.items() if rt.exact and rt.selectable}
    quantized = {name for name, rt in runtimes.items() if rt.quantized}
    out = []
    for (backbone, size), found in by_key.items():
        floats = [r for name, r in found.items() if name in exact]
        ints = [r for name, r in found.items() if name in quantized]
        if not ints or not floats:
            continue
        f = max(floats, key=lambda r: r["images_per_second"])
        for q in sorted(ints, key=lambda r: r["runtime"]):  # litert-int8 and litert-mixed, one row each
            out.append(
                {
                    "backbone": q.get("backbone_name") or backbone,
                    "image_size": size,
                    "float_runtime": f["runtime"],
                    "int8_runtime": q["runtime"],
                    "float_best": f["best_accuracy"],
                    "int8_best": q["best_accuracy"],
                    "loss_points": round(100 * (f["best_accuracy"] - q["best_accuracy"]), 2),
                    "int8_speedup": round(q["images_per_second"] / f["images_per_second"], 2),
                }
            )
    return out


def _like(m: Any) -> tuple[Any, ...]:
    """What two runs must share to compare their runtimes: dataset, every backbone at its sizes, head, views."""
    return (
        m.dataset_fingerprint,
        m.backbone_identity,
        tuple(m.image_sizes),
        str(m.extra_backbones),
        m.head,
        m.train_views,
        m.tta,
    )


def int8_loss_from_runs(manifests: list[Any]) -> list[dict[str, Any]]:
    """The same comparison on full training and test sets, from trained runs: pairs of runs on every image
    with the same dataset, backbone, sizes and head, one with a float runtime and one with ``litert-int8``."""
    runtimes = registry()
    # runs on the dataset's own labels and every image only: an exclude list or label fixes train on other data
    full = [
        m
        for m in manifests
        if m.limit is None and not m.finetuned and m.runtime in runtimes and not m.excluded and not m.relabel
    ]
    out = []
    for q in (m for m in full if runtimes[m.runtime].quantized):
        twins = [m for m in full if runtimes[m.runtime].exact and _like(m) == _like(q)]
        if twins:
            f = max(twins, key=lambda m: m.created)
            out.append(
                {
                    "backbone": q.backbone_name,
                    "image_sizes": ",".join(map(str, q.image_sizes)),
                    "protocol": q.protocol or "custom",
                    "int8_runtime": q.runtime,
                    "float_run": f.run_id,
                    "float_accuracy": f.metrics.test_accuracy,
                    "int8_run": q.run_id,
                    "int8_accuracy": q.metrics.test_accuracy,
                    "loss_points": round(100 * (f.metrics.test_accuracy - q.metrics.test_accuracy), 2),
                    "test_images": q.metrics.test_images,
                }
            )
    return out


MAX_FAST_LOSS = 0.5  # points below the float twin on the full sets: what "int8 without the loss" allows


def fast_choice(
    full: list[dict[str, Any]], subset_loss: list[dict[str, Any]], max_loss: float = MAX_FAST_LOSS
) -> dict[str, Any] | None:
    """The quantised configuration to offer as the fast choice: among full-set pairs (:func:`int8_loss_from_runs`)
    within ``max_loss`` points of their float twin, the one whose runtime is measured fastest against float on this
    machine (:func:`int8_loss`'s ``int8_speedup``, same backbone, size and runtime); None if none qualifies."""
    speed = {(r["backbone"], str(r["image_size"]), r["int8_runtime"]): r["int8_speedup"] for r in subset_loss}
    found = [
        r | {"int8_speedup": speed[key]}
        for r in full
        if r["loss_points"] <= max_loss and (key := (r["backbone"], r["image_sizes"], r["int8_runtime"])) in speed
    ]
    return max(found, key=lambda r: r["int8_speedup"]) if found else None
