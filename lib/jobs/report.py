"""The job side of a job: a CLI command run by the runner reports its progress and checks for a cancel through here.

The runner sets ``TLX_JOB_DIR`` for a job's process (or :func:`acting_for` for a job it runs as a thread of its own
process, see :func:`lib.jobs.queue.run_jobs_in_process`); outside a job :func:`current` is None and every call is a
no-op, so the CLI reports the same way whether a person or the runner started it.

    job = current()
    if job: job.progress("extract train/original@128", done, total, rate=812.0, eta=11.5, unit="img")
    if job: job.stage("Training head")          # a stage without a count
    finish(exit_code, result, error)            # the outcome, written last (the CLI's main does this)
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lib.jobs.records import Progress, now
from lib.store.layout import JOB_FILES

MIN_INTERVAL_S = 0.25  # progress is written at most this often (the panel polls every second or two)
JOB_DIR_ENV = "TLX_JOB_DIR"  # set by the runner for a job's process: the job's folder
_ACTING_FOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("tlx_job_dir", default=None)


class JobCancelled(KeyboardInterrupt):
    """A cancel was asked for: raised at the next safe point (a progress report), so the command stops as after Ctrl-C:
    what is finished is kept (whole chunks, finished epochs), nothing half-written."""


class JobReporter:
    """Writes a running job's progress and reads its cancel request."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.last = 0.0
        self.current = Progress()

    def cancelled(self) -> bool:
        """Whether a cancel was asked for."""
        return (self.folder / JOB_FILES.cancel).exists()

    def _write(self, force: bool) -> None:
        now_s = time.time()
        if not force and now_s - self.last < MIN_INTERVAL_S:
            return
        if self.cancelled():  # looked at as often as progress is written: a few times a second at most
            raise JobCancelled
        self.last = self.current.updated = now_s
        tmp = self.folder / f".{JOB_FILES.progress}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(self.current)))
        os.replace(tmp, self.folder / JOB_FILES.progress)

    def progress(
        self, stage: str, done: int, total: int, rate: float | None = None, eta: float | None = None, unit: str = ""
    ) -> None:
        """``done`` of ``total`` in ``stage`` (a new stage is written at once, the same one at most every quarter
        second)."""
        force = stage != self.current.stage or done >= total
        eta = eta if eta is None or eta != float("inf") else None
        since = self.current.since if stage == self.current.stage and self.current.since else time.time()
        self.current = Progress(stage, int(done), int(total), rate, eta, unit, series=self.current.series, since=since)
        self._write(force)

    def point(self, values: dict[str, float]) -> None:
        """One more point of the job's live chart (written at once; the last 2,000 are kept)."""
        self.current.series = [*self.current.series[-1999:], {k: float(v) for k, v in values.items()}]
        self._write(True)

    def stage(self, text: str) -> None:
        """A stage with no count (loading data, training the head...)."""
        if text != self.current.stage:
            self.current = Progress(text, series=self.current.series, since=time.time())
            self._write(True)


@functools.lru_cache(maxsize=1)
def _reporter(folder: str) -> JobReporter:
    return JobReporter(Path(folder))


def job_folder() -> str | None:
    """The folder of the job this code runs for: the thread's (:func:`acting_for`), else the process's
    (``TLX_JOB_DIR``), else None."""
    return _ACTING_FOR.get() or os.environ.get(JOB_DIR_ENV) or None


@contextlib.contextmanager
def acting_for(folder: Path) -> Iterator[None]:
    """Run the enclosed code as the job in ``folder`` (in this thread only: a job run in-process by the runner)."""
    token = _ACTING_FOR.set(str(folder))
    try:
        yield
    finally:
        _ACTING_FOR.reset(token)


def current() -> JobReporter | None:
    """The job this code runs for, or None when it was not started as one."""
    folder = job_folder()
    return _reporter(folder) if folder and Path(folder).is_dir() else None


def announce(text: str) -> None:
    """Name the stage this process is in, if it runs as a job (the panel shows it with its elapsed time): a long step
    with no count, such as loading a backbone or converting it, is never shown as the end of the stage before."""
    job = current()
    if job is not None:
        job.stage(text)


def finish(exit_code: int, result: dict[str, Any] | None, error: str) -> None:
    """Write this job's outcome (how its command ended, and what it printed as JSON); nothing outside a job."""
    job = current()
    if job is None:
        return
    outcome = {
        "exit": exit_code,
        "result": {k: v for k, v in (result or {}).items() if not k.startswith("_")},
        "error": error,
        "finished": now(),
    }
    tmp = job.folder / f".{JOB_FILES.outcome}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(outcome, default=str))
    os.replace(tmp, job.folder / JOB_FILES.outcome)
