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

    result, stats = ray_get_features(ds, "test", spec, cache, 128, options=RayOptions(workers=2))
    stats.images_per_node    # {"<node id>": 5000, ...}
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lib.errors import BackboneError, ConfigError, UserFacingError, first_line

if TYPE_CHECKING:
    from lib.data.sources import Dataset
    from lib.models.specs import BackboneSpec
    from lib.pipeline.features import FeatureResult, ProgressFn

SHARD = 512  # images per task: small enough to balance 2 workers on a 10,000-image split, large enough to amortise a call
INSTALL_HINT = "The ray engine needs Ray, an optional dependency: pip install -r requirements-scale.txt"
CONNECT_TIMEOUT_S = 5.0  # a TCP connect to the head: an unreachable address fails in seconds
JOIN_TIMEOUT_S = 20.0  # ray.init against the head: a port that is not Ray's fails well within 30 s
READY_TIMEOUT_S = 600.0  # a worker loads TensorFlow and the backbone (a TF Hub download on a fresh node)
_OWN_TOKEN = "TLX_RAY_LOCAL_TOKEN"  # the token file this process made for a local instance (not one the user set)
_MAX_SOCKET_DIR = 60  # Ray's session sockets live under the temp dir; a unix socket path must stay under 108 bytes


@dataclass
class RayOptions:
    """How to run on Ray. With no ``address`` a local Ray instance is started (and stopped after)."""

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # None: one per worker where the cluster has GPUs
    object_store_mb: int = 512  # a local instance's object store (Ray's default takes 30% of RAM)
    temp_dir: Path | None = None  # a local instance's session files (default: <cache>/ray)
    shard: int = SHARD

    def __post_init__(self) -> None:
        # The same bounds as the CLI's flags and the app's widgets: a form or a URL reaches here too.
        from lib import bounds

        if self.address is not None:
            self.address = bounds.address(self.address)
        bounds.check("workers", self.workers)
        bounds.check("ray_cpus_per_worker", self.cpus_per_worker)
        bounds.check("ray_object_store_mb", self.object_store_mb)
        bounds.check("ray_shard_size", self.shard)


@dataclass
class RayStats:
    """What the Ray engine did: where the work ran and what the fixed cost was."""

    workers: int = 0
    address: str = ""
    startup_seconds: float = 0.0  # connect or start Ray, start the actors, load the backbone in each
    extract_seconds: float = 0.0  # first shard sent to last chunk written
    images: int = 0
    images_per_node: dict[str, int] = field(default_factory=dict)
    workers_lost: int = 0
    temp_dir: str = ""
    driver_seconds: float = 0.0  # the driver's own work (reading shards, sending them, saving chunks), not its waits

    def as_dict(self) -> dict[str, Any]:
        rate = self.images / self.extract_seconds if self.extract_seconds else 0.0
        return {**self.__dict__, "images_per_second": round(rate, 1), "nodes": len(self.images_per_node)}


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`ConfigError` that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ConfigError(f"{INSTALL_HINT} (could not import ray: {err}).") from err
    return ray


def ray_get_features(
    dataset: Dataset, split: str, spec: BackboneSpec, cache_dir: Path | str, image_size: int | None = None, view: str = "original",
    limit: int | None = None, batch_size: int = 256, progress: ProgressFn | None = None, runtime: str = "tf",
    options: RayOptions | None = None,
) -> tuple[FeatureResult, RayStats]:  # fmt: skip
    """One artifact on Ray (see :class:`RayEngine` to make several with one start-up)."""
    with RayEngine(options or RayOptions(), cache_dir) as engine:
        return engine.get_features(dataset, split, spec, image_size, view, limit, batch_size, progress, runtime)


@contextlib.contextmanager
def optional_engine(options: RayOptions | None, cache_dir: Path | str) -> Iterator[RayEngine | None]:
    """A :class:`RayEngine` for ``options``, closed on leaving; None (extract in this process) when ``options`` is None."""
    if options is None:
        yield None
        return
    with RayEngine(options, cache_dir) as engine:
        yield engine


