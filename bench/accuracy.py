"""Accuracy table: every way up from the blog protocol, each row one `python -m lib train` command.

    python bench/accuracy.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector [--cache-dir cache] [--only best]

Prints a Markdown table (command, test accuracy, training and extraction seconds). Features are
extracted on first use and cached, so the first row that needs a size pays its extraction.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROWS: list[tuple[str, str]] = [
    ("blog protocol: linear, Adam, 1,000 steps of 100, 128px", "--protocol blog"),
    ("linear to convergence (40 epochs), 128px", "--head linear --image-size 128 --epochs 40 --patience 0"),
    (
        "linear, original + flipped training, flip TTA, 128px",
        "--head linear --image-size 128 --epochs 40 --patience 0 --flip-train --tta",
    ),
    ("MLP 1024 (best preset without flips), 128px", "--protocol best --no-flip-train --no-tta"),
    ("MLP 1024, original + flipped training, no TTA, 128px", "--protocol best --no-tta"),
    ("**best preset**: MLP 1024, flips + flip TTA, 128px", "--protocol best"),
    ("linear at 224px", "--head linear --image-size 224 --epochs 40 --patience 0"),
    ("best preset at 224px", "--protocol best --image-size 224"),
    ("MLP on 128+224 concatenated, original view only", "--protocol best-multiscale --no-flip-train --no-tta"),
    ("best-multiscale preset: 128+224, flips + flip TTA", "--protocol best-multiscale"),
    (
        "**best overall**: 128+224, flips + TTA, MLP 2048, 15 epochs",
        "--protocol best-multiscale --hidden 2048 --dropout 0.6 --epochs 15",
    ),
]


def main() -> int:
    """Run each row and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--only", default=None, help="run only rows whose flags contain this text")
    args = parser.parse_args()
    base = ["--source", args.source, "--backbone", args.backbone] + (
        ["--cache-dir", args.cache_dir] if args.cache_dir else []
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    print(
        "| configuration | command (`python -m lib train --source … --backbone …` plus) | test accuracy | train s | "
        "extract s |"
    )
    print("|---|---|---|---|---|")
    for title, flags in ROWS:
        if args.only and args.only not in flags:
            continue
        cmd = [sys.executable, "-m", "lib", "train", *base, *shlex.split(flags), "--json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
        if proc.returncode != 0:
            print(f"| {title} | `{flags}` | failed: {proc.stderr.strip().splitlines()[-1]} | | |")
            continue
        r = json.loads(proc.stdout)
        print(
            f"| {title} | `{flags}` | {r['test_accuracy']:.2%} | {r['train_seconds']:.1f} | "
            f"{r['extract_seconds']:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
