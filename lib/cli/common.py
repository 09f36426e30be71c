"""Pieces every CLI command shares: the common flags, a progress bar on stderr, peak memory.

p = sub.add_parser("extract"); add_source(p); add_backbone(p); add_common(p)
bar = Bar("train/original@128"); bar.update_to(done, total); bar.close()
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lib import config
from lib.bounds import address_flag, flag
from lib.data.sources import Dataset, load_dataset
from lib.jobs.report import current
from lib.pipeline.features import cached_image_counter
from lib.pipeline.ray_connect import RayOptions
from lib.runtimes import ENV_RUNTIME, choices, entry_default, registry, selectable
from lib.runtimes.auto import describe, resolve
from lib.safe_text import terminal_text
from lib.store.layout import CacheLayout


class Bar:
    """A tqdm bar on stderr (quiet updates when stderr is not a terminal); in a background job, also the job's
    progress."""

    def __init__(self, desc: str, unit: str = "img") -> None:
        from tqdm import tqdm

        self.unit = unit
        self.started: tuple[float, int] | None = (
            None  # (when, how many were done then: a resumed extraction starts above 0)
        )
        self.bar = tqdm(
            desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 5.0
        )

    def update_to(self, done: int, total: int) -> None:
        """Move the bar to ``done`` of ``total``."""
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()
        job = current_job()
        if job is not None:
            import time

            if self.started is None or done < self.started[1]:
                self.started = (time.perf_counter(), done)
            seconds = time.perf_counter() - self.started[0]
            rate = (done - self.started[1]) / seconds if seconds > 0.5 and done > self.started[1] else None
            eta = (total - done) / rate if rate and total else None
            job.progress(str(self.bar.desc), done, total, rate, eta, self.unit)

    def close(self) -> None:
        """Finish the bar."""
        self.bar.close()


class LazyBar:
    """A :class:`Bar` drawn on the first report only (a cache hit prints nothing)."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar: Bar | None = None

    def extract_progress(self, p: Any) -> None:
        """An :class:`lib.pipeline.feature_store.ExtractProgress` callback."""
        if self.bar is None:
            self.bar = Bar(self.desc)
        self.bar.update_to(p.done, p.total)

    def close(self) -> None:
        """Finish the bar if it was drawn."""
        if self.bar is not None:
            self.bar.close()


def load_with_progress(source: str, layout: CacheLayout) -> Dataset:
    """The dataset of ``source``, converted first (with a bar, and the job's progress) where it is not in the cache
    yet."""

    bar: Bar | None = None

    def report(done: int, total: int, stage: str) -> None:
        nonlocal bar
        bar = bar or Bar("data", unit="item")
        bar.bar.set_description(
            f"data: {stage}", refresh=False
        )  # download, scan (image sizes), decode, or waiting for another process
        bar.update_to(done, total)

    try:
        return load_dataset(source, layout, progress=report)
    finally:
        if bar is not None:
            bar.close()


def current_job() -> Any:
    """The background job this command runs as (:mod:`lib.jobs.report`), or None when a person started it."""

    return current()


def concrete_runtime(
    args: argparse.Namespace, spec: Any, size: int, ds: Any, parts: list[tuple[str, str]], limit: int | None = None
) -> tuple[str, dict[str, Any] | None]:
    """``--runtime`` with ``auto`` (the default) resolved for this backbone and size and the features it will need
    (``parts``: (split, view) each), and the figures behind an ``auto`` choice (None otherwise); the choice is said.
    Features one exact runtime has cached already count as done (see :func:`lib.runtimes.auto.choose`)."""

    images = sum(ds.subset_size(split, limit) for split, _view in parts)
    counter = cached_image_counter(ds, [(spec, size, split, view) for split, view in parts], limit, args.layout)
    runtime, choice = resolve(args.runtime, spec, size, ds, args.layout, images, counter)
    if choice:
        say_stage(describe(runtime, choice, images))
    return runtime, choice


def say_stage(text: str) -> None:
    """A stage of a command: printed to stderr, and reported to its job (a cancel is honoured here)."""
    print(terminal_text(text), file=sys.stderr)
    job = current_job()
    if job is not None:
        job.stage(text)