class RayEngine:
    """A Ray connection (or local instance) and its workers, kept for several artifacts; Ray starts on the first cache miss.

        with RayEngine(RayOptions(address="10.0.0.5:6379", workers=8), cache) as engine:
            for split in ("train", "test"):
                result, stats = engine.get_features(ds, split, spec, 224)
    """

    def __init__(self, options: RayOptions, cache_dir: Path | str) -> None:
        if options.workers < 1 or options.shard < 1 or options.cpus_per_worker <= 0:
            raise ConfigError("--workers, the CPUs per worker and the shard size must be positive.")
        self.options, self.cache_dir = options, cache_dir
        self.ray: Any = None
        self.started_here = False
        self.temp_dir = ""  # a local instance's session folder
        self.actors: dict[tuple[str, str, int], tuple[list[Any], int]] = {}

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

    def get_features(
        self, dataset: Dataset, split: str, spec: BackboneSpec, image_size: int | None = None, view: str = "original", limit: int | None = None,
        batch_size: int = 256, progress: ProgressFn | None = None, runtime: str = "tf",
    ) -> tuple[FeatureResult, RayStats]:  # fmt: skip
        """Load cached features, or extract them on Ray; returns the result and what Ray did (empty on a cache hit)."""
        from lib.pipeline import features

        if view not in features.VIEWS:
            raise ConfigError(f"view must be one of {', '.join(features.VIEWS)}, got {view!r}")
        cached = features.cached_feature_result(dataset, split, spec, image_size, view, limit, self.cache_dir, runtime)
        if cached is not None:
            return cached, RayStats()
        size = int(image_size or spec.default_size())
        job = features.ExtractionJob.plan(dataset, split, spec, size, view, limit, runtime, self.cache_dir)
        stats = RayStats(address=self.options.address or "local")
        t0 = time.perf_counter()
        if self.ray is None:
            ray = import_ray()
            self.started_here = _connect(ray, self.options, Path(self.cache_dir), stats)
            self.ray, self.temp_dir = ray, stats.temp_dir
        stats.temp_dir = self.temp_dir
        key = (spec.identity(), runtime, size)
        if key not in self.actors:
            self._stop_workers()  # one set at a time: another backbone's workers would hold the CPUs the new ones wait for
            model = _model_payload(spec, runtime, size, dataset, self.cache_dir)
            self.actors[key] = _start_actors(self.ray, self.options, spec, runtime, size, tuple(dataset.image_shape), model)
        actors, dim = self.actors[key]
        stats.workers, stats.startup_seconds = len(actors), time.perf_counter() - t0
        t1 = time.perf_counter()
        result = job.run(lambda todo, save, timer: _dispatch(self.ray, actors, job, todo, save, timer, self.options.shard, batch_size, stats),
                         progress, dim)  # fmt: skip
        if stats.workers_lost:
            self.actors.pop(key, None)  # start a whole set again for the next artifact
        stats.extract_seconds = time.perf_counter() - t1
        stats.images = sum(stats.images_per_node.values())
        return result, stats


# --------------------------------------------------------------------------- connecting


