"""A job's files, typed: the record (what was asked, its state), the progress its process reports, its outcome.

job = Job.read(layout, job_id)                  # None if missing or damaged
job.with_progress(Progress.read(layout, job.id))
"""

from __future__ import annotations

import dataclasses
import json
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
    series: list[dict[str, float]] = field(
        default_factory=list
    )  # points so far, for a live chart (a training's epochs)
    since: float = 0.0  # time.time() when this stage began (the panel shows how long it has run)

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
        numbers_ok = (
            all(isinstance(v, int) for v in (found.done, found.total))
            and all(v is None or isinstance(v, (int, float)) for v in (found.rate, found.eta_seconds))
            and isinstance(found.since, (int, float))
        )
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
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "state": self.state,
            "progress": round(share, 4),
            "stage": self.progress.stage,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "command": self.command,
            "result": self.result,
            "error": self.error,
            "images_per_second": self.progress.rate,
            "eta_seconds": self.progress.eta_seconds,
        }

    def write(self, layout: CacheLayout) -> None:
        """Store the record atomically (callers hold the queue lock)."""
        write_json_atomic(layout.job_file(self.id, JOB_FILES.record), self.to_dict())

    @property
    def damaged(self) -> bool:
        """Its record could not be read as a job (shown with what is wrong; never started, settled or cancelled)."""
        return self.state == DAMAGED

    @classmethod
    def read(cls, layout: CacheLayout, job_id: str) -> Job | None:
        """The record, or None if it is missing or damaged."""
        job = cls.load(layout, job_id)
        return None if job is None or job.damaged else job

    @classmethod
    def load(cls, layout: CacheLayout, job_id: str) -> Job | None:
        """The record; None if the job has no record; a job in state ``damaged`` (its error says what is wrong) if the
        record is truncated, not an object, or has a field of the wrong type."""
        path = layout.job_file(job_id, JOB_FILES.record)
        if not path.exists():
            return None
        data = read_json(path)
        problem = (
            "it is not valid JSON (truncated?)"
            if data is None
            else "it is not a JSON object"
            if not isinstance(data, dict)
            else _problem(data, job_id)
        )
        if problem:
            kind = str(data.get("kind")) if isinstance(data, dict) and isinstance(data.get("kind"), str) else "?"
            return cls(
                job_id,
                kind[:40],
                "damaged record",
                [],
                "",
                state=DAMAGED,
                error=f"The record {path} is damaged: {problem}.",
            )
        assert isinstance(data, dict)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data and f.name != "progress"})


DAMAGED = "damaged"  # not a state a record is written with: what a record that cannot be read is shown as
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "kind": (str,),
    "title": (str,),
    "argv": (list,),
    "key": (str,),
    "state": (str,),
    "created": (str,),
    "started": (str,),
    "finished": (str,),
    "pid": (int,),
    "pid_start": (str,),
    "cancel_requested": (bool,),
    "result": (dict,),
    "error": (str,),
    "exit_code": (int, type(None)),
}
_REQUIRED = ("id", "kind", "title", "argv", "key")


def _problem(data: dict[str, Any], job_id: str) -> str:
    """What is wrong with a record's fields ("" if nothing)."""
    missing = [name for name in _REQUIRED if name not in data]
    if missing:
        return f"it has no {', '.join(missing)}"
    for name, types in _FIELD_TYPES.items():
        value = data.get(name)
        if name in data and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            return (
                f"{name} is {json.dumps(value, default=str)[:40]}, not "
                f"{' or '.join('null' if t is type(None) else t.__name__ for t in types)}"
            )
    if data["id"] != job_id:
        return f"its id {data['id'][:40]!r} is not its folder's"
    if data.get("state", "queued") not in STATES:
        return f"state {str(data['state'])[:20]!r} is not one of {', '.join(STATES)}"
    if not all(isinstance(a, str) for a in data["argv"]):
        return "argv holds something other than text"
    return ""