def add_common(p: argparse.ArgumentParser) -> None:
    """``--cache-dir`` and ``--json``."""
    p.add_argument(
        "--cache-dir", type=Path, default=None, help=f"artifact folder (default: ${config.ENV_CACHE_DIR} or ./cache)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_source(p: argparse.ArgumentParser) -> None:
    """``--source``."""
    p.add_argument(
        "--source",
        default=None,
        help=f"'cifar10' or a local path (default: ${config.ENV_SOURCE}, a demo bundle's, else cifar10)",
    )
    p.set_defaults(default_source=True)  # filled in after parsing, as the app does (lib.defaults)


def add_backbone(p: argparse.ArgumentParser, repeatable: bool = False) -> None:
    """``--backbone`` (``repeatable``: given several times, their features are concatenated), ``--image-size``,
    ``--batch-size`` and ``--limit``."""
    more = (
        (
            " Repeat it to concatenate several backbones' features; BACKBONE@SIZES (e.g. "
            "…/mobilenet_v2_100_224_feature_vector@160,224) gives one its own sizes (default: the first one's "
            "--image-sizes, the others' native size)."
        )
        if repeatable
        else ""
    )
    p.add_argument(
        "--backbone",
        default=None,
        action="append" if repeatable else "store",
        help=f"registry name, handle or path (default: ${config.ENV_BACKBONE}, a demo bundle's, else "
        f"{config.DEFAULT_BACKBONE}).{more}",
    )
    p.set_defaults(default_backbone=True, several_backbones=repeatable)
    p.add_argument(
        "--image-size",
        type=flag("image_size"),
        default=None,
        help="input side in pixels (default: the module's native size)",
    )
    p.add_argument("--batch-size", type=flag("batch_size"), default=256, help="images per forward pass")
    p.add_argument("--limit", type=flag("limit"), default=None, help="use only the first N images of each class")
    p.add_argument(
        "--runtime",
        choices=choices(),
        default=entry_default(),
        help=f"extraction runtime (default: {entry_default()}; ${ENV_RUNTIME} pins another): auto (the faster of tf "
        "and litert for this backbone, size and machine, timed once and kept; the conversion counts for small "
        "extractions); " + "; ".join(f"{name} ({registry()[name].description})" for name in selectable()),
    )


def add_engine(p: argparse.ArgumentParser) -> None:
    """``--engine`` and the Ray engine's flags (Ray itself is imported only when ``--engine ray`` extracts)."""
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where features are extracted: this process (local) or Ray workers (pip install -r "
        "requirements-scale.txt)",
    )
    p.add_argument(
        "--ray-address",
        type=address_flag,
        default=None,
        help="join the Ray cluster at HOST:PORT (its head node's GCS port), 'auto' or ray://HOST:PORT; default: "
        "start Ray on this machine",
    )
    p.add_argument(
        "--workers", type=flag("workers"), default=2, help="Ray workers (actors), each loading the backbone once"
    )
    p.add_argument(
        "--ray-cpus-per-worker",
        type=flag("ray_cpus_per_worker"),
        default=1.0,
        help="CPUs each Ray worker reserves (and its TF threads)",
    )
    p.add_argument(
        "--ray-object-store-mb",
        type=flag("ray_object_store_mb"),
        default=512,
        help="object store of a Ray started here (Ray's own default is 30%% of RAM)",
    )
    p.add_argument(
        "--ray-temp-dir", type=Path, default=None, help="session files of a Ray started here (default: <cache-dir>/ray)"
    )
    p.add_argument(
        "--ray-shard-size",
        type=flag("ray_shard_size"),
        default=512,
        help="images per Ray task (checkpoints stay at 4,096 images)",
    )


def ray_options(args: argparse.Namespace) -> Any:
    """The :class:`lib.pipeline.ray_engine.RayOptions` of the parsed flags; None without ``--engine ray``."""
    if args.engine != "ray":
        return None

    return RayOptions(
        address=args.ray_address,
        workers=args.workers,
        cpus_per_worker=args.ray_cpus_per_worker,
        object_store_mb=args.ray_object_store_mb,
        temp_dir=args.ray_temp_dir,
        shard=args.ray_shard_size,
    )
