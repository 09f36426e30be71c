"""lib/jobs without TensorFlow: records read as damaged instead of crashing the queue, a job never runs twice when its
record cannot be written, an argument argparse refuses is the job's error, and values are passed so they are never
read as flags. (Real job processes running real commands are covered in tests/tf/test_jobs.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.errors import CacheWriteError, UserFacingError
from lib.jobs import JobSpec, cancel_job, get_job, list_jobs, queue, submit
from lib.jobs.commands import train_job
from lib.jobs.records import Job
from lib.pipeline.training import HeadConfig, RunRequest
from lib.store.layout import JOB_FILES, CacheLayout

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_background_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing a queue with queued jobs starts a runner; these tests run it themselves (or not at all)."""
    monkeypatch.setattr(queue, "ensure_runner", lambda layout: None)


def _queued(layout: CacheLayout, title: str = "a") -> Job:
    job, _joined = submit(layout, JobSpec("data", ["data", f"--source=/no/such/{title}"], title), start_runner=False)
    return job


def test_a_label_that_starts_with_a_dash_is_one_word_and_parses() -> None:
    from lib.cli.main import build_parser

    req = RunRequest("/data/cifar", "/models/bb", HeadConfig(), (32,))
    spec = train_job(req, label="-baseline")
    assert "--label=-baseline" in spec.argv and "-baseline" not in spec.argv
    args = build_parser().parse_args(spec.argv)
    assert args.label == "-baseline" and args.image_sizes is not None


