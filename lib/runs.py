"""The run registry: every trained model is a folder ``<cache>/runs/<run-id>/``.

A run holds ``manifest.json`` (source, backbone, sizes, hyperparameters, seed, history,
metrics, timings, versions), ``head.npz`` (weights) and ``predictions.npz`` (test labels,
predicted classes and the full probability matrix). A run is assembled in a hidden temp
folder and renamed into place, so a crash mid-save never lists as a complete run.

    run_id = save_run(cache_dir, manifest, head, predictions)
    runs = list_runs(cache_dir)                 # newest first
    run = load_run(cache_dir, run_id)           # manifest + head + predictions
    set_label(cache_dir, run_id, "my best")
    delete_run(cache_dir, run_id)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lib import config
from lib.atomic import atomic_dir, read_json, write_json_atomic
from lib.errors import RunError
from lib.heads import HeadConfig, TrainedHead

_RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[a-z0-9_]+-[0-9a-f]{6}$")


@dataclass
class Run:
    """A loaded run: its manifest, head and stored test predictions."""

    run_id: str
    path: Path
    manifest: dict[str, Any]
    head: TrainedHead
    y_true: np.ndarray
    probs: np.ndarray
    indices: np.ndarray  # test-split image index of each prediction row

    @property
    def classes(self) -> list[str]:
        """Class names in label order."""
        return list(self.manifest["classes"])

    @property
    def y_pred(self) -> np.ndarray:
        """Predicted class per test row."""
        return self.probs.argmax(axis=1)


def runs_dir(cache_dir: Path | str) -> Path:
    """Folder that holds every run."""
    return Path(cache_dir) / "runs"


def new_run_id(manifest: dict[str, Any]) -> str:
    """A sortable, unique id: time, head kind, and a hash of the manifest."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256((json.dumps(manifest, sort_keys=True, default=str) + str(time.time_ns()) + str(os.getpid())).encode())
    head = re.sub(r"[^a-z0-9_]", "", str(manifest.get("head", {}).get("head", "head")).lower()) or "head"
    return f"{stamp}-{head}-{digest.hexdigest()[:6]}"


MODEL_DIR = "model"  # a fine-tuned run's full model (backbone + head), in the export format


def save_run(cache_dir: Path | str, manifest: dict[str, Any], head: TrainedHead, predictions: dict[str, np.ndarray],
             write_extra: Callable[[Path], None] | None = None) -> str:  # fmt: skip
    """Write a complete run atomically and return its id; ``write_extra`` adds files inside the same temp folder."""
    run_id = new_run_id(manifest)
    manifest = {**manifest, "run_id": run_id, "format": config.RUN_FORMAT_VERSION}
    with atomic_dir(runs_dir(cache_dir) / run_id) as tmp:
        np.savez(tmp / "head.npz", **head.arrays())  # type: ignore[arg-type]
        np.savez(tmp / "predictions.npz", **predictions)  # type: ignore[arg-type]
        if write_extra is not None:
            write_extra(tmp)
        # The manifest is written last: a folder without one is never listed.
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return run_id


def _check_id(run_id: str) -> str:
    run_id = str(run_id).strip()
    if not _RUN_ID.match(run_id):
        raise RunError(f"{run_id!r} is not a run id (expected something like 20261128-101500-mlp-a1b2c3; see `python -m lib runs list`).")
    return run_id


def list_runs(cache_dir: Path | str) -> list[dict[str, Any]]:
    """Manifests of every complete run, newest first."""
    folder = runs_dir(cache_dir)
    if not folder.is_dir():
        return []
    out = []
    for p in folder.iterdir():
        if p.name.startswith(".") or not p.is_dir():
            continue
        manifest = read_json(p / "manifest.json")
        if manifest and (p / "head.npz").exists() and (p / "predictions.npz").exists():
            out.append(manifest)
    return sorted(out, key=lambda m: m.get("run_id", ""), reverse=True)


def read_manifest(cache_dir: Path | str, run_id: str) -> dict[str, Any]:
    """The manifest of one run, or :class:`RunError` if missing or damaged."""
    path = runs_dir(cache_dir) / _check_id(run_id) / "manifest.json"
    manifest = read_json(path)
    if manifest is None:
        raise RunError(f"Run {run_id} not found in {runs_dir(cache_dir)} (or its manifest is damaged).")
    return manifest


def load_run(cache_dir: Path | str, run_id: str) -> Run:
    """Load a run's manifest, head weights and stored test predictions."""
    manifest = read_manifest(cache_dir, run_id)
    path = runs_dir(cache_dir) / run_id
    try:
        with np.load(path / "head.npz") as arrays:
            head = TrainedHead.from_arrays(HeadConfig(**manifest["head"]), arrays, manifest.get("history"))
        with np.load(path / "predictions.npz") as pred:
            y_true, probs, indices = pred["y_true"], pred["probs"], pred["indices"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RunError(f"Run {run_id} is damaged ({err}); delete it with `python -m lib runs delete {run_id}`.") from err
    return Run(run_id, path, manifest, head, y_true, probs.astype(np.float32), indices)


def set_label(cache_dir: Path | str, run_id: str, label: str) -> dict[str, Any]:
    """Give a run a human-readable label (shown instead of its id)."""
    manifest = read_manifest(cache_dir, run_id)
    manifest["label"] = label.strip()[:120]
    write_json_atomic(runs_dir(cache_dir) / run_id / "manifest.json", manifest)
    return manifest


def delete_run(cache_dir: Path | str, run_id: str) -> None:
    """Remove a run: renamed out of the listing first, then deleted."""
    path = runs_dir(cache_dir) / _check_id(run_id)
    if not path.is_dir():
        raise RunError(f"Run {run_id} not found in {runs_dir(cache_dir)}.")
    trash = path.with_name(f".{run_id}.deleted-{time.time_ns()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def display_name(manifest: dict[str, Any]) -> str:
    """A short name for menus: the label if set, else the id, with the accuracy."""
    acc = manifest.get("metrics", {}).get("test_accuracy")
    name = manifest.get("label") or manifest.get("run_id", "?")
    return f"{name} ({acc:.2%})" if isinstance(acc, float) else str(name)
