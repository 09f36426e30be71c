"""Command line: ``python -m lib <command>``; the same lib functions the app calls.

    python -m lib data --source ../shared/data/cifar10-jpeg.tar.gz
    python -m lib extract --source ... --backbone ... --image-size 128 --split all --json
    python -m lib backbones
    python -m lib train --source ... --backbone ... --protocol best --json
    python -m lib evaluate RUN_ID
    python -m lib runs list|show|delete|label|export ...
    python -m lib audit --source ... --backbone ... --image-size 128 --json
    python -m lib bundle --out demo.tar; python -m lib install-bundle demo.tar --cache-dir /data/cache

Every command takes ``--cache-dir`` and ``--json`` (one JSON object on stdout);
progress goes to stderr, and errors exit non-zero with a one-line message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from lib import config
from lib.cli import data, deploy, jobs, quality, runs
from lib.defaults import choose_defaults
from lib.errors import UserFacingError
from lib.jobs.queue import IN_RUNNER_ENV, claimed_by, run_jobs_in_process
from lib.jobs.report import JobCancelled, finish, job_folder
from lib.process import configure_process
from lib.safe_text import terminal_text
from lib.store.layout import CacheLayout


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (``error: argument --lr: ...``), exit status 2, as every other
    error."""

    refused: str = ""  # the last refusal's text, for a job's outcome (argparse exits before the command's own handling)

    def error(self, message: str) -> NoReturn:
        OneLineParser.refused = f"{message} (see `{self.prog} --help`)"
        self.exit(2, terminal_text(f"error: {OneLineParser.refused}") + "\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = OneLineParser(prog="python -m lib", description="Transfer learning on TF Hub backbones.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    data.add_commands(sub)
    runs.add_commands(sub)
    quality.add_commands(sub)
    deploy.add_commands(sub)
    jobs.add_commands(sub)
    return parser


HANDLERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    **data.HANDLERS,
    **runs.HANDLERS,
    **quality.HANDLERS,
    **deploy.HANDLERS,
    **jobs.HANDLERS,
}


STARTED = time.time()  # when this process imported the CLI


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code. Started as a background job (by the runner), it also writes the
    job's outcome: its exit status, its JSON result, or its one-line error."""
    started = STARTED if argv is None else time.time()  # in-process calls (tests) count from the call
    job_dir = job_folder()
    if job_dir:
        if not claimed_by(Path(job_dir), os.getpid()):
            # Its start was not recorded (the runner could not write, or died): this process must not do the work.
            print(
                "error: this job's record does not name this process; it does nothing (see `python -m lib jobs list`)",
                file=sys.stderr,
            )
            return 3
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:
        if stop.code not in (0, None):  # refused by argparse: the job says why, not "ended without saying how"
            finish(
                int(stop.code) if isinstance(stop.code, int) else 2,
                None,
                OneLineParser.refused or "the command's arguments were refused",
            )
        raise
    if args.command == "jobs" and args.jobs_command == "runner" and os.environ.get(IN_RUNNER_ENV) == "1":
        run_jobs_in_process(main)  # this runner's jobs are threads of its process (tests of the browser lane)
    args.started = started  # what a time budget counts from (the process's start, its imports included)
    args.cache_dir = args.cache_dir or config.default_cache_dir()
    args.layout = CacheLayout(args.cache_dir)  # the one layout every command passes down
    configure_process(args.layout.tfhub_cache())
    _fill_defaults(args)
    result: dict[str, Any] | None = None
    code, error = 0, ""
    try:
        result = HANDLERS[args.command](args)
    except UserFacingError as err:
        code, error = 2, str(err)
    except KeyboardInterrupt as err:
        code = 130
        error = "cancelled" if isinstance(err, JobCancelled) else "interrupted"
        error += "; finished chunks and epochs are kept, and asking for the same work again resumes from them"
    except OSError as err:
        # Whatever the file system refuses (a name too long, a permission) is the user's to fix, not a crash.
        code, error = 2, f"{err.strerror or err}{f': {err.filename}' if err.filename else ''}"
    except Exception as err:
        if os.environ.get("TLX_DEBUG"):
            raise
        first = str(err).splitlines()[0] if str(err) else ""
        code, error = 1, f"unexpected {type(err).__name__}: {first} (set TLX_DEBUG=1 for a traceback)"
    finish(code, result, error)
    if code:
        print(terminal_text(f"error: {error}"), file=sys.stderr)
        return code
    assert result is not None
    # JSON escapes control characters itself; the text form may quote class names, labels and paths, which can hold any.
    text = (
        json.dumps(result, default=str)
        if args.json
        else terminal_text(result.pop("_text", None) or json.dumps(result, indent=2, default=str))
    )
    return _print(text)


def _fill_defaults(args: argparse.Namespace) -> None:
    """The source and backbone a command was not given, chosen as the app chooses them (:mod:`lib.defaults`); the input
    size stays as given (a command's own default is the backbone's native size)."""
    given = getattr(args, "backbone", None)
    args.backbone_given = given is not None  # a preset with its own backbones uses them unless the user names some
    if isinstance(given, list) and getattr(
        args, "several_backbones", False
    ):  # a repeatable --backbone: the first one, and the others (BACKBONE[@SIZES] each)
        args.backbone, args.more_backbones = given[0], given[1:]
    fill_source = getattr(args, "default_source", False) and args.source is None
    fill_backbone = getattr(args, "default_backbone", False) and args.backbone is None
    if fill_source or fill_backbone:
        d = choose_defaults(args.layout, getattr(args, "source", None), getattr(args, "backbone", None))
        args.source = d.source if fill_source else args.source
        args.backbone = d.backbone if fill_backbone else args.backbone


def _print(text: str) -> int:
    """Print, treating a closed pipe (``| head``) as a normal end, as Unix tools do."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at devnull so that flush cannot fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0
