"""Accuracy of the finetune preset against its time budget: one `train --protocol finetune --budget-minutes N` job per
budget, each from a cache that holds only the prepared dataset (so every figure is the whole job), run one after the
other on a quiet machine. Prints a table with the CPU, and writes the figures (JSON) and a chart (SVG) for docs.

    python bench/finetune_budgets.py --source ../shared/data/cifar10-jpeg.tar.gz \\
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --budgets 15,30,60,120 \\
        --out docs/finetune_budgets.json --svg docs/finetune_budgets.svg
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT

from lib.data.sources import load_dataset
from lib.process import machine_info
from lib.store.layout import CacheLayout


def fresh_cache(prepared: Path, target: Path, fingerprint: str) -> Path:
    """A cache holding only the prepared dataset (hard links: no copy, no conversion)."""
    src, dst = CacheLayout(prepared).dataset_dir(fingerprint), CacheLayout(target).dataset_dir(fingerprint)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dst, copy_function=os.link)
    return target


def run_budget(source: str, backbone: str, cache: Path, minutes: int) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "lib",
        "train",
        "--source",
        source,
        "--backbone",
        backbone,
        "--protocol",
        "finetune",
        "--budget-minutes",
        str(minutes),
        "--cache-dir",
        str(cache),
        "--json",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = (time.perf_counter() - t0) / 60
    if proc.returncode:
        raise SystemExit(f"budget {minutes}: {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout)
    ft = out["finetune"]
    return {
        "budget_minutes": minutes,
        "test_accuracy": out["test_accuracy"],
        "ece": out["ece"],
        "job_minutes": round(wall, 2),
        "epochs": ft["epochs"],
        "steps": ft["steps"],
        "images_per_second": ft["images_per_second"],
        "peak_rss_mb": out.get("peak_rss_mb"),
        "run_id": out["run_id"],
        "command": " ".join(argv[1:-3]),  # without --cache-dir and --json
    }


def svg_chart(rows: list[dict[str, Any]]) -> str:
    """Accuracy against the budget as a small line chart (no plotting library needed)."""
    w, h, pad = 520, 300, 50
    xs = [r["budget_minutes"] for r in rows]
    ys = [100 * r["test_accuracy"] for r in rows]
    x_max, y_lo, y_hi = max(xs) * 1.05, min([*ys, 92.0]) - 1.0, max([*ys, 92.0]) + 1.0

    def px(x: float, y: float) -> tuple[float, float]:
        return pad + (w - 2 * pad) * x / x_max, h - pad - (h - 2 * pad) * (y - y_lo) / (y_hi - y_lo)

    points = " ".join(f"{px(x, y)[0]:.1f},{px(x, y)[1]:.1f}" for x, y in zip(xs, ys))
    y92 = px(0, 92.0)[1]
    labels = "".join(
        f'<circle cx="{px(x, y)[0]:.1f}" cy="{px(x, y)[1]:.1f}" r="4"/><text x="{px(x, y)[0]:.1f}" '
        f'y="{px(x, y)[1] - 10:.1f}" text-anchor="middle" font-size="12">{y:.2f}%</text>'
        for x, y in zip(xs, ys)
    )
    ticks = "".join(
        f'<text x="{px(x, y_lo)[0]:.1f}" y="{h - pad + 18}" text-anchor="middle" font-size="12">{x}</text>' for x in xs
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">'
        f'<rect width="{w}" height="{h}" fill="white"/>'
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>'
        f'<line x1="{pad}" y1="{y92:.1f}" x2="{w - pad}" y2="{y92:.1f}" stroke="red" stroke-dasharray="4 4"/>'
        f'<text x="{w - pad}" y="{y92 - 6:.1f}" text-anchor="end" font-size="12" fill="red">92%</text>'
        f'<polyline points="{points}" fill="none" stroke="#4c78a8" stroke-width="2"/>{labels}{ticks}'
        f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle" font-size="13">budget (minutes, whole job)</text>'
        f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" text-anchor="middle" font-size="13">'
        "test accuracy, CIFAR-10 (JPEG q75 copy)</text></svg>"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True)
    p.add_argument("--backbone", required=True)
    p.add_argument("--budgets", default="15,30,60,120")
    p.add_argument("--prepared", default=str(ROOT / "cache"), help="a cache that holds the converted dataset")
    p.add_argument("--out", default=None, help="write the figures here (JSON)")
    p.add_argument("--svg", default=None, help="write the chart here")
    args = p.parse_args()
    ds = load_dataset(args.source, args.prepared)  # converted once, outside every measured job
    m = machine_info()
    print(f"CPU: {m['cpu']}, {m['cores']} cores; CIFAR-10 (JPEG q75 copy), full test set; one job at a time")
    rows = []
    for minutes in (int(b) for b in args.budgets.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"tlx-ft-{minutes}-", dir=args.prepared) as tmp:
            row = run_budget(
                args.source, args.backbone, fresh_cache(Path(args.prepared), Path(tmp), ds.fingerprint), minutes
            )
        rows.append(row)
        print(
            f"budget {minutes:>4} min: {row['test_accuracy']:.2%} test, ECE {row['ece']:.4f}, whole job "
            f"{row['job_minutes']:.1f} min, {row['epochs']} epochs at {row['images_per_second']} img/s, peak RSS "
            f"{row['peak_rss_mb']} MB",
            flush=True,
        )
        if args.out:  # after every budget: an hour-long row is never lost to a later one
            Path(args.out).write_text(json.dumps({"machine": m, "rows": rows}, indent=2))
        if args.svg:
            Path(args.svg).write_text(svg_chart(rows))


if __name__ == "__main__":
    main()
