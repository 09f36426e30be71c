"""App speed: first paint in a real browser, page reruns, PCA and t-SNE timings.

    python bench/app_speed.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --image-size 128 --cache-dir cache

Needs the dataset, the test features at --image-size and at least one run in --cache-dir
(for example after `python -m lib train ... --protocol best`). Prints:
- seconds from the server answering /_stcore/health to the Home page being interactive in
  headless Chromium, and whether TensorFlow was imported by then (it must not be);
- each page's rerun time with everything cached (AppTest, same script and caches as the server);
- PCA of 10,000 points; t-SNE of 2,000 points cold, then from the in-memory and the disk cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, data_args  # (puts the project on sys.path)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def first_paint(args: argparse.Namespace) -> None:
    from tests.streamlit_server import chromium, running_app, wait_idle

    app_args = ["--source", args.source, "--backbone", args.backbone, "--image-size", str(args.image_size)]
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        with running_app(app_args, Path(args.cache_dir)) as (url, ready_at):
            page.goto(url)
            page.get_by_role("heading", name="Transfer learning explorer").wait_for(timeout=60_000)
            page.get_by_text("Artifacts").wait_for()
            wait_idle(page)
            print(f"first page interactive {time.monotonic() - ready_at:.2f}s after the server was ready", flush=True)
    code = (
        "import sys, os; from streamlit.testing.v1 import AppTest; "
        f"at = AppTest.from_file({str(ROOT / 'app.py')!r}, default_timeout=60); at.run(); "
        "print('tensorflow imported by Home:', 'tensorflow' in sys.modules)"
    )
    env = {
        **os.environ,
        "TLX_SOURCE": args.source,
        "TLX_BACKBONE": args.backbone,
        "TLX_CACHE_DIR": str(args.cache_dir),
        "TLX_IMAGE_SIZE": str(args.image_size),
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    print(out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-500:], flush=True)


def reruns(args: argparse.Namespace) -> None:
    from streamlit.testing.v1 import AppTest

    from lib.runs.registry import list_runs

    os.environ.update(
        {
            "TLX_SOURCE": args.source,
            "TLX_BACKBONE": args.backbone,
            "TLX_CACHE_DIR": str(args.cache_dir),
            "TLX_IMAGE_SIZE": str(args.image_size),
        }
    )
    runs = list_runs(args.cache_dir)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    if runs:
        at.query_params["run"] = runs[0].run_id
    at.run()
    for page in ("home.py", "browse.py", "train.py", "feature_space.py", "evaluate.py"):
        at.switch_page(str(ROOT / "views" / page))
        at.run()  # first visit fills the caches
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t0)
        assert not at.exception, [e.value for e in at.exception]
        print(
            f"rerun {page:<18} median {statistics.median(times):.3f}s (max {max(times):.3f}s) with artifacts cached",
            flush=True,
        )


def projections(args: argparse.Namespace) -> None:
    from lib.analysis.projections import project, stratified_sample
    from lib.data.sources import load_dataset
    from lib.pipeline.features import cached_feature_result
    from lib.runtimes.backbones import resolve_backbone
    from ui import cached

    ds = load_dataset(args.source, args.cache_dir)
    feats = cached_feature_result(
        ds, "test", resolve_backbone(args.backbone), args.image_size, "original", None, args.cache_dir
    )
    if feats is None:
        print("no cached test features; run python -m lib extract first")
        return
    rows = stratified_sample(feats.labels, 10_000)
    t0 = time.perf_counter()
    project(feats.features, rows, "pca")
    print(f"PCA of {len(rows):,} points: {time.perf_counter() - t0:.2f}s", flush=True)
    rows = stratified_sample(feats.labels, 2000, seed=0)
    key = tuple(int(r) for r in rows)
    seed = int(time.time()) % 10_000  # a seed not used before, so the disk cache is cold
    t0 = time.perf_counter()
    cached.projection(args.cache_dir, str(feats.path), key, "tsne", 30.0, 500, seed)
    print(f"t-SNE of 2,000 points (PCA-50 first, 500 iterations): {time.perf_counter() - t0:.1f}s cold", flush=True)
    t0 = time.perf_counter()
    cached.projection(args.cache_dir, str(feats.path), key, "tsne", 30.0, 500, seed)
    print(f"t-SNE again, same parameters: {time.perf_counter() - t0:.3f}s (in-memory cache)", flush=True)
    cached.projection.clear()
    t0 = time.perf_counter()
    cached.projection(args.cache_dir, str(feats.path), key, "tsne", 30.0, 500, seed)
    print(f"t-SNE after the in-memory cache is cleared: {time.perf_counter() - t0:.3f}s (disk cache)", flush=True)


def main() -> int:
    """Run all measurements."""
    from lib.process import machine_info

    parser = data_args(argparse.ArgumentParser())
    args = parser.parse_args()
    print(f"machine: {machine_info()['cpu']}, {os.cpu_count()} CPUs", flush=True)
    first_paint(args)
    reruns(args)
    projections(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
