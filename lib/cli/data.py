"""CLI commands for data and features: ``data``, ``extract`` and ``backbones``.

python -m lib data --source ../shared/data/cifar10-jpeg.tar.gz
python -m lib extract --source ... --backbone ... --image-size 128 --split all --json
python -m lib backbones
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from lib import bounds, config
from lib.analysis.benchmark import DEFAULT_LIMIT, run_benchmark
from lib.bounds import flag
from lib.cli.common import (
    Bar,
    LazyBar,
    add_backbone,
    add_common,
    add_engine,
    add_source,
    concrete_runtime,
    load_with_progress,
    ray_options,
)
from lib.config import FLIP, ORIGINAL
from lib.models.specs import local_backbones
from lib.pipeline.engines import open_engine
from lib.pipeline.features import ensure_features
from lib.process import peak_rss_mb
from lib.runtimes import selectable
from lib.runtimes.backbones import REGISTRY, resolve_backbone


def add_commands(sub: Any) -> None:
    """Register ``data``, ``extract`` and ``backbones``."""
    p = sub.add_parser("data", help="fetch, verify and cache a data source; print a summary")
    add_source(p)
    add_common(p)

    p = sub.add_parser("extract", help="compute or load cached features")
    add_source(p)
    add_backbone(p)
    p.add_argument("--split", default="all", help="train, test, or all")
    p.add_argument("--view", choices=[ORIGINAL, FLIP, "both"], default=ORIGINAL, help="image view(s) to extract")
    add_engine(p)
    add_common(p)

    p = sub.add_parser("backbones", help="list the backbone registry")
    add_common(p)

    p = sub.add_parser("benchmark", help="speed versus accuracy of each (backbone x input size x runtime)")
    add_source(p)
    p.add_argument(
        "--backbone",
        action="append",
        default=None,
        help="repeat for several; default: every backbone in ../shared/models",
    )
    p.add_argument("--image-sizes", default="96,128,160,192,224", help="comma-separated input sizes")
    p.add_argument(
        "--runtimes",
        default=",".join(selectable()),
        help=f"comma-separated runtimes (default: {','.join(selectable())})",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--limit",
        type=flag("bench_limit"),
        default=None,
        help="images per class of train and test for the accuracies (default 50)",
    )
    group.add_argument("--full", action="store_true", help="every image of train and test for the accuracies")
    p.add_argument(
        "--convert-workers",
        type=flag("convert_workers"),
        default=os.cpu_count() or 1,
        help="LiteRT conversions run first, this many processes at a time (the converter uses one core); default: "
        "every core",
    )
    add_common(p)


def cmd_data(args: argparse.Namespace) -> dict[str, Any]:
    """``data``: convert a source into the cache and summarise it."""
    ds = load_with_progress(args.source, args.layout)
    summary = ds.summary()
    lines = [f"{ds.source}  ({ds.kind}, fingerprint {ds.fingerprint}, images {'x'.join(map(str, ds.image_shape))})"]
    header = f"{'class':<14}" + "".join(f"{s:>9}" for s in ds.splits)
    lines.append(header)
    for i, cls in enumerate(ds.classes):
        lines.append(f"{cls:<14}" + "".join(f"{ds.counts[s][i]:>9}" for s in ds.splits))
    lines.append(f"{'total':<14}" + "".join(f"{ds.size(s):>9}" for s in ds.splits))
    if any(ds.skipped.values()):
        lines.append("skipped unreadable files: " + ", ".join(f"{s}={n}" for s, n in ds.skipped.items()))
    summary["_text"] = "\n".join(lines)
    return summary


def splits_for(arg: str, available: tuple[str, ...]) -> list[str]:
    """Expand ``--split all`` into the dataset's splits."""
    return list(available) if arg == "all" else [arg]


