"""A job's files, typed: the record (what was asked, its state), the progress its process reports, its outcome.

    job = Job.read(layout, job_id)                  # None if missing or damaged
    job.with_progress(Progress.read(layout, job.id))
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

from lib.store.atomic import read_json, write_json_atomic
from lib.store.layout import JOB_FILES, CacheLayout

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")


def now() -> str:
    """A timestamp as the records keep it (ISO 8601, local time with its offset)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class Progress:
    """What a running job's process says it is doing (written by it, a few times a second at most)."""

    stage: str = ""
    done: int = 0
    total: int = 0
    rate: float | None = None  # items per second (images for extraction)
    eta_seconds: float | None = None
    unit: str = ""
    updated: float = 0.0  # time.time() of the report
    series: list[dict[str, float]] = field(default_factory=list)  # points so far, for a live chart (a training's epochs)

    @property
    def fraction(self) -> float:
        """Done over total, in [0, 1] (0 when the total is not known yet)."""
        return min(max(self.done / self.total, 0.0), 1.0) if self.total else 0.0

    @classmethod
    def read(cls, layout: CacheLayout, job_id: str) -> Progress:
        """The last report (an empty one if none, or a damaged file)."""
        data = read_json(layout.job_file(job_id, JOB_FILES.progress))
        if not isinstance(data, dict):
            return cls()
        try:
            found = cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})
        except TypeError:
            return cls()
        numbers_ok = all(isinstance(v, int) for v in (found.done, found.total)) and all(
            v is None or isinstance(v, (int, float)) for v in (found.rate, found.eta_seconds))  # fmt: skip
        series_ok = isinstance(found.series, list) and all(isinstance(p, dict) for p in found.series)
        return found if numbers_ok and series_ok and isinstance(found.stage, str) else cls()


@dataclass
class Job:
    """One background job: a CLI command, its state and what it produced."""

    id: str
    kind: str  # the CLI command: extract, train, audit, project, benchmark
    title: str  # what it works on, in a few words
    argv: list[str]  # the command's arguments after `python -m lib` (without --cache-dir and --json)
    key: str  # identical requests share a key: asking again joins the queued or running job
    state: str = "queued"
    created: str = field(default_factory=now)
    started: str = ""
    finished: str = ""
    pid: int = 0
    pid_start: str = ""  # the process's start time, so a recycled pid is not mistaken for it
    cancel_requested: bool = False
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    exit_code: int | None = None
    progress: Progress = field(default_factory=Progress)  # filled when read for showing; not stored in the record

    @property
    def command(self) -> str:
        """The equivalent command line (what the panel shows; a user could type it)."""
        import shlex

        return "python -m lib " + " ".join(shlex.quote(a) for a in self.argv)

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.state in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        """The record as stored (without the progress, which its process writes on its own)."""
        data = dataclasses.asdict(self)
        data.pop("progress")
        return data

    def summary(self) -> dict[str, Any]:
        """What ``jobs list --json`` prints for it."""
        share = 1.0 if self.state == "done" else self.progress.fraction
        return {"id": self.id, "kind": self.kind, "title": self.title, "state": self.state, "progress": round(share, 4),
                "stage": self.progress.stage, "created": self.created, "started": self.started, "finished": self.finished,
                "command": self.command, "result": self.result, "error": self.error, "images_per_second": self.progress.rate,
                "eta_seconds": self.progress.eta_seconds}  # fmt: skip

    def write(self, layout: CacheLayout) -> None:
        """Store the record atomically (callers hold the queue lock)."""
        write_json_atomic(layout.job_file(self.id, JOB_FILES.record), self.to_dict())

    @classmethod
    def read(cls, layout: CacheLayout, job_id: str) -> Job | None:
        """The record, or None if it is missing or damaged."""
        data = read_json(layout.job_file(job_id, JOB_FILES.record))
        if not isinstance(data, dict):
            return None
        try:
            job = cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data and f.name != "progress"})
        except TypeError:
            return None
        ok = job.id == job_id and job.state in STATES and isinstance(job.argv, list) and all(isinstance(a, str) for a in job.argv)
        return job if ok else None


def process_start(pid: int) -> str:
    """A process's start time in clock ticks since boot (Linux), "" if there is no such process: with the pid it names
    one process for good (a pid is recycled, a pid and its start time are not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return ""
    return text.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def is_alive(pid: int, start: str) -> bool:
    """Whether the process ``pid`` that started at ``start`` is still running (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        try:
            os.kill(pid, 0)  # no /proc here: the pid alone
        except (ProcessLookupError, PermissionError):
            return False
        return not start
    fields = text.rsplit(")", 1)[1].split()
    return fields[0] != "Z" and (not start or fields[19] == start)
