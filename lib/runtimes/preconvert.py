"""Converting ahead: every converted model a set of (backbone, size, runtime) configurations needs, in parallel
processes.

TFLite's converter, and above all its int8 calibration, runs on one core; converting ahead in parallel processes uses
every core and keeps conversion out of timed measurements, which then run alone.

    seconds = preconvert(source, ds, [(backbone, 128, "litert"), ...], layout, workers=2)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from lib.data.sources import load_dataset
from lib.errors import BackboneError, UserFacingError
from lib.models.specs import resolve_backbone
from lib.process import configure_process
from lib.runtimes.backbones import load_backbone
from lib.runtimes.registry import effective
from lib.store.layout import CacheLayout

_WORKER_MODELS: dict[str, Any] = {}  # in a conversion worker: the TF-loaded backbone it converts now


def _convert_in_worker(
    source: str, layout: CacheLayout, backbone: str, size: int, runtime: str
) -> tuple[float, str | None]:
    """One conversion in a worker process (its own entry point: ``layout`` is the parent's, pickled as its folder):
    (seconds, None) or (seconds, the one-line error)."""
    configure_process(layout.tfhub_cache())

    t0 = time.perf_counter()
    try:
        spec = resolve_backbone(backbone)
        if spec.handle not in _WORKER_MODELS:
            _WORKER_MODELS.clear()  # one backbone at a time per worker: memory stays bounded
            _WORKER_MODELS[spec.handle] = load_backbone(spec)
        effective(spec, runtime).convert(
            spec, size, load_dataset(source, layout), layout, lambda: _WORKER_MODELS[spec.handle]
        )
        return time.perf_counter() - t0, None
    except UserFacingError as err:
        return time.perf_counter() - t0, str(err)


def preconvert(
    source: str,
    ds: Any,
    configs: list[tuple[str, int, str]],
    layout: CacheLayout,
    workers: int,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[tuple[str, int, str], float]:
    """Convert every model the configurations need and the cache lacks, ``workers`` at a time. Returns the seconds each
    conversion took in its worker. A model that cannot be converted stops before anything is measured, with the
    converter's reason."""
    import concurrent.futures as cf
    import multiprocessing

    jobs = []
    for backbone, size, runtime in configs:
        spec = resolve_backbone(backbone)
        target = effective(spec, runtime).converted(spec, size, ds, layout)
        if target is not None and not target.is_file():
            jobs.append((spec.handle, size, runtime, spec.name))
    done: dict[tuple[str, int, str], float] = {}
    if not jobs:
        return done
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked TensorFlow state
    with cf.ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx) as pool:
        futures = {
            pool.submit(_convert_in_worker, source, layout, h, size, rt): (h, size, rt, name)
            for h, size, rt, name in jobs
        }
        try:
            for n, fut in enumerate(cf.as_completed(futures)):
                handle, size, runtime, name = futures[fut]
                seconds, error = fut.result()
                if error:
                    raise BackboneError(error)
                done[(handle, size, runtime)] = seconds
                if progress:
                    progress(n + 1, len(jobs), f"converted {name} @{size} {runtime}")
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return done
