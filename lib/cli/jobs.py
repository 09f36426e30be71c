"""``jobs``: the background jobs of a cache, as the app's panel shows them.

python -m lib jobs list [--json]     # {"jobs": [{"id", "kind", "state", "progress", "stage", "created", "started",
                                     #             "finished", "command", "result", "error"}, ...]}, newest first
python -m lib jobs show ID | logs ID | cancel ID
"""

from __future__ import annotations

import argparse
from typing import Any

from lib.cli.common import add_common
from lib.errors import UserFacingError
from lib.jobs.queue import cancel_job, get_job, list_jobs, log_tail, run_runner, runner_stopped


def add_commands(sub: Any) -> None:
    """Register ``jobs``."""
    p = sub.add_parser("jobs", help="background jobs of this cache: list, show, logs, cancel")
    jsub = p.add_subparsers(dest="jobs_command", required=True)
    q = jsub.add_parser("list", help="every job, newest first")
    add_common(q)
    for name, text in (
        ("show", "one job's record and progress"),
        ("logs", "one job's log"),
        ("cancel", "cancel a queued or running job"),
    ):
        q = jsub.add_parser(name, help=text)
        q.add_argument("job_id")
        add_common(q)
    q = jsub.add_parser("runner", help=argparse.SUPPRESS)  # started on demand by a submit; one per cache
    add_common(q)


def _line(job: Any) -> str:
    import time

    p = job.progress
    share = f" {p.fraction:.0%}" if job.state == "running" and p.total else ""
    since = f" ({time.time() - p.since:.0f} s)" if p.since and not p.total else ""
    stage = f"  {p.stage}{since}" if job.state == "running" and p.stage else ""
    error = f"  {job.error}" if job.error else ""
    return f"{job.id}  {job.state:<9}{share}  {job.kind:<9} {job.title}{stage}{error}"


def cmd_jobs(args: argparse.Namespace) -> dict[str, Any]:
    """``jobs``."""

    if args.jobs_command == "runner":
        code = run_runner(args.layout)
        if code:
            raise UserFacingError(runner_stopped(args.layout) or "the job runner stopped")
        return {"exit": code, "_text": "runner: idle, exiting"}
    if args.jobs_command == "list":
        jobs = list_jobs(args.layout)
        waiting = runner_stopped(args.layout) if any(j.state == "queued" for j in jobs) else ""
        text = "\n".join(_line(j) for j in jobs) or "no jobs"
        return {
            "jobs": [j.summary() for j in jobs],
            "queue_stopped": waiting,
            "_text": text + (f"\nqueued jobs wait: {waiting}" if waiting else ""),
        }
    if args.jobs_command == "logs":
        get_job(args.layout, args.job_id)
        text = log_tail(args.layout, args.job_id)
        return {"id": args.job_id, "log": text, "_text": text or "(empty log)"}
    job = cancel_job(args.layout, args.job_id) if args.jobs_command == "cancel" else get_job(args.layout, args.job_id)
    info = job.summary() | {"argv": job.argv, "exit_code": job.exit_code, "cancel_requested": job.cancel_requested}
    info["_text"] = _line(job) + f"\n  {job.command}"
    return info


HANDLERS = {"jobs": cmd_jobs}
