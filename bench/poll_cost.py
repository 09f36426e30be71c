"""What a tab costs the machine while a background job runs: the CPU of the Streamlit server and of the browser
(headless Chromium) while one training job runs, watched from the Train page.

    python bench/poll_cost.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_025_128_dequant_feature_vector --image-size 128 \
        [--limit 50] [--repeats 2] [--app-root OTHER_CHECKOUT]

Each variant, ``--repeats`` times, on a fresh cache holding the converted dataset: start ``streamlit run app.py``,
open the Train page in Chromium, press the blog preset with ``--limit`` images per class, press Train, and wait for
the run's accuracy. Prints the CPU model and cores, then per variant the job's wall seconds and the CPU-seconds
(user + system, from /proc) of the server and of every Chromium process over that time, per second of the job.

Variants: ``config`` (this checkout's .streamlit/config.toml), ``gc`` (the same with Streamlit's default
``runner.postScriptGC = true``: a full garbage collection after every rerun, fragments included). ``--app-root``
adds ``other``: another checkout's app.py and config (e.g. a ``git worktree`` of an earlier commit), to compare code.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import ROOT, data_args, process_cpu_seconds

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cpu_seconds(match: str) -> float:
    """User + system seconds of every live process whose command line contains ``match``."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if match in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                total += process_cpu_seconds(int(pid))
        except OSError:
            continue  # the process ended while being read
    return total


def one(args: argparse.Namespace, base: Path, root: Path, env: dict[str, str]) -> dict[str, float]:
    """One training job watched from the Train page: its wall seconds and the server's and Chromium's CPU-seconds."""
    from lib.store.layout import CacheLayout
    from tests.streamlit_server import JOBS_IN_RUNNER, chromium, open_train_form, running_app, wait_idle

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        shutil.copytree(CacheLayout(base).datasets, CacheLayout(cache).datasets, copy_function=os.link)
        app = ["--source", args.source, "--backbone", args.backbone, "--image-size", str(args.image_size)]
        with (
            running_app(app, cache, entry=root / "app.py", cwd=root, env_extra={**JOBS_IN_RUNNER, **env}) as (url, _),
            chromium() as browser,
        ):
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            open_train_form(page, url, args.limit)
            server, browser_cpu, t0 = cpu_seconds("streamlit"), cpu_seconds("chromium"), time.monotonic()
            page.get_by_role("button", name="Train", exact=True).click()
            page.get_by_test_id("stMetricLabel").get_by_text("Test accuracy", exact=True).wait_for(timeout=600_000)
            wait_idle(page)
            return {
                "seconds": time.monotonic() - t0,
                "server": cpu_seconds("streamlit") - server,
                "chromium": cpu_seconds("chromium") - browser_cpu,
            }


def main() -> None:
    ap = data_args(
        argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter),
        cache_dir=False,
    )
    ap.add_argument("--limit", type=int, default=50, help="images per class of the training job (default 50)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--app-root", type=Path, help="another checkout to compare (its app.py and .streamlit/)")
    args = ap.parse_args()
    from lib.data.sources import load_dataset
    from lib.process import machine_info
    from lib.store.layout import CacheLayout

    m = machine_info()
    print(f"CPU: {m['cpu']}, {m['cores']} cores")
    variants = {"config": (ROOT, {}), "gc": (ROOT, {"STREAMLIT_RUNNER_POST_SCRIPT_GC": "true"})}
    if args.app_root:
        variants["other"] = (args.app_root.resolve(), {})
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        load_dataset(args.source, CacheLayout(base))  # converted once, linked into each fresh cache
        results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for _ in range(args.repeats):  # interleaved, so a drift of the machine's speed hits every variant alike
            for name, (root, env) in variants.items():
                results[name].append(one(args, base, root, env))
    print(f"{'variant':8} {'job s':>7} {'server CPU-s':>13} {'Chromium CPU-s':>15} {'server/s':>9} {'Chromium/s':>11}")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"{name:8} {med['seconds']:7.1f} {med['server']:13.1f} {med['chromium']:15.1f} "
            f"{med['server'] / med['seconds']:9.2f} {med['chromium'] / med['seconds']:11.2f}"
        )


if __name__ == "__main__":
    main()
