"""How long the full data-quality audit takes with features cached, and what it finds.

    python bench/audit.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --image-size 128

It makes sure the train and test features are cached (extracting them first if needed, not timed), then
runs ``python -m lib audit`` in a fresh cache for the audits only (the features are linked in), so the
audit is computed, not read back: K-fold label issues on every training image, the test set from a head on
all of train, and the exact nearest neighbours (test against train, within each split). It prints the
wall time of the whole command, the audit's own time, peak memory, what it found at a few similarity
thresholds, and the time to read the stored audit back. CPU model and core count come first.
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

from _common import ROOT, data_args  # (puts the project on sys.path)


def run(cmd: list[str]) -> tuple[dict, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    if proc.returncode != 0:
        raise SystemExit(f"failed: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads(proc.stdout), time.perf_counter() - t0, proc.stderr


def main() -> int:
    from lib.process import machine_info

    parser = data_args(argparse.ArgumentParser(), cache_help="where the features are (or will be) cached")
    parser.add_argument("--thresholds", default="0.90,0.93,0.95,0.97")
    args = parser.parse_args()
    m = machine_info()
    print(f"machine: {m['cpu']}, {m['cores']} cores", flush=True)
    common = ["--source", args.source, "--backbone", args.backbone, "--image-size", str(args.image_size)]
    run([sys.executable, "-m", "lib", "extract", *common, "--split", "all", "--cache-dir", args.cache_dir, "--json"])
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        from lib.store.layout import CacheLayout

        cache, shared = CacheLayout(tmp), CacheLayout(Path(args.cache_dir).resolve())
        for folder in (
            "datasets",
            "features",
        ):  # a fresh cache that shares the converted data and features, so the audit runs
            getattr(cache, folder).symlink_to(getattr(shared, folder))
        cmd = [sys.executable, "-m", "lib", "audit", *common, "--cache-dir", str(cache), "--json"]
        out, wall, _ = run([*cmd, "--threshold", args.thresholds.split(",")[0]])
        print(
            f"audit (computed): {wall:.1f}s whole command, {out['audit_seconds']:.1f}s audit itself, peak RSS "
            f"{out['peak_rss_mb']:,.0f} MB",
            flush=True,
        )
        print(f"label issues: {out['counts']['label_issues']}", flush=True)
        for t in args.thresholds.split(","):
            again, wall_again, _ = run([*cmd, "--threshold", t])
            pairs = {}
            for d in again["duplicates"]:
                kind = f"{d['split_a']}~{d['split_b']}"
                pairs[kind] = pairs.get(kind, 0) + 1
            print(
                f"threshold {t}: {again['test_with_train_duplicate']} test images with a near-duplicate in train; "
                f"pairs {pairs}; read back in {wall_again:.1f}s (whole command)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
