"""lib/jobs: the queue of a cache, run by a runner process, with the CLI as the unit of work.

Each test runs real `python -m lib` job processes on the tiny fixtures (a few seconds each, mostly importing
TensorFlow)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from lib.errors import UserFacingError
from lib.jobs import JobSpec, cancel_job, get_job, list_jobs, submit
from lib.jobs.queue import DIED, runner_pid
from lib.jobs.records import Progress
from lib.store.layout import CacheLayout
from tests.fixtures import cli


def _extract(assets: dict[str, Path], size: int = 32, split: str = "test") -> JobSpec:
    argv = [
        "extract",
        "--source",
        str(assets["cifar_tar"]),
        "--backbone",
        str(assets["savedmodel"]),
        "--image-size",
        str(size),
        "--split",
        split,
    ]
    return JobSpec("extract", argv, f"test features @ {size}px")


def _wait(layout: CacheLayout, job_id: str, states: tuple[str, ...], timeout: float = 120.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(layout, job_id)
        if job.state in states:
            return job
        assert time.monotonic() < deadline, (job.state, job.progress.stage)
        time.sleep(0.2)


def test_a_job_runs_once_for_every_identical_request_and_the_cli_sees_it(
    assets: dict[str, Path], cache_dir: Path
) -> None:
    layout = CacheLayout(cache_dir)
    job, joined = submit(layout, _extract(assets))
    again, joined_again = submit(layout, _extract(assets))
    assert not joined and joined_again and again.id == job.id  # two tabs pressing the same button: one job
    done = _wait(layout, job.id, ("done", "failed"))
    assert done.state == "done" and done.result["images"] == 30 and done.result["cache_hit"] is False
    listed = cli("jobs", "list", "--json", cache=cache_dir)["jobs"]
    assert [j["id"] for j in listed] == [job.id]
    keys = {"id", "kind", "state", "progress", "stage", "created", "started", "finished", "command", "result", "error"}
    assert keys <= set(listed[0]) and listed[0]["state"] == "done" and listed[0]["progress"] == 1.0
    assert listed[0]["command"].startswith("python -m lib extract --source ")
    assert (
        "extract" in cli("jobs", "show", job.id, cache=cache_dir)
        and cli("jobs", "logs", job.id, cache=cache_dir) is not None
    )
    later, joined = submit(
        layout, _extract(assets)
    )  # the same request after it finished: a new job, served from the cache
    assert not joined and _wait(layout, later.id, ("done",)).result["cache_hit"] is True
    bad = cli("jobs", "show", "../../etc", cache=cache_dir, ok=False)
    assert bad.returncode == 2 and "not a job id" in bad.stderr


def test_a_failing_command_is_a_failed_job_with_its_one_line_error(assets: dict[str, Path], cache_dir: Path) -> None:
    layout = CacheLayout(cache_dir)
    spec = JobSpec(
        "extract", ["extract", "--source", "/no/such/data", "--backbone", str(assets["savedmodel"])], "nothing"
    )
    job, _ = submit(layout, spec)
    failed = _wait(layout, job.id, ("done", "failed"))
    assert (
        failed.state == "failed"
        and "neither 'cifar10' nor an existing path" in failed.error
        and "\n" not in failed.error
    )


def test_cancel_a_queued_job_and_a_running_one_at_a_safe_point(
    assets: dict[str, Path], cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One job at a time: the second waits in the queue and is cancelled there; the first is cancelled while it runs
    and stops as after Ctrl-C (exit 130), keeping no half-written feature file."""
    layout = CacheLayout(cache_dir)
    first, _ = submit(layout, _extract(assets, 48, "all"))
    second, _ = submit(layout, _extract(assets, 64, "all"))
    assert cancel_job(layout, second.id).state == "cancelled"
    _wait(layout, first.id, ("running",))
    cancel_job(layout, first.id)
    ended = _wait(layout, first.id, ("cancelled", "done", "failed"), timeout=180)
    # it was still importing TensorFlow
    assert ended.state == "cancelled" and ended.exit_code == 130, ended
    assert not [
        p for p in (cache_dir / "features").glob("*.npy") if not p.with_suffix(".json").exists()
    ]  # nothing half-written
    assert get_job(layout, second.id).state == "cancelled"
    again, joined = submit(layout, _extract(assets, 48, "all"))  # the same request: a new job, which finishes
    assert not joined and _wait(layout, again.id, ("done", "failed")).state == "done"


def test_a_killed_job_is_failed_not_running_forever_and_a_killed_runner_loses_nothing(
    assets: dict[str, Path], cache_dir: Path
) -> None:
    layout = CacheLayout(cache_dir)
    victim, _ = submit(layout, _extract(assets, 40))
    running = _wait(layout, victim.id, ("running",))
    # kill -9 of the job's process (an OOM kill looks the same)
    os.killpg(running.pid, signal.SIGKILL)
    dead = _wait(layout, victim.id, ("failed",), timeout=30)
    assert dead.error.startswith(DIED)  # and the end of its log, if it wrote one
    survivor, _ = submit(layout, _extract(assets, 56))
    _wait(layout, survivor.id, ("running",))
    pid = runner_pid(layout)
    assert pid
    os.kill(pid, signal.SIGKILL)  # the runner dies; its job runs on in its own session
    assert _wait(layout, survivor.id, ("done",), timeout=120).state == "done"
    queued, _ = submit(layout, _extract(assets, 72))  # a new runner starts for new work
    assert _wait(layout, queued.id, ("done",), timeout=120).state == "done"


def test_damaged_records_are_shown_as_damaged_and_progress_reads_safely(cache_dir: Path) -> None:
    layout = CacheLayout(cache_dir)
    folder = layout.job_dir("20260101-000000-train-abcdef")
    folder.mkdir(parents=True)
    (folder / "job.json").write_text("{not json")
    (folder / "progress.json").write_text(json.dumps({"stage": "x", "done": "many"}))
    (listed,) = list_jobs(layout)
    assert listed.state == "damaged" and "not valid JSON" in listed.error  # shown, never dropped from the list
    assert (
        Progress.read(layout, "20260101-000000-train-abcdef") == Progress()
    )  # a count that is not a number: no report
    assert get_job(layout, "20260101-000000-train-abcdef").damaged
    with pytest.raises(UserFacingError, match="damaged"):
        cancel_job(layout, "20260101-000000-train-abcdef")
