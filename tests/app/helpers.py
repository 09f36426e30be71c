"""What every page's AppTest shares: starting the app on a cache, and reading what a user reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


def start(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    page: str | None = None,
    run: str | None = None,
    check: bool = True,
    **params: str,
) -> AppTest:
    monkeypatch.setenv("TLX_SOURCE", env["source"])
    monkeypatch.setenv("TLX_BACKBONE", env["backbone"])
    monkeypatch.setenv("TLX_CACHE_DIR", env["cache"])
    monkeypatch.setenv("TLX_IMAGE_SIZE", "32")
    at = AppTest.from_file(APP, default_timeout=120)
    if run:
        at.query_params["run"] = run
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    if page:
        at.switch_page(str(ROOT / "views" / page))
        at.run()
    if check:
        assert not at.exception, [e.value for e in at.exception]
    return at


def plain(text: str) -> str:
    """Markdown-escaped text (see ui.text.md_escape) as the user reads it."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u2060", "")


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def finish_jobs(at: AppTest, cache: str | Path, timeout: float = 300.0) -> AppTest:
    """Wait for the cache's background jobs (started by a click) to end, then rerun the page: what the user sees when
    the panel reports the job done. Fails if a job is still queued or running after ``timeout`` seconds."""
    import time

    from lib.jobs import list_jobs
    from lib.store.layout import CacheLayout

    layout = CacheLayout(cache)
    deadline = time.monotonic() + timeout
    while any(j.active for j in list_jobs(layout)):
        assert time.monotonic() < deadline, [(j.kind, j.state, j.progress.stage) for j in list_jobs(layout)]
        time.sleep(0.5)
    # Shown with a failing test's output: a job that failed where the test expected a result says why here.
    print("jobs after waiting:", [(j.kind, j.state, j.error[:400]) for j in list_jobs(layout)])
    at.run()
    return at
