"""The queue of one cache: submitting (identical requests join), listing, cancelling, settling, and the runner.

job, joined = submit(layout, JobSpec("extract", argv, "features of mobilenet @128"))
list_jobs(layout)        # settled: a job whose process died without an outcome is failed, with the reason
run_runner(layout)       # `python -m lib jobs runner`: started on demand, one per cache, gone when idle
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lib.errors import CacheWriteError, UserFacingError
from lib.jobs.records import Job, Progress, now
from lib.jobs.report import JOB_DIR_ENV, acting_for, finish
from lib.process import is_alive, process_start
from lib.safe_text import terminal_text
from lib.store.atomic import FREE_MARGIN, check_writable, read_json, write_json_atomic
from lib.store.layout import JOB_FILES, CacheLayout

CONCURRENCY_ENV = "TLX_JOBS"  # how many jobs run at once (default 1: one heavy job at a time)
# "1": the runner's process runs each job as a thread (one TensorFlow import for all its jobs; for tests, see
# run_jobs_in_process). Read by the CLI when it starts a runner.
IN_RUNNER_ENV = "TLX_JOBS_IN_RUNNER"
POLL_S = 0.5  # how often the runner looks at the queue while a job waits for a free slot
BUSY_POLL_S = (
    2.0  # how often while every slot is busy (it only settles and escalates cancels then; a job's exit wakes it early)
)
IDLE_EXIT_S = 10.0  # a runner with nothing to do for this long exits (the next submit starts one again)
# The same for a runner whose jobs are its threads (IN_RUNNER_ENV): it keeps its TensorFlow import and loaded backbones
# for the next job a while longer (a browser test's jobs come 10 to 30 s apart; each new runner imported TensorFlow).
IN_RUNNER_IDLE_EXIT_S = 60.0
CANCEL_GRACE_S = 15.0  # a job that has not stopped this long after a cancel is interrupted, then terminated
DIED = (
    "The job's process ended without saying how (killed, out of memory, or the machine restarted). Ask for it "
    "again: it resumes from its checkpoints."
)
LOG_LINES = 3  # the last lines of a job's log quoted when its process ended without an outcome


@dataclass(frozen=True)
class JobSpec:
    """What to run: the CLI command's arguments (after ``python -m lib``; the cache and ``--json`` are added), and a
    title."""

    kind: str
    argv: list[str]
    title: str

    @property
    def key(self) -> str:
        """Identical requests have the same key (the command, word for word)."""
        return hashlib.sha256(json.dumps([self.kind, self.argv]).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(layout: CacheLayout) -> Iterator[None]:
    """The queue lock (every change to a job's record happens under it; readers of a single record need not take it)."""
    check_writable(layout.jobs)
    layout.jobs.mkdir(parents=True, exist_ok=True)
    with open(layout.jobs_lock(), "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield


def _new_id(spec: JobSpec) -> str:
    digest = hashlib.sha256(f"{spec.key}{time.time_ns()}{os.getpid()}".encode()).hexdigest()[:6]
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{''.join(c for c in spec.kind if c.isalpha())}-{digest}"


def submit(layout: CacheLayout, spec: JobSpec, start_runner: bool = True) -> tuple[Job, bool]:
    """Queue ``spec`` (and make sure a runner is there), or join the identical job already queued or running.
    Returns the job and whether it was joined."""
    with _locked(layout):
        same = next((j for j in _read_all(layout) if j.key == spec.key and j.active), None)
        if same is None:
            job = Job(_new_id(spec), spec.kind, spec.title, list(spec.argv), spec.key)
            layout.job_dir(job.id).mkdir(parents=True)
            try:
                job.write(layout)
            except CacheWriteError:
                shutil.rmtree(layout.job_dir(job.id), ignore_errors=True)  # no folder without a record
                raise
    if start_runner:
        ensure_runner(layout)
    return (same, True) if same is not None else (job, False)


def _read_all(layout: CacheLayout) -> list[Job]:
    """Every job with a readable record (what the runner starts and settles)."""
    return [j for j in _read_listing(layout) if not j.damaged]


def _read_listing(layout: CacheLayout) -> list[Job]:
    """Every job, those with a damaged record included (in state ``damaged``, with what is wrong)."""
    return [j for j in (Job.load(layout, i) for i in layout.job_ids()) if j is not None]


def _died(layout: CacheLayout, job: Job) -> str:
    """Why a job whose process ended without an outcome failed: :data:`DIED` and the last lines of its log (an argument
    the command refused, a crash before its own error handling)."""
    lines = [line.strip() for line in log_tail(layout, job.id, 4000).splitlines() if line.strip()]
    return DIED + (f" Its log ends: {' / '.join(lines[-LOG_LINES:])[-600:]}" if lines else "")


def _outcome(layout: CacheLayout, job: Job) -> dict | None:
    data = read_json(layout.job_file(job.id, JOB_FILES.outcome))
    return data if isinstance(data, dict) and isinstance(data.get("exit"), int) else None


def _settle_one(layout: CacheLayout, job: Job) -> bool:
    """Fold a running job's outcome (or its process's disappearance) into its record; True if it changed."""
    if job.state != "running":
        return False
    outcome = _outcome(layout, job)
    if outcome is None and job.pid == 0:
        # The runner wrote "running" and then could not record the process it started, so it stopped that process
        # (a process whose record does not name it never works either): nothing ran, the job waits again.
        job.state, job.started = ("cancelled", job.started) if job.cancel_requested else ("queued", "")
        job.finished = now() if job.cancel_requested else ""
        job.write(layout)
        return True
    if outcome is None and is_alive(job.pid, job.pid_start):
        return False
    if outcome is None:
        job.state, job.error = ("cancelled", "") if job.cancel_requested else ("failed", _died(layout, job))
    else:
        job.exit_code = int(outcome["exit"])
        result = outcome.get("result")
        job.result = result if isinstance(result, dict) else {}
        job.error = str(outcome.get("error") or "")[:2000]
        job.state = (
            "done" if job.exit_code == 0 else "cancelled" if job.exit_code == 130 or job.cancel_requested else "failed"
        )
    job.finished = str(outcome.get("finished")) if outcome and outcome.get("finished") else now()
    job.write(layout)
    return True


def settle(layout: CacheLayout) -> list[Job]:
    """Every job, with finished or dead ones settled (and a runner started if queued work has none), newest first."""
    if not layout.jobs.is_dir():
        return []
    jobs = _read_all(layout)
    if any(
        j.state == "running" and (_outcome(layout, j) is not None or not is_alive(j.pid, j.pid_start)) for j in jobs
    ):
        with contextlib.suppress(UserFacingError), _locked(layout):  # a read-only cache (the demo) only reads
            jobs = _read_all(layout)
            for j in jobs:
                _settle_one(layout, j)
    if any(j.state == "queued" for j in jobs) and not runner_alive(layout):
        with contextlib.suppress(UserFacingError):
            ensure_runner(layout)
    return sorted(jobs, key=lambda j: j.id, reverse=True)


def list_jobs(layout: CacheLayout) -> list[Job]:
    """Every job (settled), newest first, each with its last progress report; a job whose record is damaged is listed
    in state ``damaged`` with what is wrong (it never stops the others)."""
    jobs = settle(layout)
    for j in jobs:
        if j.state == "running":
            j.progress = Progress.read(layout, j.id)
    damaged = [j for j in _read_listing(layout) if j.damaged] if layout.jobs.is_dir() else []
    return sorted(jobs + damaged, key=lambda j: j.id, reverse=True)


def get_job(layout: CacheLayout, job_id: str) -> Job:
    """One job (settled, with its progress), or :class:`UserFacingError`."""
    job = next((j for j in list_jobs(layout) if j.id == job_id), None)
    if job is None:
        layout.job_dir(job_id)  # a malformed id says so
        raise UserFacingError(f"No job {job_id} in {layout} (see `python -m lib jobs list`).")
    return job


def cancel_job(layout: CacheLayout, job_id: str) -> Job:
    """Cancel a job: a queued one at once; a running one at its next safe point (its process checks between chunks,
    epochs and stages, and stops with only complete artifacts written). A finished one is left as it is."""
    with _locked(layout):
        job = Job.load(layout, job_id)
        if job is None:
            raise UserFacingError(f"No job {job_id} in {layout} (see `python -m lib jobs list`).")
        if job.damaged:
            raise UserFacingError(
                f"{job.error} It is never started; remove its folder {layout.job_dir(job_id)} to drop it."
            )
        if job.state == "queued":
            job.state, job.finished = "cancelled", now()
        elif job.state == "running":
            job.cancel_requested = True
            layout.job_file(job.id, JOB_FILES.cancel).write_text(now())
        job.write(layout)
    return job


def log_tail(layout: CacheLayout, job_id: str, max_bytes: int = 200_000) -> str:
    """The end of a job's log."""
    path = layout.job_file(job_id, JOB_FILES.log)
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - max_bytes))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


