"""Feature extraction on a Ray cluster: the same chunks, artifacts, keys and manifests as the local engine.

Ray is optional (``pip install -r requirements-scale.txt``) and imported only here, only when the
``ray`` engine is asked for; nothing on the default path imports this module's Ray half.

How it works:

- Each worker is a Ray actor that loads the backbone once (TF, or the LiteRT model the driver
  converted, shipped as bytes), with ``num_cpus`` (and a GPU where the cluster has them) per actor.
- The driver reads the split's memory-mapped images a shard at a time (``SHARD`` images) and sends
  them through Ray's object store, at most two shards per worker in flight, so no node needs the
  dataset on disk and memory stays bounded. Only the backbone must be reachable from every node
  (a TF Hub handle, or a path every node mounts).
- Results land in the local engine's checkpoint chunks (``<key>.partial/chunk_*.npy``, 4,096 rows),
  written atomically by the driver, so an interrupted extraction, by either engine, resumes from
  the chunks that finished. The finished ``.npy`` and its manifest are the local engine's, byte for
  byte in layout; a run cannot tell which engine made its features.
- A worker that dies has its shards sent to the others; when none is left the job stops with a
  clear error, having written only whole chunks.

    with RayEngine(RayOptions(workers=2), layout) as engine:
        result = ensure_features(ds, "test", spec, layout, 128, engine=engine)
        engine.last_stats.images_per_node    # {"<node id>": 5000, ...}
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lib.errors import BackboneError, UserFacingError, first_line
from lib.pipeline.ray_connect import SHARD, RayOptions, RayStats, connect, import_ray
from lib.runtimes import effective, litert
from lib.runtimes.backbones import load_backbone
from lib.store.layout import CacheLayout

if TYPE_CHECKING:
    from lib.data.sources import Dataset
    from lib.models.specs import BackboneSpec
    from lib.pipeline.features import ExtractionJob, FeatureResult, ProgressFn

__all__ = ["SHARD", "RayEngine", "RayOptions", "RayStats"]
READY_TIMEOUT_S = 600.0  # a worker loads TensorFlow and the backbone (a TF Hub download on a fresh node)


class RayEngine:
    """A Ray connection (or local instance) and its workers, kept for several artifacts; Ray starts on the first job.

    with RayEngine(RayOptions(address="10.0.0.5:6379", workers=8), layout) as engine:
        for split in ("train", "test"):
            ensure_features(ds, split, spec, layout, 224, engine=engine)
    """

    def __init__(self, options: RayOptions, layout: CacheLayout) -> None:
        self.options, self.layout = options, layout
        self.ray: Any = None
        self.started_here = False
        self.temp_dir = ""  # a local instance's session folder
        self.actors: dict[tuple[str, str, int], tuple[list[Any], int]] = {}
        self.last_stats = RayStats()

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers, and the Ray instance if it was started here."""
        if self.ray is not None:
            self._stop_workers()
            if self.started_here:
                self.ray.shutdown()
        self.ray = None

    def _stop_workers(self) -> None:
        for actors, _ in self.actors.values():
            for actor in actors:
                self.ray.kill(actor)
        self.actors = {}

    def extract(self, job: ExtractionJob, progress: ProgressFn | None, batch_size: int) -> FeatureResult:
        """Compute ``job`` on Ray workers; what Ray did is in :attr:`last_stats`."""
        stats = self.last_stats = RayStats(address=self.options.address or "local")
        t0 = time.perf_counter()
        if self.ray is None:
            ray = import_ray()
            self.started_here = connect(ray, self.options, self.layout.ray_temp(), stats)
            self.ray, self.temp_dir = ray, stats.temp_dir
        stats.temp_dir = self.temp_dir
        spec, runtime, size = job.spec, job.runtime, job.size
        key = (spec.identity(), runtime, size)
        if key not in self.actors:
            # one set at a time: another backbone's workers would hold the CPUs the new ones wait for
            self._stop_workers()
            model = _model_payload(spec, runtime, size, job.dataset, self.layout)
            self.actors[key] = _start_actors(
                self.ray, self.options, spec, runtime, size, tuple(job.dataset.image_shape), model
            )
        actors, dim = self.actors[key]
        stats.workers, stats.startup_seconds = len(actors), time.perf_counter() - t0
        t1 = time.perf_counter()
        result = job.run(
            lambda todo, save, timer: _dispatch(
                self.ray, actors, job, todo, save, timer, self.options.shard, batch_size, stats
            ),
            progress,
            dim,
        )
        if stats.workers_lost:
            self.actors.pop(key, None)  # start a whole set again for the next artifact
        stats.extract_seconds = time.perf_counter() - t1
        stats.images = sum(stats.images_per_node.values())
        return result


# --------------------------------------------------------------------------- workers


def _model_payload(spec: BackboneSpec, runtime: str, size: int, dataset: Dataset, layout: CacheLayout) -> bytes | None:
    """A converting runtime's model (converted here once, cached), as bytes every worker receives; None for TF."""
    path = effective(spec, runtime).convert(spec, size, dataset, layout)
    return path.read_bytes() if path is not None else None


def _start_actors(
    ray: Any,
    options: RayOptions,
    spec: BackboneSpec,
    runtime: str,
    size: int,
    shape: tuple[int, ...],
    model: bytes | None,
) -> tuple[list[Any], int]:
    """The started actors, each with its backbone loaded, and the feature dimension."""
    gpus = options.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= options.workers else 0.0
    worker_cls = ray.remote(Embedder).options(num_cpus=options.cpus_per_worker, num_gpus=gpus, max_restarts=0)
    model_ref = ray.put(model) if model is not None else None
    threads = max(1, int(options.cpus_per_worker))
    actors = [worker_cls.remote(spec, runtime, size, shape, model_ref, threads) for _ in range(options.workers)]
    try:
        dims = ray.get([a.ready.remote() for a in actors], timeout=READY_TIMEOUT_S)
    except Exception as err:
        for a in actors:
            ray.kill(a)
        raise _worker_error(err, f"The Ray workers could not load {spec.name}") from err
    return actors, int(dims[0])


