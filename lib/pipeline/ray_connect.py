"""Reaching Ray: the options of a Ray engine, joining a cluster (checked reachable within seconds, bounded in time) or
starting a local instance (its session files and auth token kept under the cache, not in ``~/.ray``).

    options = RayOptions(address="10.0.0.5:6379", workers=8)
    started_here = connect(ray, options, layout.ray_temp(), stats)
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lib import bounds
from lib.errors import ConfigError, first_line

SHARD = (
    512  # images per task: small enough to balance 2 workers on a 10,000-image split, large enough to amortise a call
)
INSTALL_HINT = "The ray engine needs Ray, an optional dependency: pip install -r requirements-scale.txt"
CONNECT_TIMEOUT_S = 5.0  # a TCP connect to the head: an unreachable address fails in seconds
JOIN_TIMEOUT_S = 20.0  # ray.init against the head: a port that is not Ray's fails well within 30 s
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


def connect(ray: Any, options: RayOptions, default_temp: Path, stats: Any) -> bool:
    """Join the cluster at ``options.address`` or start a local instance; True if it was started here (to stop
    after)."""
    import lib

    package = str(Path(lib.__file__).resolve().parent)
    runtime_env = {"py_modules": [package], "excludes": ["__pycache__"], "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}}
    if ray.is_initialized():
        return False
    if options.address:
        address = _check_reachable(options.address)
        if os.environ.get(_OWN_TOKEN) and os.environ.get("RAY_AUTH_TOKEN_PATH") == os.environ[_OWN_TOKEN]:
            del os.environ["RAY_AUTH_TOKEN_PATH"]  # a local instance's token is no key to another cluster
        _init_within(
            ray,
            JOIN_TIMEOUT_S,
            f"Could not join the Ray cluster at {address}",
            address=address,
            runtime_env=runtime_env,
            log_to_driver=False,
            logging_level="ERROR",
        )
        _check_capacity(ray, options)
        return True
    temp = _temp_dir(options, default_temp)
    stats.temp_dir = str(temp)
    _local_auth_token(temp)
    cpus = max(1, int(np.ceil(options.workers * options.cpus_per_worker)))
    try:
        ray.init(
            num_cpus=cpus,
            object_store_memory=options.object_store_mb << 20,
            _temp_dir=str(temp),
            include_dashboard=False,
            runtime_env=runtime_env,
            log_to_driver=False,
            logging_level="ERROR",
        )
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
        raise ConfigError(
            f"{failure}: no Ray head answered within {seconds:.0f} s. Is {kwargs.get('address')} the head node's GCS "
            "port (6379 by default), and does this machine have the cluster's auth token (RAY_AUTH_TOKEN) if it "
            "uses one?"
        )
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
        raise ConfigError(
            "The Ray address (--ray-address) must be HOST:PORT (the head node's GCS port, 6379 by default), 'auto' or "
            f"ray://HOST:PORT; got {address!r}."
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise ConfigError(
            f"No Ray cluster answers at {text} ({err.strerror or err}). Start one with `ray start --head "
            f"--port={port}`, check the address, or leave --ray-address out to run Ray on this machine."
        ) from err
    return text


def _check_capacity(ray: Any, options: RayOptions) -> None:
    cpus = float(ray.cluster_resources().get("CPU", 0))
    wanted = options.workers * options.cpus_per_worker
    if cpus < wanted:
        ray.shutdown()
        raise ConfigError(
            f"The Ray cluster has {cpus:g} CPUs; {options.workers} workers x {options.cpus_per_worker:g} CPUs need "
            f"{wanted:g}. Ask for fewer --workers or add nodes."
        )


def _local_auth_token(temp: Path) -> None:
    """Ray (2.59+) protects a local instance with a token it writes to ``~/.ray/auth_token``; keep it in the temp dir
    instead,
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


def _temp_dir(options: RayOptions, default: Path) -> Path:
    """Ray's session folder: the given one, else ``default`` (``<cache>/ray``); a path too long for Ray's sockets moves
    to a short one."""
    wanted = (options.temp_dir or default).expanduser().resolve()
    if len(str(wanted)) > _MAX_SOCKET_DIR:
        if options.temp_dir is not None:
            raise ConfigError(
                f"--ray-temp-dir {wanted} is too long for Ray's sockets (at most {_MAX_SOCKET_DIR} characters)."
            )
        wanted = Path(tempfile.gettempdir()) / f"tlx-ray-{os.getuid()}"
    wanted.mkdir(parents=True, exist_ok=True)
    return wanted
