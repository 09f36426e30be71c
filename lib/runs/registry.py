"""The run registry: every trained model is a folder ``<cache>/runs/<run-id>/``.

A run holds ``manifest.json`` (a :class:`RunManifest`), ``head.npz`` (weights) and
``predictions.npz`` (test labels, predicted classes and the full probability matrix); a
fine-tuned run also holds its whole model. A run is assembled in a hidden temp folder and
renamed into place, so a crash mid-save never lists as a complete run. Every file is
validated when read: a damaged run is listed as damaged and can be deleted, never crashes.

    run_id = save_run(layout, manifest, head, predictions)
    listing = list_runs(layout)              # valid manifests, newest first
    damaged = list_damaged_runs(layout)      # [(run_id, reason)]
    run = load_run(layout, run_id)           # manifest + head + predictions, checked
    set_label(layout, run_id, "my best")
    delete_run(layout, run_id)
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lib.errors import CacheWriteError, RunError
from lib.models.heads import TrainedHead
from lib.runs.manifest import RunManifest
from lib.store.atomic import atomic_dir, check_writable, describe_os_error, read_json, write_json_atomic
from lib.store.layout import RUN_FILES, CacheLayout

MODEL_DIR = RUN_FILES.model  # a fine-tuned run's full model (backbone + head), in the export format
MAX_LABEL_CHARS = 120


@dataclass
class Run:
    """A loaded run: its manifest, head and stored test predictions."""

    run_id: str
    path: Path
    manifest: RunManifest
    head: TrainedHead
    y_true: np.ndarray
    probs: np.ndarray
    indices: np.ndarray  # test-split image index of each prediction row
    probs_raw: np.ndarray | None = None  # the same before calibration (temperature 1); None for a run made before it
    y_fixed: np.ndarray | None = None  # test labels after the run's label fixes (None: it had none)

    @property
    def classes(self) -> list[str]:
        """Class names in label order."""
        return list(self.manifest.classes)

    @functools.cached_property
    def y_pred(self) -> np.ndarray:
        """Predicted class per test row (computed once: pages index it per point)."""
        return self.probs.argmax(axis=1)

    @property
    def model_dir(self) -> Path:
        """Where a fine-tuned run keeps its full model."""
        return self.path / MODEL_DIR


def new_run_id(manifest: RunManifest) -> str:
    """A sortable, unique id: time, head kind, and a hash of the manifest."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(
        (json.dumps(manifest.to_dict(), sort_keys=True, default=str) + str(time.time_ns()) + str(os.getpid())).encode()
    )
    head = re.sub(r"[^a-z0-9_]", "", manifest.head.head.lower()) or "head"
    return f"{stamp}-{head}-{digest.hexdigest()[:6]}"


def save_run(
    layout: CacheLayout,
    manifest: RunManifest,
    head: TrainedHead,
    predictions: dict[str, np.ndarray],
    write_extra: Callable[[Path], None] | None = None,
) -> str:
    """Write a complete run atomically and return its id; ``write_extra`` adds files inside the same temp folder."""
    manifest.run_id = new_run_id(manifest)
    with atomic_dir(layout.run_dir(manifest.run_id)) as tmp:
        np.savez(tmp / RUN_FILES.head, **head.arrays())  # type: ignore[arg-type]
        np.savez(tmp / RUN_FILES.predictions, **predictions)  # type: ignore[arg-type]
        if write_extra is not None:
            write_extra(tmp)
        # The manifest is written last: a folder without one is never listed.
        (tmp / RUN_FILES.manifest).write_text(json.dumps(manifest.to_dict(), indent=2, default=str))
    return manifest.run_id


def _run_folders(layout: CacheLayout) -> list[Path]:
    return layout.run_folders()


def _check_folder(path: Path) -> RunManifest:
    """The run's manifest if its files look complete, else :class:`RunError` saying what is wrong."""
    manifest = RunManifest.from_dict(read_json(path / RUN_FILES.manifest), where=f"run {path.name}")
    for name in (RUN_FILES.head, RUN_FILES.predictions):
        if not zipfile.is_zipfile(path / name):
            raise RunError(f"Run {path.name} is damaged: {name} is missing or truncated. Delete it and train again.")
    return manifest


def list_runs(layout: CacheLayout) -> list[RunManifest]:
    """Manifests of every complete, valid run, newest first."""
    out = []
    for p in _run_folders(layout):
        try:
            manifest = _check_folder(p)
        except RunError:
            continue
        manifest.run_id = p.name
        out.append(manifest)
    return sorted(out, key=lambda m: m.run_id, reverse=True)