def _worker_error(err: BaseException, what: str, after: str = "") -> UserFacingError:
    """The project's own error that a worker raised (Ray wraps it in a RayTaskError), as is; any other failure as a
    :class:`BackboneError` saying ``what`` and the first line of its message."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, UserFacingError):
        return type(cause)(str(cause))
    return BackboneError(f"{what}: {first_line(err)}.{after}")


class Embedder:
    """A Ray actor: loads the backbone once, then embeds shards of uint8 images."""

    def __init__(
        self, spec: BackboneSpec, runtime: str, size: int, shape: tuple[int, ...], model: bytes | None, threads: int
    ) -> None:
        self.node = _node_id()
        self.pid = os.getpid()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if model is None:
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)

            self.backbone: Any = load_backbone(spec)
        else:
            fd, name = tempfile.mkstemp(suffix=".tflite")
            with os.fdopen(fd, "wb") as fh:
                fh.write(model)
            litert.threads = lambda: threads  # type: ignore[assignment]  # this process is the actor's alone
            self.backbone = litert.LiteRTBackbone(spec, Path(name), runtime, size, shape)  # type: ignore[arg-type]
        self.backbone.check_size(size)
        # Fault injection, for the tests only: the worker process exits when handed the shard starting at this row
        # (with a marker path, only the first worker to claim the marker does).
        self._fail_at = int(os.environ.get("TLX_RAY_TEST_DIE_AT", "-1"))
        self._fail_marker = os.environ.get("TLX_RAY_TEST_DIE_MARKER")

    def ready(self) -> int:
        """The feature dimension, once the backbone is loaded."""
        return int(self.backbone.feature_dim)

    def embed(
        self, start: int, images: np.ndarray, size: int, flip: bool, batch_size: int
    ) -> tuple[int, np.ndarray, str]:
        """``(start, features [n, D] float32, node id)`` for a shard whose first row is ``start``."""
        if start == self._fail_at and self._claim_failure():
            os._exit(1)  # a worker process dying mid-job, as on a lost node
        parts = [self.backbone.embed(images[b : b + batch_size], size, flip) for b in range(0, len(images), batch_size)]
        return start, np.concatenate(parts).astype(np.float32), self.node

    def _claim_failure(self) -> bool:
        if not self._fail_marker:
            return True
        try:
            os.close(os.open(self._fail_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True


def _node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


# --------------------------------------------------------------------------- the driver's loop


def _dispatch(
    ray: Any,
    actors: list[Any],
    job: Any,
    todo: list[tuple[int, int]],
    save: Any,
    timer: Any,
    shard: int,
    batch_size: int,
    stats: RayStats,
) -> None:
    """Send every shard of the chunks in ``todo`` to the actors, collect features into whole chunks, ``save`` each."""
    queue = deque((s, min(s + shard, e)) for s, e in todo for s in range(s, e, shard))
    open_chunks: dict[int, dict[int, np.ndarray]] = {}
    chunk_of = {s: cs for cs, ce in todo for s in range(cs, ce, shard)}
    chunk_end = dict(todo)
    inflight: dict[Any, tuple[Any, tuple[int, int]]] = {}  # object ref -> (actor, shard)
    alive = list(actors)

    def submit() -> None:
        for actor in list(alive):
            while queue and sum(1 for a, _ in inflight.values() if a is actor) < 2:
                s, e = queue.popleft()
                ref = actor.embed.remote(s, job.read_rows(s, e), job.size, job.flip, batch_size)
                inflight[ref] = (actor, (s, e))

    busy = time.perf_counter()
    submit()
    while inflight:
        stats.driver_seconds += time.perf_counter() - busy
        ready, _ = ray.wait(list(inflight), num_returns=1)
        busy = time.perf_counter()
        ref = ready[0]
        actor, (s, e) = inflight.pop(ref)
        try:
            start, block, node = ray.get(ref)
        except ray.exceptions.RayActorError:
            # The worker died (its process, or its node). Its shards go back to the queue for the others.
            stats.workers_lost += actor in alive
            if actor in alive:
                alive.remove(actor)
            queue.appendleft((s, e))
            for other in [r for r, (a, _) in inflight.items() if a is actor]:
                queue.appendleft(inflight.pop(other)[1])
            if not alive:
                raise BackboneError(
                    f"Every Ray worker died ({stats.workers_lost} lost); the chunks finished so far are saved. "
                    "Run the same command again to resume from them."
                ) from None
            submit()
            continue
        except ray.exceptions.RayTaskError as err:  # the worker is alive but the backbone failed on these images
            raise _worker_error(
                err, f"A Ray worker failed on images {s:,}-{e:,}", " The chunks finished so far are saved."
            ) from err
        stats.images_per_node[node] = stats.images_per_node.get(node, 0) + (e - s)
        timer.step(e - s)
        chunk = chunk_of[start]
        parts = open_chunks.setdefault(chunk, {})
        parts[start] = block
        if sum(len(b) for b in parts.values()) == chunk_end[chunk] - chunk:
            save(chunk, np.concatenate([parts[k] for k in sorted(parts)]))
            del open_chunks[chunk]
        submit()
    stats.driver_seconds += time.perf_counter() - busy
