"""Start a real `streamlit run app.py` on a free local port, and a headless Debian Chromium for it.

Used by the browser test and by bench/app_speed.py:

    with running_app(["--source", src, "--backbone", bb], cache_dir) as (url, ready_at):
        with chromium() as browser:
            page = browser.new_page(); page.goto(url)
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("TLX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]


# The browser lane's servers run their background jobs as threads of the job runner's process (one TensorFlow import
# and backbone load for all of a test's jobs); tests/browser/test_jobs.py keeps real job processes.
JOBS_IN_RUNNER = {"TLX_JOBS_IN_RUNNER": "1"}

# Page conditions are checked this often (ms). Playwright's default checks on every animation frame, which keeps a
# headless Chromium drawing 60 frames a second while a test waits (measured: 1.0 CPU-s against 0.2 per 8 s of waiting).
POLL_MS = 100

SERVER_PIDS: dict[str, int] = {}  # url -> pid of the streamlit server behind it


def peak_rss_mb(url: str) -> float:
    """The server process's peak resident memory so far (VmHWM), in MB."""
    status = Path(f"/proc/{SERVER_PIDS[url]}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def hover_until_thumbnail(page: Any, box: dict[str, float], tries: int = 60) -> tuple[float, str]:
    """Move the mouse across the middle of a full-dataset map until a point's thumbnail has loaded.

    Returns (milliseconds from the move to the loaded thumbnail, the point's "split:index").
    """
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for k in range(tries):
        page.mouse.move(cx + (k % 12) * 9 - 50, cy + (k // 12) * 9 - 20)
        t0 = time.perf_counter()
        try:
            page.wait_for_selector('.tlx-tip[data-ready="1"]', timeout=3000)
        except Exception:  # noqa: BLE001 (Playwright's timeout error) no point under the mouse here: try the next spot
            continue
        ms = (time.perf_counter() - t0) * 1000
        return ms, str(page.locator(".tlx-tip").get_attribute("data-point"))
    raise AssertionError("no thumbnail appeared while hovering the map")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen, grace: float) -> None:
    """Terminate ``proc``; kill it if it has not exited after ``grace`` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Poll ``url``/_stcore/health until it answers 200; RuntimeError if ``proc`` exits first, TimeoutError after
    ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not become healthy in {timeout:g}s")
        time.sleep(0.1)


@contextlib.contextmanager
def running_app(
    app_args: list[str],
    cache_dir: Path,
    timeout: float = 90.0,
    log: Path | None = None,
    python: str = sys.executable,
    entry: Path = ROOT / "app.py",
    env_extra: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> Iterator[tuple[str, float]]:
    """Run the app headless (``entry`` with ``python``: another entry file, or another environment's interpreter; from
    ``cwd``, whose .streamlit/config.toml applies); yields its URL and the monotonic time the server became healthy."""
    port = free_port()
    env = {
        **os.environ,
        "TLX_CACHE_DIR": str(cache_dir),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        **(env_extra or {}),
    }
    cmd = [
        python,
        "-m",
        "streamlit",
        "run",
        str(entry),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.fileWatcherType",
        "none",
        "--",
        *app_args,
    ]
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    SERVER_PIDS[url] = proc.pid
    try:
        wait_healthy(url, proc, timeout)
        yield url, time.monotonic()
    finally:
        stop(proc, 10)
        if log:
            out.close()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright (no browser download needed)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def wait_idle(page: Any, timeout_ms: int = 120_000) -> None:
    """Wait until the Streamlit script has finished running (no running indicator)."""
    page.wait_for_function(
        "() => { const s = document.querySelector('[data-testid=\"stStatusWidget\"]'); return !s || "
        "!s.innerText.match(/Running|Stop/i); }",
        timeout=timeout_ms,
        polling=POLL_MS,
    )
    page.wait_for_timeout(300)


def open_train_form(page: Any, url: str, limit: int) -> None:
    """Open the Train page, press the blog preset (one view: the browser tests about jobs and bench/poll_cost.py are
    about processes and polling, not accuracy) and set ``limit`` images per class."""
    page.goto(url + "/train")
    page.get_by_role("heading", name="Train or load transfer models").wait_for(timeout=60_000)
    wait_idle(page)
    page.get_by_role("button", name="Blog protocol preset").click()
    wait_idle(page)
    box = page.get_by_label("Images per class (0 = all)")
    box.fill(str(limit))
    box.press("Tab")
    wait_idle(page)


def exceptions(page: Any) -> list[str]:
    """Texts of any Streamlit exception elements on the page."""
    return [e.inner_text() for e in page.query_selector_all('[data-testid="stException"]')]