def _connect(ray: Any, options: RayOptions, cache_dir: Path, stats: RayStats) -> bool:
    """Join the cluster at ``options.address`` or start a local instance; True if it was started here (to stop after)."""
    import lib

    package = str(Path(lib.__file__).resolve().parent)
    runtime_env = {"py_modules": [package], "excludes": ["__pycache__"], "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}}
    if ray.is_initialized():
        return False
    if options.address:
        address = _check_reachable(options.address)
        if os.environ.get(_OWN_TOKEN) and os.environ.get("RAY_AUTH_TOKEN_PATH") == os.environ[_OWN_TOKEN]:
            del os.environ["RAY_AUTH_TOKEN_PATH"]  # a local instance's token is no key to another cluster
        _init_within(ray, JOIN_TIMEOUT_S, f"Could not join the Ray cluster at {address}",
                     address=address, runtime_env=runtime_env, log_to_driver=False, logging_level="ERROR")  # fmt: skip
        _check_capacity(ray, options)
        return True
    temp = _temp_dir(options, cache_dir)
    stats.temp_dir = str(temp)
    _local_auth_token(temp)
    cpus = max(1, int(np.ceil(options.workers * options.cpus_per_worker)))
    try:
        ray.init(num_cpus=cpus, object_store_memory=options.object_store_mb << 20, _temp_dir=str(temp), include_dashboard=False,
                 runtime_env=runtime_env, log_to_driver=False, logging_level="ERROR")  # fmt: skip
    except Exception as err:
        raise ConfigError(f"Could not start a local Ray instance (temp dir {temp}): {first_line(err)}") from err
    return True


def _init_within(ray: Any, seconds: float, failure: str, **kwargs: Any) -> None:
    """``ray.init(**kwargs)``, or a :class:`ConfigError` after ``seconds``: something that accepts connections but is
    not a Ray head (another service on that port) makes ``ray.init`` retry for minutes."""
    import threading

    outcome: dict[str, BaseException | None] = {}

    def init() -> None:
        try:
            ray.init(**kwargs)
            outcome["error"] = None
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = err

    thread = threading.Thread(target=init, name="ray-init", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise ConfigError(f"{failure}: no Ray head answered within {seconds:.0f} s. Is {kwargs.get('address')} the head node's GCS port "
                          "(6379 by default), and does this machine have the cluster's auth token (RAY_AUTH_TOKEN) if it uses one?")  # fmt: skip
    err = outcome.get("error")
    if err is not None:
        raise ConfigError(f"{failure}: {first_line(err)}") from err


def _check_reachable(address: str) -> str:
    """The address to give ``ray.init``, after checking within seconds that something answers there."""
    text = address.strip()
    if text == "auto" or text.startswith("ray://"):
        return text  # "auto" reads the local node's address file; Ray Client has its own connect timeout
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("The Ray address (--ray-address) must be HOST:PORT (the head node's GCS port, 6379 by default), 'auto' or "
                          f"ray://HOST:PORT; got {address!r}.")  # fmt: skip
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise ConfigError(
            f"No Ray cluster answers at {text} ({err.strerror or err}). Start one with `ray start --head --port={port}`, "
            "check the address, or leave --ray-address out to run Ray on this machine."
        ) from err
    return text


def _check_capacity(ray: Any, options: RayOptions) -> None:
    cpus = float(ray.cluster_resources().get("CPU", 0))
    wanted = options.workers * options.cpus_per_worker
    if cpus < wanted:
        ray.shutdown()
        raise ConfigError(f"The Ray cluster has {cpus:g} CPUs; {options.workers} workers x {options.cpus_per_worker:g} CPUs need {wanted:g}. "
                          "Ask for fewer --workers or add nodes.")  # fmt: skip


def _local_auth_token(temp: Path) -> None:
    """Ray (2.59+) protects a local instance with a token it writes to ``~/.ray/auth_token``; keep it in the temp dir instead,
    unless the user already chose one (``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``)."""
    import secrets

    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    token = temp / "auth_token"
    if not token.exists():
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    os.environ["RAY_AUTH_TOKEN_PATH"] = os.environ[_OWN_TOKEN] = str(token)


def _temp_dir(options: RayOptions, cache_dir: Path) -> Path:
    """Ray's session folder: the given one, else ``<cache>/ray``; a path too long for Ray's sockets moves to a short one."""
    wanted = (options.temp_dir or cache_dir / "ray").expanduser().resolve()
    if len(str(wanted)) > _MAX_SOCKET_DIR:
        if options.temp_dir is not None:
            raise ConfigError(f"--ray-temp-dir {wanted} is too long for Ray's sockets (at most {_MAX_SOCKET_DIR} characters).")
        wanted = Path(tempfile.gettempdir()) / f"tlx-ray-{os.getuid()}"
    wanted.mkdir(parents=True, exist_ok=True)
    return wanted


# --------------------------------------------------------------------------- workers


def _model_payload(spec: BackboneSpec, runtime: str, size: int, dataset: Dataset, cache_dir: Path | str) -> bytes | None:
    """A LiteRT runtime's converted model (converted here once, cached), as bytes every worker receives; None for TF."""
    from lib.models.runtimes import convert, effective_runtime

    if effective_runtime(spec, runtime) in ("tf", "tflite"):
        return None
    return convert(spec, size, runtime, dataset, cache_dir).read_bytes()


def _start_actors(ray: Any, options: RayOptions, spec: BackboneSpec, runtime: str, size: int, shape: tuple[int, ...],
                  model: bytes | None) -> tuple[list[Any], int]:  # fmt: skip
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

    def __init__(self, spec: BackboneSpec, runtime: str, size: int, shape: tuple[int, ...], model: bytes | None, threads: int) -> None:
        self.node = _node_id()
        self.pid = os.getpid()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if model is None:
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
            from lib.models.backbones import load_backbone

            self.backbone: Any = load_backbone(spec)
        else:
            from lib.models import runtimes

            fd, name = tempfile.mkstemp(suffix=".tflite")
            with os.fdopen(fd, "wb") as fh:
                fh.write(model)
            runtimes.threads = lambda: threads  # type: ignore[assignment]  # this process is the actor's alone
            self.backbone = runtimes.LiteRTBackbone(spec, Path(name), runtime, size, shape)  # type: ignore[arg-type]
        self.backbone.check_size(size)
        # Fault injection, for the tests only: the worker process exits when handed the shard starting at this row
        # (with a marker path, only the first worker to claim the marker does).
        self._fail_at = int(os.environ.get("TLX_RAY_TEST_DIE_AT", "-1"))
        self._fail_marker = os.environ.get("TLX_RAY_TEST_DIE_MARKER")

    def ready(self) -> int:
        """The feature dimension, once the backbone is loaded."""
        return int(self.backbone.feature_dim)

    def embed(self, start: int, images: np.ndarray, size: int, flip: bool, batch_size: int) -> tuple[int, np.ndarray, str]:
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


def _dispatch(ray: Any, actors: list[Any], job: Any, todo: list[tuple[int, int]], save: Any, timer: Any, shard: int, batch_size: int,
              stats: RayStats) -> None:  # fmt: skip
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
            raise _worker_error(err, f"A Ray worker failed on images {s:,}-{e:,}", " The chunks finished so far are saved.") from err
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
