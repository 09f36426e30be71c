"""Background jobs in a real browser: a training job outlives the tab that started it, two tabs pressing Train make one
run, a cancelled extraction keeps only whole chunks and resumes from them, and a job outlives a killed server.

Real server, real Chromium, the shared CIFAR-10 (JPEG q75 copy) and the smallest shared backbone (MobileNet v1 0.25)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from lib.jobs import list_jobs
from lib.runs.registry import list_runs
from lib.store.layout import CacheLayout
from tests.conftest import SHARED_DATA, SHARED_SMALL_MODEL
from tests.streamlit_server import (
    CHROMIUM,
    SERVER_PIDS,
    chromium,
    exceptions,
    open_train_form,
    running_app,
    wait_idle,
)

pytestmark = [pytest.mark.shared, pytest.mark.browser]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
ARGS = ["--source", str(SHARED_DATA), "--backbone", str(SHARED_SMALL_MODEL), "--image-size", "128"]


@pytest.fixture
def cache(tmp_path: Path, shared_cifar: Any) -> Path:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    # The conversion and the small model's runtime choice, made once per machine: these tests are about jobs.
    return shared_cifar(tmp_path / "cache", small_model_runtime=True)


def _wait(what: Any, timeout: float = 300.0, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)
    return found


def test_a_training_job_outlives_its_tab_and_two_tabs_make_one_run(cache: Path) -> None:
    cache_layout = CacheLayout(cache)
    with running_app(ARGS, cache) as (url, _), chromium() as browser:
        a = browser.new_page(viewport={"width": 1400, "height": 1400})
        b = browser.new_page(viewport={"width": 1400, "height": 1400})
        for page in (a, b):
            open_train_form(page, url, 200)
        a.get_by_role("button", name="Train", exact=True).click()
        b.get_by_role("button", name="Train", exact=True).click()  # the same request from a second tab: it joins
        a.get_by_test_id("stSidebar").get_by_text("train: train", exact=False).first.wait_for(timeout=60_000)
        a.close()  # the tab that started it is gone; the job is not
        b.close()
        c = browser.new_page(viewport={"width": 1400, "height": 1100})
        c.goto(url + "/browse")
        sidebar = c.get_by_test_id("stSidebar")
        sidebar.get_by_text("train: train", exact=False).first.wait_for(timeout=60_000)
        _wait(lambda: [j for j in list_jobs(cache_layout) if j.state == "running" and j.progress.total], timeout=120)
        sidebar.get_by_test_id("stProgress").first.wait_for(timeout=30_000)
        c.wait_for_timeout(1500)
        SHOTS.mkdir(parents=True, exist_ok=True)
        c.screenshot(path=str(SHOTS / "9-jobs-panel.png"), full_page=False)
        sidebar.get_by_text("done in", exact=False).first.wait_for(timeout=300_000)
        jobs = list_jobs(cache_layout)
        assert [j.kind for j in jobs] == ["train"] and jobs[0].state == "done", [
            (j.kind, j.state, j.error) for j in jobs
        ]
        runs = list_runs(cache_layout)
        assert [m.run_id for m in runs] == [jobs[0].result["run_id"]] and runs[
            0
        ].limit == 200  # two presses, one job, one run
        sidebar.get_by_role("link", name="Evaluate the run").wait_for(timeout=30_000)
        assert not exceptions(c)


def test_cancel_an_extraction_half_way_then_it_resumes(cache: Path) -> None:
    cache_layout = CacheLayout(cache)
    with running_app(ARGS, cache) as (url, _), chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(url)
        page.get_by_role("button", name="Extract missing features (train, test)").click()
        job = _wait(
            lambda: next(
                (j for j in list_jobs(cache_layout) if j.state == "running" and j.progress.done >= 5_000), None
            ),
            timeout=240,
        )
        wait_idle(page)
        page.get_by_role("button", name="Cancel").first.click()
        cancelled = _wait(
            lambda: next((j for j in list_jobs(cache_layout) if j.id == job.id and not j.active), None),
            timeout=120,
        )
        assert cancelled.state == "cancelled" and "cancelled" in cancelled.error, (cancelled.state, cancelled.error)
        features = cache / "features"
        assert not [p for p in features.glob("*.npy")]  # nothing partial became an artifact
        chunks = sorted(features.glob("*.partial/chunk_*.npy"))
        assert len(chunks) >= 1  # whole checkpoint chunks (4,096 images each) are kept, to resume from
        page.reload()
        page.get_by_role("button", name="Extract missing features (train, test)").click()  # the same request again
        again = _wait(
            lambda: next(
                (j for j in list_jobs(cache_layout) if j.id != job.id and j.state == "running" and j.progress.total),
                None,
            ),
            120,
        )
        assert again.progress.done >= 4096 * len(chunks), (
            again.progress
        )  # resumed from the saved chunks, not from image 0
        assert not exceptions(page)
        page.get_by_role("button", name="Cancel").first.click()  # enough: resuming was the point
        _wait(lambda: not any(j.active for j in list_jobs(cache_layout)), timeout=120)


def test_a_job_outlives_a_killed_server(cache: Path) -> None:
    cache_layout = CacheLayout(cache)
    with running_app(ARGS, cache) as (url, _), chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        open_train_form(page, url, 150)
        page.get_by_role("button", name="Train", exact=True).click()
        _wait(lambda: [j for j in list_jobs(cache_layout) if j.state == "running"], timeout=120)
        os.kill(SERVER_PIDS[url], signal.SIGKILL)  # the server dies mid-job, as on a crash
    job = list_jobs(cache_layout)[0]
    assert job.active
    with running_app(ARGS, cache) as (url, _), chromium() as browser:  # started again on the same cache
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_text("train: train", exact=False).first.wait_for(timeout=60_000)
        sidebar.get_by_text("done in", exact=False).first.wait_for(timeout=300_000)
        assert [j.state for j in list_jobs(cache_layout)] == ["done"] and [
            m.run_id for m in list_runs(cache_layout)
        ] == [list_jobs(cache_layout)[0].result["run_id"]]
        assert not exceptions(page)