def test_a_damaged_record_is_listed_as_damaged_and_never_stops_the_others(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    bad, truncated, fine = _queued(layout, "bad"), _queued(layout, "cut"), _queued(layout, "fine")
    record = layout.job_file(bad.id, JOB_FILES.record)
    record.write_text(json.dumps({**json.loads(record.read_text()), "pid": "abc", "state": "running"}))
    layout.job_file(truncated.id, JOB_FILES.record).write_text('{"id": "')
    jobs = {j.id: j for j in list_jobs(layout)}
    assert jobs[bad.id].state == "damaged" and 'pid is "abc", not int' in jobs[bad.id].error
    assert jobs[truncated.id].state == "damaged" and "not valid JSON" in jobs[truncated.id].error  # shown, not vanished
    assert jobs[fine.id].state == "queued"
    assert get_job(layout, truncated.id).damaged  # `jobs show` finds it
    with pytest.raises(UserFacingError, match="damaged"):
        cancel_job(layout, bad.id)
    assert [j.id for j in queue._read_all(layout)] == [fine.id]  # what the runner starts: the damaged ones never


def test_a_runner_that_cannot_write_the_start_starts_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record must say "running" before a process exists: a write that fails stops the runner, and no process
    starts."""
    layout = CacheLayout(tmp_path)
    job = _queued(layout)
    spawned: list[object] = []
    monkeypatch.setattr(
        queue.subprocess, "Popen", lambda *a, **k: spawned.append(a) or pytest.fail("a process was started")
    )

    def full(self: Job, layout: CacheLayout) -> None:
        raise CacheWriteError("Disk full while writing job.json.")

    monkeypatch.setattr(Job, "write", full)
    assert queue.run_runner(layout) == 3 and not spawned
    monkeypatch.undo()
    assert get_job(layout, job.id).state == "queued"
    assert "Disk full" in queue.runner_stopped(layout)  # where the panel and `jobs list` say why queued jobs wait


def test_a_process_whose_start_was_not_recorded_is_stopped_and_the_job_waits_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = CacheLayout(tmp_path)
    job = _queued(layout)
    writes = {"n": 0}
    real_write = Job.write

    def second_fails(self: Job, layout: CacheLayout) -> None:
        writes["n"] += 1
        if writes["n"] == 2:  # the pid, after the process exists
            raise CacheWriteError("Disk full while writing job.json.")
        real_write(self, layout)

    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(Job, "write", second_fails)
    monkeypatch.setattr(queue.subprocess, "Popen", popen)
    assert queue.run_runner(layout) == 3
    monkeypatch.undo()
    assert len(started) == 1 and started[0].poll() is not None  # stopped, not left to run unrecorded
    assert not layout.job_file(job.id, JOB_FILES.outcome).exists()
    again = get_job(layout, job.id)  # space is back: settled to queued, to run once
    assert again.state == "queued" and again.pid == 0


def test_a_job_process_that_its_record_does_not_name_does_nothing(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    job = _queued(layout)
    env = {**os.environ, "TLX_JOB_DIR": str(layout.job_dir(job.id)), "TLX_JOB_ID": job.id}
    proc = subprocess.run(
        [sys.executable, "-m", "lib", *job.argv, "--cache-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3 and "does not name this process" in proc.stderr
    assert not layout.job_file(job.id, JOB_FILES.outcome).exists() and get_job(layout, job.id).state == "queued"


def test_an_argument_argparse_refuses_is_the_jobs_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lib.cli.main import main

    layout = CacheLayout(tmp_path)
    job = _queued(layout)
    job.state, job.pid = "running", os.getpid()  # as the runner records it before the command starts
    job.write(layout)
    monkeypatch.setenv("TLX_JOB_DIR", str(layout.job_dir(job.id)))
    with pytest.raises(SystemExit):
        main(["train", "--label", "-baseline", "--cache-dir", str(tmp_path)])
    outcome = json.loads(layout.job_file(job.id, JOB_FILES.outcome).read_text())
    assert outcome["exit"] == 2 and "--label: expected one argument" in outcome["error"]


def test_an_exit_without_an_outcome_quotes_the_end_of_the_log(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    job = _queued(layout)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    job.state, job.pid, job.pid_start = "running", proc.pid, ""
    job.write(layout)
    layout.job_file(job.id, JOB_FILES.log).write_text("loading\nSegmentation fault in the backbone\n")
    time.sleep(0.1)
    failed = get_job(layout, job.id)
    assert (
        failed.state == "failed"
        and "ended without saying how" in failed.error
        and "Segmentation fault in the backbone" in failed.error
    )


@pytest.mark.parametrize("value", ["0", "-1", "abc", "2.5", "", "65"])
def test_a_bad_concurrency_is_said_and_one_is_used(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TLX_JOBS", value)
    queue._warn_once.cache_clear()
    assert queue.concurrency() == 1
    assert "TLX_JOBS" in capsys.readouterr().err


def test_a_job_run_in_process_always_ends_with_its_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process jobs (the app lane's): whatever ``main`` does, the job settles, since this process never goes away.
    One writes its result, one returns without an outcome, one crashes; the runner thread works through all three."""
    from lib.jobs.report import finish, job_folder

    seen: list[str | None] = []

    def main(argv: list[str]) -> int:
        seen.append(job_folder())
        source = next(a for a in argv if a.startswith("--source="))
        if source.endswith("/ok"):
            finish(0, {"images": 3}, "")
            return 0
        if source.endswith("/silent"):
            return 0
        raise RuntimeError("boom")

    layout = CacheLayout(tmp_path)
    jobs = [_queued(layout, title) for title in ("ok", "silent", "crash")]
    monkeypatch.setattr(queue, "IDLE_EXIT_S", 0.5)
    queue.run_jobs_in_process(main)
    try:
        assert queue.run_runner(layout) == 0  # it returns once idle: every job has ended
    finally:
        queue.run_jobs_in_process(None)
    done = {j.title: get_job(layout, j.id) for j in jobs}
    assert done["ok"].state == "done" and done["ok"].result == {"images": 3}
    assert done["silent"].state == "failed" and "without saying how" in done["silent"].error
    assert done["crash"].state == "failed" and done["crash"].error == "unexpected RuntimeError: boom"
    assert sorted(map(str, seen)) == sorted(str(layout.job_dir(j.id)) for j in jobs)  # each thread its own job
    assert job_folder() is None
    assert all(j.pid == os.getpid() for j in done.values())
