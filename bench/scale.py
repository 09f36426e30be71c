"""Scaling benchmark: streaming conversion of a big image folder, and the local engine against the Ray engine.

    python bench/scale.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --big-folder /tmp/big200k --images 200000

It prints, with this machine's CPU model and core count:
1. conversion of a synthetic image folder of --images images (written by bench/make_big_folder.py if the
   folder is missing): images/s and the converting process's peak RSS (a child process with a fresh cache,
   so the peak is its own);
2. extraction of the whole test split of --source with the local engine and with the Ray engine on
   --workers local workers (Ray started by the benchmark, 1 CPU per worker): images/s of each, their ratio,
   Ray's fixed start-up cost (start Ray, start the workers, load the backbone in each), and the driver's
   own busy time (its ceiling in images/s);
3. a projection, from the measured Ray rate per worker, of the time to extract 1M and 10M images on
   N workers, with the assumptions it rests on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, data_args

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CONVERT_CHILD = """
import json, sys, time
from lib.process import peak_rss_mb
from lib.data.sources import load_dataset
from lib.store.layout import CacheLayout
stages = {}
t0 = time.perf_counter()
def progress(done, total, stage):
    stages.setdefault(stage, time.perf_counter())
ds = load_dataset(sys.argv[1], CacheLayout(sys.argv[2]), progress=progress)
seconds = time.perf_counter() - t0
marks = {k: round(v - t0, 2) for k, v in stages.items()}
images = sum(ds.size(s) for s in ds.splits) + sum(ds.skipped.values())
print(json.dumps({"images": images, "stored": sum(ds.size(s) for s in ds.splits), "side": ds.image_shape[0], "seconds":
seconds,
                  "images_per_second": images / seconds, "peak_rss_mb": peak_rss_mb(), "stage_starts_s": marks,
                  "array_mb": sum(ds.images(s).nbytes for s in ds.splits) / 1e6}))