def cmd_extract(args: argparse.Namespace) -> dict[str, Any]:
    """``extract``: compute or load features for the requested splits and views."""

    t0 = time.perf_counter()
    ds = load_with_progress(args.source, args.layout)
    spec = resolve_backbone(args.backbone)
    size = args.image_size or spec.default_size()
    views = [ORIGINAL, FLIP] if args.view == "both" else [args.view]
    jobs = [(s, v) for s in splits_for(args.split, ds.splits) for v in views]
    runtime, choice = concrete_runtime(args, spec, size, ds, jobs, args.limit)
    artifacts: list[dict[str, Any]] = []
    with open_engine(ray_options(args), args.layout) as engine:
        for split, view in jobs:
            bar = LazyBar(f"{split}/{view}@{size}")  # drawn only if something is extracted
            try:
                result = ensure_features(
                    ds,
                    split,
                    spec,
                    args.layout,
                    size,
                    view,
                    args.limit,
                    args.batch_size,
                    bar.extract_progress,
                    runtime,
                    engine,
                )
            finally:
                bar.close()
            stats = engine.last_stats if not result.cache_hit else None
            artifacts.append(
                {
                    "split": split,
                    "view": view,
                    "images": int(result.features.shape[0]),
                    "cache_hit": result.cache_hit,
                    "cache_path": str(result.path),
                    "seconds": round(result.seconds, 4),
                    "extract_seconds": round(result.extract_seconds, 3),
                    **({"ray": stats.as_dict()} if stats is not None else {}),
                }
            )
    seconds = time.perf_counter() - t0
    images = sum(a["images"] for a in artifacts)
    dim = int(get_dim(artifacts))
    return {
        "peak_rss_mb": peak_rss_mb(),
        "source": ds.source,
        "dataset_fingerprint": ds.fingerprint,
        "backbone": spec.handle,
        "runtime": runtime,
        **({"runtime_choice": choice} if choice else {}),
        "engine": args.engine,
        "image_size": size,
        "splits": [a["split"] for a in artifacts],
        "images": images,
        "feature_dim": dim,
        "seconds": round(seconds, 4),
        "images_per_second": round(images / seconds, 1) if seconds else None,
        "cache_hit": all(a["cache_hit"] for a in artifacts),
        "cache_path": artifacts[0]["cache_path"]
        if len(artifacts) == 1
        else str(Path(artifacts[0]["cache_path"]).parent),
        "artifacts": artifacts,
    }


def get_dim(artifacts: list[dict[str, Any]]) -> int:
    """Feature dimension read from the first artifact's header (memory-mapped, cheap)."""
    import numpy as np

    return int(np.load(artifacts[0]["cache_path"], mmap_mode="r").shape[1])


def cmd_backbones(args: argparse.Namespace) -> dict[str, Any]:
    """``backbones``: the registry as a table."""

    rows = [
        {
            "name": s.name,
            "family": s.family,
            "input_size": s.native_size,
            "feature_dim": s.feature_dim,
            "handle": s.handle,
        }
        for s in REGISTRY.values()
    ]
    text = "\n".join(
        f"{r['name']:<24}{r['family']:<16}{r['input_size']!s:>5}{r['feature_dim']!s:>6}  {r['handle']}" for r in rows
    )
    return {"backbones": rows, "default": config.DEFAULT_BACKBONE, "_text": text}


def cmd_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """``benchmark``: measure the grid (rows already measured on this machine are reused)."""

    sizes = list(bounds.sizes("--image-sizes", args.image_sizes))
    runtimes = list(bounds.names("--runtimes", args.runtimes, selectable()))
    backbones = args.backbone or local_backbones()
    bars: dict[str, Bar] = {}

    def report(done: int, total: int, what: str) -> None:
        phase = "convert" if what.startswith("converted") else "benchmark"
        bar = bars.get(phase) or bars.setdefault(phase, Bar(phase, unit="model" if phase == "convert" else "config"))
        bar.bar.set_postfix_str(what)
        bar.update_to(done, total)

    try:
        limit = None if args.full else (args.limit or DEFAULT_LIMIT)
        result = run_benchmark(
            args.source, backbones, sizes, runtimes, args.layout, limit, report, args.convert_workers
        )
    finally:
        for bar in bars.values():
            bar.close()
    header = (
        f"{'backbone':<44}{'size':>5} "
        f"{'runtime':<12}{'load s':>8}{'p50 ms':>8}{'p95 ms':>8}{'img/s':>8}{'MB':>7}{'RSS MB':>8}"
    )
    probe = result.get("peak_probe") or {}
    lines = [
        f"{result['machine']['cpu']}, {result['machine']['cores']} cores; accuracies on {result['subset']}"
        + (f"; peak probe {probe['gflops']:,.0f} GFLOP/s ({probe['method']})" if probe else ""),
        header + f"{'linear':>8}{'best':>8}{'GFLOP/s':>9}{'peak':>7}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['backbone_name'][:43]:<44}{r['image_size']:>5} "
            f"{r['runtime']:<12}{r['load_seconds']:>8.1f}{r['latency_ms_p50']:>8.2f}{r['latency_ms_p95']:>8.2f}"
            f"{r['images_per_second']:>8.1f}{(r['model_mb'] or 0):>7.1f}{(r['peak_rss_mb'] or 0):>8.0f}"
            f"{r['linear_accuracy']:>8.2%}{r['best_accuracy']:>8.2%}{(r.get('gflops') or 0):>9.1f}"
            f"{(r.get('peak_fraction') or 0):>7.1%}"
        )
    result["_text"] = "\n".join(lines)
    return result


HANDLERS = {"data": cmd_data, "extract": cmd_extract, "backbones": cmd_backbones, "benchmark": cmd_benchmark}