def list_damaged_runs(layout: CacheLayout) -> list[tuple[str, str]]:
    """``(run_id, reason)`` of every run folder that cannot be used, for the user to delete."""
    out = []
    for p in _run_folders(layout):
        try:
            _check_folder(p)
        except RunError as err:
            out.append((p.name, str(err)))
    return sorted(out, reverse=True)


def read_manifest(layout: CacheLayout, run_id: str) -> RunManifest:
    """The validated manifest of one run, or :class:`RunError` if it is missing or damaged."""
    path = layout.run_dir(run_id)
    if not path.is_dir():
        raise RunError(f"Run {run_id} not found in {layout.runs}.")
    manifest = RunManifest.from_dict(read_json(path / RUN_FILES.manifest), where=f"run {run_id}")
    manifest.run_id = path.name
    return manifest


def load_run(layout: CacheLayout, run_id: str) -> Run:
    """Load a run's manifest, head weights and stored test predictions, checking they fit together."""
    manifest = read_manifest(layout, run_id)
    path = layout.run_dir(run_id)
    try:
        with np.load(path / RUN_FILES.head) as arrays:
            head = TrainedHead.from_arrays(manifest.head, arrays, manifest.history)
        with np.load(path / RUN_FILES.predictions) as pred:
            y_true, probs, indices = (
                np.asarray(pred["y_true"]),
                np.asarray(pred["probs"], np.float32),
                np.asarray(pred["indices"]),
            )
            raw = np.asarray(pred["probs_raw"], np.float32) if "probs_raw" in pred.files else None
            fixed = np.asarray(pred["y_fixed"]) if "y_fixed" in pred.files else None
        _check_arrays(manifest, head, y_true, probs, indices)
        if raw is not None and raw.shape != probs.shape:
            raise ValueError(f"uncalibrated probabilities have shape {raw.shape}, not {probs.shape}")
        if fixed is not None and (
            fixed.shape != y_true.shape or (len(fixed) and (fixed.min() < 0 or fixed.max() >= len(manifest.classes)))
        ):
            raise ValueError("the fixed test labels do not match the predictions")
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        raise RunError(
            f"Run {run_id} is damaged ({str(err)[:200]}); delete it (Train page, or `python -m lib runs delete "
            f"{run_id}`)."
        ) from err
    return Run(manifest.run_id, path, manifest, head, y_true, probs, indices, raw, fixed)


def _check_arrays(
    m: RunManifest, head: TrainedHead, y_true: np.ndarray, probs: np.ndarray, indices: np.ndarray
) -> None:
    classes = len(m.classes)
    n = len(y_true)
    if probs.shape != (n, classes) or indices.shape != (n,):
        raise ValueError(f"predictions have shapes {probs.shape}, {indices.shape} for {n} labels and {classes} classes")
    if not np.all(np.isfinite(probs)) or (n and (y_true.min() < 0 or y_true.max() >= classes)):
        raise ValueError("predictions hold non-finite probabilities or out-of-range labels")
    if head.weights[-1].shape != (classes,) or len(head.weights) % 2:
        raise ValueError("head weights do not match the run's classes")


def set_label(layout: CacheLayout, run_id: str, label: str) -> RunManifest:
    """Give a run a human-readable label (shown instead of its id)."""
    manifest = read_manifest(layout, run_id)
    # One line of printable text: control characters (a terminal escape, a bell) are dropped, whitespace folded.
    manifest.label = " ".join("".join(c for c in str(label) if c.isprintable() or c.isspace()).split())[
        :MAX_LABEL_CHARS
    ]
    write_json_atomic(layout.run_file(run_id, RUN_FILES.manifest), manifest.to_dict())
    return manifest


def delete_run(layout: CacheLayout, run_id: str) -> None:
    """Remove a run (damaged ones too): renamed out of the listing first, then deleted."""
    path = layout.run_dir(run_id)
    if not path.is_dir():
        raise RunError(f"Run {run_id} not found in {layout.runs}.")
    check_writable(path)
    trash = layout.discarded(path, "deleted")
    try:
        os.replace(path, trash)
    except OSError as err:
        raise CacheWriteError(describe_os_error(err, path)) from err
    shutil.rmtree(trash, ignore_errors=True)


def display_name(manifest: RunManifest | Any) -> str:
    """A short name for menus (see :meth:`RunManifest.display_name`)."""
    return str(manifest.display_name())
