"""Process-wide settings, made once by each entry point (the CLI's ``main`` and ``app.py``), never by a library call.

They are environment variables, read by TensorFlow and TF Hub when those are first imported,
so setting them here costs nothing and imports nothing.

    configure_process(CacheLayout(cache_dir).tfhub_cache())   # first thing in an entry point
    peak_rss_mb()                    # this process's peak memory so far (Linux), for the figures commands print
    machine_info(); library_versions()  # what a measured figure depends on: the CPU, its cores, the libraries
    is_alive(pid, process_start(pid))  # whether that very process still runs (a pid is recycled, pid + start time not)
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any


def configure_process(tfhub_cache: Path | str) -> None:
    """Set TF's log level, legacy Keras for TF Hub layers, deterministic ops, and ``TFHUB_CACHE_DIR`` (the cache's own,
    :meth:`lib.store.layout.CacheLayout.tfhub_cache`, unless the user set one)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # hub.KerasLayer is a Keras 2 layer: TF Hub must see tf_keras, set before TensorFlow is imported.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    # Seeded runs give the same accuracy: deterministic kernels for every TF op this process runs.
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    # A user's own TFHUB_CACHE_DIR wins; otherwise modules download next to the other artifacts.
    if "TFHUB_CACHE_DIR" not in os.environ or os.environ.get("TLX_TFHUB_FROM_CACHE") == "1":
        os.environ["TFHUB_CACHE_DIR"] = str(tfhub_cache)
        os.environ["TLX_TFHUB_FROM_CACHE"] = "1"


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (Linux VmHWM, which an exec resets), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def process_start(pid: int) -> str:
    """A process's start time in clock ticks since boot (Linux), "" if there is no such process: with the pid it names
    one process for good (a pid is recycled, a pid and its start time are not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return ""
    return text.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def is_alive(pid: int, start: str) -> bool:
    """Whether the process ``pid`` that started at ``start`` is still running (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        try:
            os.kill(pid, 0)  # no /proc here: the pid alone
        except (ProcessLookupError, PermissionError):
            return False
        return not start
    fields = text.rsplit(")", 1)[1].split()
    return fields[0] != "Z" and (not start or fields[19] == start)


def machine_info() -> dict[str, Any]:
    """CPU model, core count and platform: figures are only comparable on one machine."""
    cpu = "unknown CPU"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a run's numbers."""
    md = importlib.metadata
    out = {"python": platform.python_version()}
    for name in ("tensorflow", "keras", "tensorflow-hub", "numpy", "scikit-learn"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out