# ------------------------------------------------------------------------------------------------ the runner


def runner_alive(layout: CacheLayout) -> bool:
    """Whether a runner holds this cache's runner lock now."""
    try:
        with open(layout.runner_lock(), "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def runner_pid(layout: CacheLayout) -> int | None:
    """The pid of this cache's runner while one runs."""
    if not runner_alive(layout):
        return None
    try:
        return int(layout.runner_lock().read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _project_root() -> Path:
    import lib

    return Path(lib.__file__).resolve().parent.parent


def ensure_runner(layout: CacheLayout) -> None:
    """Start this cache's runner if none is running (two starting at once is harmless: the second exits at once)."""
    if runner_alive(layout):
        return
    check_writable(layout.jobs)
    layout.jobs.mkdir(parents=True, exist_ok=True)
    if _IN_PROCESS is not None:
        threading.Thread(target=run_runner, args=(layout,), name=f"tlx-runner {layout.root}", daemon=True).start()
        return
    env = {
        k: v for k, v in os.environ.items() if k not in (JOB_DIR_ENV, "TLX_JOB_ID")
    }  # a job that submits is not the runner
    with open(layout.runner_log(), "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "lib", "jobs", "runner", "--cache-dir", str(layout.root)],
            cwd=_project_root(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
            close_fds=True,
        )


class RunnerStoppedError(Exception):
    """The runner cannot record a job's start (a full disk, a read-only cache): it stops, and says why."""


# ------------------------------------------------------------------------------------ jobs run in this process

JobMain = Callable[[list[str]], int]  # the CLI's main(argv): what a job's process runs
_IN_PROCESS: JobMain | None = None


def run_jobs_in_process(main: JobMain | None) -> None:
    """For tests: the runner runs as a thread of this process and each job as a call of ``main(argv)`` in a thread of
    its own (one TensorFlow import for all, instead of one per job's process); ``None`` restores processes.

    Everything else is as with processes: the queue lock, the record naming the runner's process before the job does
    any work, progress, the cancel at the next progress report, the outcome. What only processes have (outliving the
    server, a killed process, escalating a cancel with signals) is tested with real processes."""
    global _IN_PROCESS
    _IN_PROCESS = main


class _JobThread:
    """A job run in a thread of this process, answering the runner as a ``Popen`` does (``poll``, ``returncode``)."""

    def __init__(self, layout: CacheLayout, job: Job, main: JobMain) -> None:
        self.returncode: int | None = None
        self._thread = threading.Thread(
            target=self._run, args=(layout, job, main), name=f"tlx-job {job.id}", daemon=True
        )
        self._thread.start()

    def _run(self, layout: CacheLayout, job: Job, main: JobMain) -> None:
        error = "the job ended without saying how"
        with acting_for(layout.job_dir(job.id)):
            try:
                code = main([*job.argv, "--cache-dir", str(layout.root), "--json"])
            except SystemExit as stop:  # argparse's refusal (main wrote the outcome), or a command that exits
                code = stop.code if isinstance(stop.code, int) else 2
            except BaseException as err:  # noqa: BLE001 a crash still ends the job (its process would have ended)
                code, error = 1, f"unexpected {type(err).__name__}: {err}"
            # A process that ends without an outcome is seen gone and settled as failed; this thread's process lives
            # on, so the job would stay "running": it always leaves an outcome.
            if _outcome(layout, job) is None:
                finish(code or 1, None, error)
        self.returncode = code

    def poll(self) -> int | None:
        return None if self._thread.is_alive() else self.returncode


Child = subprocess.Popen[bytes] | _JobThread  # what the runner started for a job: its process, or its thread


def _record_running(layout: CacheLayout, job: Job, pid: int, pid_start: str) -> None:
    """Write the job's record as "running" by ``pid`` (0: its process is not started yet);
    :class:`RunnerStoppedError` if the record cannot be written."""
    job.state, job.started, job.pid, job.pid_start = "running", now(), pid, pid_start
    try:
        job.write(layout)
    except CacheWriteError as err:
        raise RunnerStoppedError(f"The job runner cannot write {layout.jobs}, so it starts no job: {err}") from err


# ------------------------------------------------------------------------------------------ jobs as processes


def _start(layout: CacheLayout, job: Job) -> Child:
    """Start a queued job's process (in a session of its own: it outlives the runner and the server).

    The record says "running" before the process exists, and the process does nothing until the record names it
    (:func:`claimed_by`; the runner holds the queue lock until then). So a runner that cannot write never starts a
    process, and a process whose start could not be recorded is stopped at once: a job never runs twice. (A full disk
    once left the record "queued" after the process started, and every look at the queue started it again.)"""
    for stale in (JOB_FILES.outcome, JOB_FILES.cancel):  # from a start that was undone: never this start's outcome
        with contextlib.suppress(OSError):
            layout.job_file(job.id, stale).unlink()
    if _IN_PROCESS is not None:  # the job's thread names this process from the start: it works once this is written
        _record_running(layout, job, os.getpid(), process_start(os.getpid()))
        return _JobThread(layout, job, _IN_PROCESS)
    _record_running(layout, job, 0, "")
    env = {**os.environ, JOB_DIR_ENV: str(layout.job_dir(job.id)), "TLX_JOB_ID": job.id}
    env.pop("TLX_DEMO", None)
    with open(layout.job_file(job.id, JOB_FILES.log), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lib", *job.argv, "--cache-dir", str(layout.root), "--json"],
            cwd=_project_root(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    job.pid, job.pid_start = proc.pid, process_start(proc.pid)
    try:
        job.write(layout)
    except CacheWriteError as err:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # it is still waiting for the lock this runner holds: it did nothing
        proc.wait()
        raise RunnerStoppedError(f"The job runner cannot write {layout.jobs}, so it starts no job: {err}") from err
    return proc


def claimed_by(job_dir: Path, pid: int) -> bool:
    """Whether the record of the job in ``job_dir`` says its process is ``pid`` (waiting for the runner to finish
    writing it). A job's process asks this before any work (:func:`lib.cli.main.main`)."""
    layout = CacheLayout(job_dir.parent.parent)
    try:
        with open(layout.jobs_lock(), "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            job = Job.read(layout, job_dir.name)
    except (OSError, UserFacingError):
        return False
    return job is not None and job.state == "running" and job.pid == pid


def _stopped_file(layout: CacheLayout) -> Path:
    return layout.jobs / "runner-stopped.json"


def runner_stopped(layout: CacheLayout) -> str:
    """Why queued jobs wait ("" if nothing stops them): what the last runner said when it stopped, or a full disk."""
    data = read_json(_stopped_file(layout))
    if isinstance(data, dict) and isinstance(data.get("error"), str) and data["error"]:
        return data["error"][:600]
    try:
        free = shutil.disk_usage(layout.jobs).free
    except OSError:
        return ""
    if free < FREE_MARGIN:
        return (
            f"The disk that holds {layout.jobs} is full ({free / 1e6:.1f} MB free): queued jobs wait until space "
            "is freed."
        )
    return ""


def _say_stopped(layout: CacheLayout, why: str) -> None:
    """Keep why the runner stopped where the panel and ``jobs list`` read it (and in its log); best effort, since the
    disk may be what stopped it (then the panel sees the full disk itself)."""
    print(f"{now()} runner stopped: {why}", flush=True)
    with contextlib.suppress(UserFacingError, OSError):
        write_json_atomic(_stopped_file(layout), {"error": why, "at": now()})


def _escalate(layout: CacheLayout, job: Job) -> None:
    """A cancelled job still running after the grace period: interrupt it, then terminate it."""
    flag = layout.job_file(job.id, JOB_FILES.cancel)
    try:
        waited = time.time() - flag.stat().st_mtime
    except OSError:
        return
    if job.pid == os.getpid():  # a job run in-process stops at its next progress report; never signal this process
        return
    sig = signal.SIGTERM if waited > 2 * CANCEL_GRACE_S else signal.SIGINT if waited > CANCEL_GRACE_S else None
    if sig is not None and is_alive(job.pid, job.pid_start):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pid, sig)


def _nap(children: dict[str, Child], seconds: float) -> None:
    """Sleep up to ``seconds``, waking early when a job this runner started exits (its slot is free at once)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in children.values()):
            return
        time.sleep(0.1)


MAX_CONCURRENCY = 64


def concurrency() -> int:
    """Jobs run at once (``$TLX_JOBS``, a whole number from 1 to 64; default 1). Another value is said once (in the
    runner's log) and 1 is used."""
    text = os.environ.get(CONCURRENCY_ENV, "1").strip()
    if text.isdigit() and 1 <= int(text) <= MAX_CONCURRENCY:
        return int(text)
    _warn_once(
        f"${CONCURRENCY_ENV}={text[:20]!r} is not a whole number from 1 to {MAX_CONCURRENCY}; running 1 job at a time."
    )
    return 1


@functools.lru_cache(maxsize=8)
def _warn_once(text: str) -> None:
    print(f"warning: {terminal_text(text)}", file=sys.stderr, flush=True)


def _idle_exit_s() -> float:
    """How long this runner waits with nothing to do before it exits."""
    return IN_RUNNER_IDLE_EXIT_S if os.environ.get(IN_RUNNER_ENV) == "1" else IDLE_EXIT_S


def run_runner(layout: CacheLayout) -> int:
    """Start queued jobs in order, at most :func:`concurrency` at a time; settle them; deliver cancels; exit when idle.
    Returns at once (0) if another runner already serves this cache."""
    layout.jobs.mkdir(parents=True, exist_ok=True)
    with open(layout.runner_lock(), "a+b") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        lock.truncate(0)
        lock.write(str(os.getpid()).encode())  # who the runner is (read by runner_pid; the lock is what counts)
        lock.flush()
        children: dict[str, Child] = {}
        idle_since = time.monotonic()
        started_any = False
        while True:
            for proc in list(children.values()):
                proc.poll()  # reap a child that ended, so it is seen as gone
            with _locked(layout):
                jobs = _read_all(layout)
                for j in jobs:
                    _settle_one(layout, j)
                running = [j for j in jobs if j.state == "running"]
                for j in sorted((j for j in jobs if j.state == "queued"), key=lambda j: j.created)[
                    : max(0, concurrency() - len(running))
                ]:
                    try:
                        children[j.id] = _start(layout, j)
                    except RunnerStoppedError as err:
                        _say_stopped(layout, str(err))
                        return 3
                    if started_any is False:
                        started_any = True
                        with contextlib.suppress(OSError):
                            _stopped_file(layout).unlink()  # it starts jobs again: the last stop is history
                    running.append(j)
            for j in running:
                if j.cancel_requested:
                    _escalate(layout, j)
            children = {i: p for i, p in children.items() if p.returncode is None}
            if running or children:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > _idle_exit_s():
                return 0
            _nap(children, BUSY_POLL_S if len(running) >= concurrency() else POLL_S)
