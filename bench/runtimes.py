"""Extraction rate of each runtime (tf, litert, litert-int8) through the real `python -m lib extract` path.

    python bench/runtimes.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --sizes 128 --split test

For every size it runs `extract` once per runtime into one fresh cache (so each measures conversion,
where there is one, plus extraction of the whole split), then compares the float LiteRT features with
the TF ones (largest relative difference) and the int8 ones by cosine similarity. Ratios are taken in
this one run; the CPU model and core count are printed with the figures.
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
from _common import ROOT  # (puts the project on sys.path)


def extract(args: argparse.Namespace, size: int, runtime: str, cache: Path) -> dict:
    """One `extract` command; its JSON plus the wall time of the whole process."""
    cmd = [
        sys.executable,
        "-m",
        "lib",
        "extract",
        "--source",
        args.source,
        "--backbone",
        args.backbone,
        "--image-size",
        str(size),
        "--split",
        args.split,
        "--runtime",
        runtime,
        "--batch-size",
        str(args.batch_size),
        "--cache-dir",
        str(cache),
        "--json",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    if proc.returncode != 0:
        raise SystemExit(f"{runtime}@{size} failed: {proc.stderr.strip().splitlines()[-1]}")
    result = json.loads(proc.stdout)
    result["wall"] = time.perf_counter() - t0
    return result


def main() -> int:
    """Print one line per (size, runtime) and the agreement of the features."""
    from lib.process import machine_info
    from lib.runtimes import DEFAULT_RUNTIME, selectable

    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--sizes", default="128,224")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--runtimes", default=",".join(selectable()))
    args = parser.parse_args()
    print(
        f"machine: {machine_info()['cpu']}, {os.cpu_count()} CPUs; split {args.split}; batch {args.batch_size}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as tmp:
        cache = Path(tmp)
        for size in (int(s) for s in args.sizes.split(",")):
            rates: dict[str, float] = {}
            feats: dict[str, np.ndarray] = {}
            for runtime in args.runtimes.split(","):
                r = extract(args, size, runtime, cache)
                extract_s = sum(a["extract_seconds"] for a in r["artifacts"])
                rates[runtime] = r["images"] / extract_s
                feats[runtime] = np.load(r["cache_path"], mmap_mode="r")
                print(
                    f"[{size}px] {runtime:<12} {r['images']:,} images extracted in {extract_s:.1f}s = "
                    f"{rates[runtime]:.1f} img/s (whole command incl. loading/conversion {r['wall']:.1f}s, peak RSS "
                    f"{r['peak_rss_mb']:,.0f} MB)",
                    flush=True,
                )
            base = feats.get(DEFAULT_RUNTIME)
            for runtime in rates:
                if runtime == DEFAULT_RUNTIME or base is None:
                    continue
                a, b = np.asarray(feats[runtime], np.float64), np.asarray(base, np.float64)
                rel = float(np.abs(a - b).max() / np.abs(b).max())
                cos = float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)).mean())
                print(
                    f"[{size}px] {runtime:<12} {rates[runtime] / rates[DEFAULT_RUNTIME]:.2f}x the {DEFAULT_RUNTIME} "
                    f"rate; max relative difference {rel:.2e}, mean cosine {cos:.4f} to tf features",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
