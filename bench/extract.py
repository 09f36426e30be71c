"""Extraction benchmark: pipeline vs bare forward pass on the same batches, full-run peak RSS, cache-hit time.

    python bench/extract.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --sizes 128,224

For each size it prints:
- images/s of the full pipeline (uint8 batch -> cast -> resize -> backbone) and of the bare
  forward pass (backbone on the same batch, already resized, resize not timed), batch by batch;
- images/s, wall time and peak RSS of `python -m lib extract --split all` over every image,
  run in a child process with a fresh cache (peak RSS is the child's own VmHWM);
- the wall time of repeating that command, answered from the cache.
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

import numpy as np
from _common import ROOT, CacheLayout  # (puts the project on sys.path)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def same_batches(
    source: str, backbone: str, size: int, batches: int, batch_size: int, cache_dir: Path
) -> dict[str, float]:
    """Time pipeline and bare forward pass alternately on identical batches."""
    import tensorflow as tf

    from lib.data.sources import load_dataset
    from lib.runtimes.backbones import load_backbone, resolve_backbone

    ds = load_dataset(source, CacheLayout(cache_dir))
    model = load_backbone(resolve_backbone(backbone))
    images = ds.images("train")
    warm = np.asarray(images[:batch_size])
    model.embed(warm, size)
    model.forward(tf.image.resize(warm.astype(np.float32) / 255.0, (size, size)).numpy())
    pipe_t = bare_t = 0.0
    n = 0
    for b in range(batches):
        batch = np.asarray(images[(b + 1) * batch_size : (b + 2) * batch_size])
        resized = tf.image.resize(
            batch.astype(np.float32) / 255.0, (size, size)
        ).numpy()  # untimed: the bare pass gets it for free
        order = (0, 1) if b % 2 == 0 else (1, 0)  # alternate, so neither side always runs on a warmer cache
        for which in order:
            t0 = time.perf_counter()
            if which == 0:
                model.embed(batch, size)
                pipe_t += time.perf_counter() - t0
            else:
                model.forward(resized)
                bare_t += time.perf_counter() - t0
        n += len(batch)
    return {"images": n, "pipeline_ips": n / pipe_t, "bare_ips": n / bare_t, "ratio": bare_t / pipe_t}


def run_cli(args: list[str]) -> tuple[dict, float, float]:
    """Run `python -m lib ...`; returns its JSON, wall seconds and its own peak RSS in MB (VmHWM, reported by the
    CLI)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lib", *args, "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    out = proc.stdout.read() if proc.stdout else b""
    proc.wait()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"extract failed with {proc.returncode}")
    # Not wait4's ru_maxrss: a forked child's count starts with this (TensorFlow-sized) parent's pages.
    result = json.loads(out)
    return result, wall, float(result.get("peak_rss_mb") or float("nan"))


def main() -> int:
    """Run the benchmark and print a table."""
    from lib.process import machine_info

    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--sizes", default="128,224")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=12, help="batches in the same-batch comparison")
    parser.add_argument(
        "--limit", type=int, default=None, help="first N per class for the full run (default: every image)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        cache = Path(tmp)
        print(
            f"machine: {machine_info()['cpu']}, {os.cpu_count()} CPUs; batch {args.batch_size}; fresh cache {cache}",
            flush=True,
        )
        for size in (int(s) for s in args.sizes.split(",")):
            cmp = same_batches(args.source, args.backbone, size, args.batches, args.batch_size, cache)
            print(
                f"[{size}px] same {cmp['images']} images: pipeline {cmp['pipeline_ips']:.1f} img/s, bare forward "
                f"{cmp['bare_ips']:.1f} img/s -> pipeline at {cmp['ratio']:.1%} of bare",
                flush=True,
            )
            cli = [
                "extract",
                "--source",
                args.source,
                "--backbone",
                args.backbone,
                "--image-size",
                str(size),
                "--split",
                "all",
                "--batch-size",
                str(args.batch_size),
                "--cache-dir",
                str(cache),
            ] + (["--limit", str(args.limit)] if args.limit else [])
            first, wall, rss = run_cli(cli)
            ips = first["images"] / first["seconds"]
            print(
                f"[{size}px] full extract of {first['images']:,} images: {first['seconds']:.1f}s, {ips:.1f} img/s "
                f"({ips / cmp['bare_ips']:.1%} of the bare forward rate), peak RSS {rss:,.0f} MB, process wall "
                f"{wall:.1f}s",
                flush=True,
            )
            again, wall2, rss2 = run_cli(cli)
            assert again["cache_hit"], "the repeat should be a cache hit"
            print(
                f"[{size}px] repeat from cache: lookup {again['seconds']:.3f}s, whole command {wall2:.2f}s, peak RSS "
                f"{rss2:,.0f} MB",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