"""


def convert_big_folder(folder: Path, images: int, cache: Path) -> dict[str, Any]:
    """Convert ``folder`` (made first if missing) in a child process with an empty cache."""
    if not folder.exists():
        print(f"writing {images:,} synthetic images to {folder} ...", file=sys.stderr)
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "make_big_folder.py"), str(folder), "--images", str(images)],
            check=True,
        )
    proc = subprocess.run(
        [sys.executable, "-c", CONVERT_CHILD, str(folder), str(cache)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def engines(source: str, backbone: str, size: int, workers: int, cache: Path) -> dict[str, Any]:
    """The test split through the local engine, then through the Ray engine, each into a fresh feature cache."""
    import numpy as np

    from lib.data.sources import load_dataset
    from lib.pipeline.engines import LocalEngine
    from lib.pipeline.features import ensure_features
    from lib.pipeline.ray_engine import RayEngine, RayOptions
    from lib.runtimes.backbones import load_backbone, resolve_backbone
    from lib.store.layout import CacheLayout

    ds = load_dataset(source, CacheLayout(cache / "data"))
    spec = resolve_backbone(backbone)
    model = load_backbone(spec)
    model.embed(
        np.asarray(ds.images("test")[:64]), size
    )  # warm up the traced function, as a Ray worker's first shard does
    local_layout = CacheLayout(cache / "local")
    local = ensure_features(ds, "test", spec, local_layout, size, engine=LocalEngine(local_layout, model))
    local_rate = local.features.shape[0] / local.extract_seconds
    t0 = time.perf_counter()
    ray_layout = CacheLayout(cache / "ray-engine")
    with RayEngine(RayOptions(workers=workers), ray_layout) as engine:
        result = ensure_features(ds, "test", spec, ray_layout, size, engine=engine)
        stats = engine.last_stats
    total = time.perf_counter() - t0
    diff = float(np.abs(np.asarray(result.features) - np.asarray(local.features)).max())
    ray_rate = stats.images / stats.extract_seconds
    return {
        "images": int(local.features.shape[0]),
        "local_images_per_second": local_rate,
        "ray_images_per_second": ray_rate,
        "ratio": ray_rate / local_rate,
        "ray_startup_seconds": stats.startup_seconds,
        "ray_total_seconds": total,
        "ray_driver_busy_seconds": stats.driver_seconds,
        "driver_ceiling_images_per_second": stats.images / stats.driver_seconds if stats.driver_seconds else None,
        "ray_per_worker_images_per_second": ray_rate / workers,
        "workers": workers,
        "max_abs_difference": diff,
    }


def projection(
    per_worker: float, startup: float, driver_ceiling: float | None, worker_counts: list[int]
) -> list[dict[str, Any]]:
    rows = []
    for n_images in (1_000_000, 10_000_000):
        for w in worker_counts:
            rate = per_worker * w
            if driver_ceiling:
                rate = min(rate, driver_ceiling)
            rows.append(
                {
                    "images": n_images,
                    "workers": w,
                    "hours": (startup + n_images / rate) / 3600,
                    "images_per_second": rate,
                }
            )
    return rows


def main() -> None:
    from lib.process import machine_info

    parser = data_args(
        argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter),
        cache_dir=False,
    )
    parser.add_argument("--big-folder", type=Path, default=Path(tempfile.gettempdir()) / "tlx-big200k")
    parser.add_argument(
        "--images", type=int, default=200_000, help="images in the synthetic folder (when it is written)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--project-workers", default="8,32,128", help="worker counts for the 1M/10M projection")
    parser.add_argument("--skip-convert", action="store_true")
    parser.add_argument("--skip-engines", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    machine = machine_info()
    out: dict[str, Any] = {"machine": machine, "command": " ".join(sys.argv)}
    with tempfile.TemporaryDirectory(prefix="tlx-scale-") as tmp:
        if not args.skip_convert:
            out["convert"] = convert_big_folder(args.big_folder, args.images, Path(tmp) / "convert")
        if not args.skip_engines:
            out["engines"] = engines(args.source, args.backbone, args.image_size, args.workers, Path(tmp) / "engines")
    print(f"{machine['cpu']}, {machine['cores']} cores")
    if "convert" in out:
        c = out["convert"]
        print(
            f"convert {c['images']:,} images ({args.big_folder}) -> {c['side']}x{c['side']} arrays of "
            f"{c['array_mb']:,.0f} MB: {c['images_per_second']:,.0f} img/s, {c['seconds']:,.1f} s, peak RSS "
            f"{c['peak_rss_mb']:,.0f} MB; stages start at {c['stage_starts_s']}"
        )
    if "engines" in out:
        e = out["engines"]
        print(
            f"test split, {e['images']:,} images @ {args.image_size}px: local {e['local_images_per_second']:,.1f} "
            f"img/s, Ray ({e['workers']} workers) {e['ray_images_per_second']:,.1f} img/s = {e['ratio']:.2f}x local; "
            f"Ray start-up {e['ray_startup_seconds']:.1f} s; driver busy {e['ray_driver_busy_seconds']:.1f} s "
            f"(ceiling {e['driver_ceiling_images_per_second'] or 0:,.0f} img/s); max |difference| "
            f"{e['max_abs_difference']:.2e}"
        )
        counts = [int(w) for w in args.project_workers.split(",")]
        out["projection"] = projection(
            e["ray_per_worker_images_per_second"],
            e["ray_startup_seconds"],
            e["driver_ceiling_images_per_second"],
            counts,
        )
        print(
            "projection (per-worker rate measured here; workers = 1 core of this CPU each; driver ceiling as measured):"
        )
        for row in out["projection"]:
            print(
                f"  {row['images']:>10,} images on {row['workers']:>4} workers: {row['hours']:6.2f} h "
                f"({row['images_per_second']:,.0f} img/s)"
            )
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
