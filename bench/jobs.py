"""What background jobs cost: starting one, polling the jobs panel from idle sessions, and the work's own speed in a
job.

    python bench/jobs.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --image-size 128 [--sessions 10] [--idle 60]

Prints the CPU model and cores, then:
- start cost: the same CLI command run directly and as a job (submit to outcome), medians of three; the job's extra
  seconds are the runner's start, the queue's polling and settling;
- idle polling: the server's CPU (user + system, from /proc) over ``--idle`` seconds with ``--sessions`` Chromium tabs
  open on Home and nothing running, as a share of every core, against the same server with one tab for as long;
- rates: extracting the test split (a fresh cache each time) and training the ``best`` head on cached features, run
  directly and as a job: images/s and training seconds, and their ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, CacheLayout, data_args, process_cpu_seconds

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def direct(argv: list[str], cache: Path) -> tuple[float, dict[str, Any]]:
    """``python -m lib ARGV --json`` in a subprocess: wall seconds and its JSON."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "lib", *argv, "--cache-dir", str(cache), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return seconds, json.loads(proc.stdout)


RUNNER_CPU: list[float] = []  # the runner's CPU seconds per second of each job (its share of one core)


def as_job(argv: list[str], cache: Path) -> tuple[float, dict[str, Any]]:
    """The same command submitted as a job: seconds from the submit to the settled outcome, and its result."""
    from lib.jobs import JobSpec, get_job, submit
    from lib.jobs.queue import runner_pid

    layout = CacheLayout(cache)
    t0 = time.perf_counter()
    job, _ = submit(layout, JobSpec(argv[0], argv, "bench"))
    runner, cpu0 = None, 0.0
    while (found := get_job(layout, job.id)).active:
        if runner is None and (runner := runner_pid(layout)):
            cpu0, t1 = process_cpu_seconds(runner), time.perf_counter()
        time.sleep(0.5)  # the bench's own polling: what the panel of one session does
    seconds = time.perf_counter() - t0
    if runner is not None:
        with contextlib.suppress(OSError):
            RUNNER_CPU.append((process_cpu_seconds(runner) - cpu0) / (time.perf_counter() - t1))
    if found.state != "done":
        raise SystemExit(f"job {found.state}: {found.error}")
    return seconds, found.result


def start_cost(args: argparse.Namespace, cache: Path) -> None:
    argv = ["data", "--source", args.source]  # the dataset is converted already: the command is start-up and a read
    direct(argv, cache)
    plain = [direct(argv, cache)[0] for _ in range(3)]
    jobs = []
    for _ in range(3):
        time.sleep(12)  # the runner has exited (idle for 10 s): each job pays for starting one, the worst case
        jobs.append(as_job(argv, cache)[0])
    extra = statistics.median(jobs) - statistics.median(plain)
    print(
        f"start cost: `{' '.join(argv[:1])}` directly {statistics.median(plain):.2f}s, as a job "
        f"{statistics.median(jobs):.2f}s (runner started each time): {extra:+.2f}s",
        flush=True,
    )


def idle_polling(args: argparse.Namespace, cache: Path) -> None:
    from tests.streamlit_server import SERVER_PIDS, chromium, running_app, wait_idle

    app_args = ["--source", args.source, "--backbone", args.backbone, "--image-size", str(args.image_size)]
    shares = {}
    for tabs in (0, 1, args.sessions):
        with running_app(app_args, cache) as (url, _), chromium() as browser:
            pages = []
            for _ in range(tabs):
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(url)
                page.get_by_role("heading", name="Transfer learning explorer").wait_for(timeout=120_000)
                pages.append(page)
            for page in pages:
                wait_idle(page)
            time.sleep(5)
            pid = SERVER_PIDS[url]
            before, t0 = process_cpu_seconds(pid), time.perf_counter()
            time.sleep(args.idle)
            shares[tabs] = (process_cpu_seconds(pid) - before) / (time.perf_counter() - t0) / (os.cpu_count() or 1)
    many, one, none = shares[args.sessions], shares[1], shares[0]
    print(
        f"idle polling: server CPU over {args.idle:.0f}s, share of {os.cpu_count()} cores: no tab {none:.2%}, 1 tab "
        f"{one:.2%}, {args.sessions} tabs on Home {many:.2%}: the {args.sessions} sessions add {many - none:+.2%}",
        flush=True,
    )


def rates(args: argparse.Namespace, cache: Path) -> None:
    common = ["--source", args.source, "--backbone", args.backbone, "--image-size", str(args.image_size)]
    extract = ["extract", *common, "--split", "test"]
    figures: dict[str, list[float]] = {"direct": [], "job": []}
    for k in range(args.repeat):
        for how, run in (("direct", direct), ("job", as_job)) if k % 2 == 0 else (("job", as_job), ("direct", direct)):
            fresh = Path(tempfile.mkdtemp(prefix=f"bench-jobs-{how}-{k}-", dir=cache.parent))
            for name in ("datasets",):
                (fresh / name).symlink_to(cache / name)  # the converted dataset, shared; the features are made anew
            _, out = run(extract, fresh)
            figures[how].append(out["images"] / out["artifacts"][0]["extract_seconds"])
    d, j = statistics.median(figures["direct"]), statistics.median(figures["job"])
    print(
        f"extraction, test split ({args.repeat} each): directly {d:,.0f} img/s, in a job {j:,.0f} img/s: ratio "
        f"{j / d:.3f} (each: {', '.join(f'{x:.0f}' for x in figures['direct'])} / "
        f"{', '.join(f'{x:.0f}' for x in figures['job'])}); the runner used "
        f"{statistics.median(RUNNER_CPU or [0.0]):.2%} of one core meanwhile",
        flush=True,
    )
    train = ["train", *common, "--protocol", "best"]
    direct(train, cache)  # features for the preset (both views, TTA) extracted once, outside the timing
    seconds = {
        "direct": [direct(train, cache)[1]["train_seconds"] for _ in range(2)],
        "job": [as_job(train, cache)[1]["train_seconds"] for _ in range(2)],
    }
    d, j = statistics.median(seconds["direct"]), statistics.median(seconds["job"])
    print(
        f"training the best head on cached features: directly {d:.1f}s, in a job {j:.1f}s: rate ratio {d / j:.3f}",
        flush=True,
    )


def main() -> None:
    parser = data_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]), cache_dir=False)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds the idle CPU is measured over")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: start, idle, rates")
    parser.add_argument("--repeat", type=int, default=4, help="extractions of each kind (alternating which goes first)")
    args = parser.parse_args()
    from lib.process import machine_info

    m = machine_info()
    print(f"machine: {m['cpu']}, {m['cores']} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        cache = Path(tmp) / "cache"
        from lib.data.sources import load_dataset

        load_dataset(args.source, CacheLayout(cache))
        skip = set(args.skip.split(","))
        if "start" not in skip:
            start_cost(args, cache)
        if "idle" not in skip:
            idle_polling(args, cache)
        if "rates" not in skip:
            rates(args, cache)


if __name__ == "__main__":
    main()
