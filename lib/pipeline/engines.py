"""Engines: where a missing feature artifact is computed. :class:`LocalEngine` runs the backbone in this process;
:class:`lib.pipeline.ray_engine.RayEngine` on Ray workers. Both take an
:class:`lib.pipeline.features.ExtractionJob` and fill its chunks; the artifact is written the same way either way.

    with open_engine(None, layout) as engine:              # LocalEngine (ray_options: RayEngine)
        ensure_features(ds, "train", spec, layout, 128, engine=engine)
    LocalEngine(layout, backbone=already_loaded)            # a model the caller loaded (the app's cached one)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from lib.jobs.report import announce
from lib.pipeline.ray_engine import RayEngine
from lib.runtimes import DEFAULT_RUNTIME, effective, registry
from lib.store.layout import CacheLayout

if TYPE_CHECKING:
    from lib.pipeline.feature_store import ProgressFn, Timer
    from lib.pipeline.features import ExtractionJob, FeatureResult


class LocalEngine:
    """This process: each missing chunk in turn, a batch at a time. Loaded backbones are kept for the engine's life,
    so several artifacts load a TF backbone once (it runs at any size) and a converted one once per size."""

    def __init__(self, layout: CacheLayout, backbone: Any = None) -> None:
        self.layout = layout
        self.given = backbone  # a model the caller already loaded: used for every job
        self.loaded: dict[tuple[str, str, int], Any] = {}
        self.last_stats: Any = None

    def backbone_for(self, job: ExtractionJob) -> Any:
        """The loaded backbone for ``job`` (loaded, or converted and loaded, on first use)."""
        if self.given is not None:
            return self.given
        runtime = effective(job.spec, job.runtime)
        key = (job.spec.identity(), runtime.name, 0 if runtime.any_size else job.size)
        if key not in self.loaded:
            converted = runtime.converted(job.spec, job.size, job.dataset, self.layout)
            if converted is not None and not converted.is_file():
                announce(f"Converting {job.spec.name} to {runtime.name} at {job.size}px (once; then cached)")
            else:
                announce(f"Loading the backbone {job.spec.name} ({runtime.name})")
            self.loaded[key] = runtime.load(job.spec, job.size, job.dataset, self.layout, self._tf_model(job))
        return self.loaded[key]

    def _tf_model(self, job: ExtractionJob) -> Callable[[], Any]:
        """The TF-loaded backbone a conversion starts from, loaded at most once per engine (and only if one
        converts)."""

        def tf_model() -> Any:
            key = (job.spec.identity(), DEFAULT_RUNTIME, 0)
            if key not in self.loaded:
                self.loaded[key] = registry()[DEFAULT_RUNTIME].load(job.spec, job.size, job.dataset, self.layout)
            return self.loaded[key]

        return tf_model

    def extract(self, job: ExtractionJob, progress: ProgressFn | None, batch_size: int) -> FeatureResult:
        """Compute ``job`` in this process."""
        backbone = self.backbone_for(job)
        backbone.check_size(job.size)
        return job.run(
            lambda todo, save, timer: _embed_chunks(backbone, job, todo, save, timer, batch_size),
            progress,
            backbone.feature_dim,
        )

    def close(self) -> None:
        """Forget the loaded models."""
        self.loaded.clear()


def _embed_chunks(
    backbone: Any,
    job: ExtractionJob,
    todo: list[tuple[int, int]],
    save: Callable[[int, np.ndarray], None],
    timer: Timer,
    batch_size: int,
) -> None:
    for s, e in todo:
        parts = []
        for b in range(s, e, batch_size):
            end = min(b + batch_size, e)
            parts.append(backbone.embed(job.read_rows(b, end), job.size, job.flip))
            timer.step(end - b)
        save(s, np.concatenate(parts))


@contextlib.contextmanager
def open_engine(ray_options: Any, layout: CacheLayout, backbone: Any = None) -> Iterator[Any]:
    """The engine for these options, closed on leaving: Ray workers when ``ray_options`` is given
    (:class:`lib.pipeline.ray_engine.RayOptions`; Ray is imported only then), else this process."""
    if ray_options is None:
        engine = LocalEngine(layout, backbone)
        try:
            yield engine
        finally:
            engine.close()
        return

    with RayEngine(ray_options, layout) as ray_engine:
        yield ray_engine
