"""``--runtime auto``: the faster exact runtime (``tf`` or float ``litert``) for this backbone, size and machine.

The first time a (backbone, size) is asked for on a machine, both exact runtimes are timed on a few batches of the
dataset's test images: TensorFlow's load, LiteRT's one-off conversion and load, and each one's images/s. LiteRT
counts only if its features equal TensorFlow's within 1e-4 (relative). The figures are kept in the cache
(``runtimes/auto-<key>.json``), keyed by the backbone's identity, the size, the CPU model, the core count and the
library versions. From then on, the choice for ``images`` images is the runtime with the smaller estimated time:
load, plus the conversion (and the TensorFlow load it starts from) if this dataset has none yet, plus ``images`` / rate.
Small extractions therefore stay on
TensorFlow rather than pay for a conversion. A runtime that cannot convert is left out, and the reason is recorded.

    name, figures = resolve("auto", spec, 128, dataset, layout, images=20_000)   # ("litert", {...})
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from lib.errors import first_line
from lib.jobs.report import announce
from lib.process import machine_info
from lib.runtimes.backbones import load_backbone
from lib.runtimes.litert import LiteRTRuntime
from lib.runtimes.registry import AUTO
from lib.store.atomic import read_json, write_json_atomic
from lib.store.layout import artifact_key

if TYPE_CHECKING:
    from lib.data.sources import Dataset
    from lib.models.specs import BackboneSpec
    from lib.store.layout import CacheLayout

CANDIDATES = ("tf", "litert")  # the exact runtimes (features within 1e-4)
TOLERANCE = 1e-4
BATCH = 64
TIMED_BATCHES = 3
VERSION = 1


def machine_key(spec: BackboneSpec, size: int) -> str:
    """What a choice depends on: the backbone, the size, the machine and the libraries that run it."""
    import importlib.metadata as md

    versions = {}
    for name in ("tensorflow", "ai-edge-litert", "numpy"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = ""
    m = machine_info()
    parts = {
        "backbone": spec.identity(),
        "size": int(size),
        "cpu": m["cpu"],
        "cores": m["cores"],
        "versions": versions,
        "v": VERSION,
    }
    return artifact_key(parts)


def _rate(loaded: Any, batch: np.ndarray, size: int) -> tuple[float, np.ndarray]:
    features = np.asarray(loaded.embed(batch, size), np.float32)  # warm-up, and the features compared
    t0 = time.perf_counter()
    for _ in range(TIMED_BATCHES):
        loaded.embed(batch, size)
    return TIMED_BATCHES * len(batch) / (time.perf_counter() - t0), features


def measure(spec: BackboneSpec, size: int, ds: Dataset, layout: CacheLayout) -> dict[str, Any]:
    """Time both exact runtimes on this machine (see the module docs); the figures a choice is made from."""

    split = "test" if "test" in ds.splits else ds.splits[-1]
    batch = np.ascontiguousarray(np.asarray(ds.images(split)[:BATCH]))
    t0 = time.perf_counter()
    tf_model = load_backbone(spec)
    tf_load = time.perf_counter() - t0
    tf_ips, tf_features = _rate(tf_model, batch, size)
    out: dict[str, Any] = {
        "tf": {"load_seconds": round(tf_load, 3), "images_per_second": round(tf_ips, 1)},
        "batch": len(batch),
        "timed_batches": TIMED_BATCHES,
    }
    runtime = LiteRTRuntime(quantized=False)
    try:
        existed = runtime.converted(spec, size, ds, layout).is_file()
        t0 = time.perf_counter()
        path = runtime.convert(spec, size, ds, layout, lambda: tf_model)
        convert = time.perf_counter() - t0
        t0 = time.perf_counter()
        lite = runtime.load(spec, size, ds, layout, lambda: tf_model)
        load = time.perf_counter() - t0
        lite_ips, lite_features = _rate(lite, batch, size)
        rel = float(np.abs(lite_features - tf_features).max() / max(float(np.abs(tf_features).max()), 1e-12))
        out["litert"] = {
            "convert_seconds": round(convert, 3),
            "load_seconds": round(load, 3),
            "images_per_second": round(lite_ips, 1),
            "max_rel_diff": rel,
            "conversion_was_cached": existed,
            "path": str(path),
        }
        if rel > TOLERANCE:
            out["litert"]["excluded"] = f"its features differ from TensorFlow's by {rel:.1e} (more than {TOLERANCE:g})"
    except Exception as err:  # noqa: BLE001 - any conversion failure leaves LiteRT out of the choice, with the reason
        out["litert"] = {"excluded": f"it could not convert: {first_line(err, 200)}"}
    return out


def _number(value: Any, positive: bool) -> bool:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and value != float("inf")
    return ok and (value > 0 if positive else value >= 0)


def valid_figures(figures: Any) -> bool:
    """Whether a stored record is one :func:`measure` could have written: TensorFlow's load time and rate, and LiteRT's
    conversion, load and rate or the reason it was left out (a wrong type or a negative rate means: measure again)."""
    if (
        not isinstance(figures, dict)
        or not isinstance(figures.get("tf"), dict)
        or not isinstance(figures.get("litert"), dict)
    ):
        return False
    tf, lite = figures["tf"], figures["litert"]
    if not (_number(tf.get("load_seconds"), False) and _number(tf.get("images_per_second"), True)):
        return False
    if "excluded" in lite:
        return isinstance(lite["excluded"], str) and bool(lite["excluded"])
    return all(_number(lite.get(k), False) for k in ("convert_seconds", "load_seconds")) and _number(
        lite.get("images_per_second"), True
    )


def choose(
    figures: dict[str, Any], images: int, converted: bool, cached: dict[str, int] | None = None
) -> tuple[str, dict[str, float]]:
    """The runtime with the smaller estimated seconds for ``images`` images (``converted``: this dataset's LiteRT model
    exists already, so its conversion costs nothing; ``cached``: how many of the images each runtime has features of
    already, which cost nothing either), and the estimates. A runtime that has them all costs 0 s: features made
    earlier (by Home, or another command) are used, never extracted again by the other runtime."""
    estimates: dict[str, float] = {}
    for name in CANDIDATES:
        f = figures.get(name) or {}
        if f.get("excluded") or not f.get("images_per_second"):
            continue
        todo = max(0, images - int((cached or {}).get(name, 0)))
        if todo == 0:
            estimates[name] = 0.0
            continue
        cost = float(f.get("load_seconds") or 0) + todo / float(f["images_per_second"])
        if (
            name == "litert" and not converted
        ):  # converting starts from the TensorFlow model: its load is part of the cost
            cost += float(f.get("convert_seconds") or 0) + float((figures.get("tf") or {}).get("load_seconds") or 0)
        estimates[name] = round(cost, 2)
    return (min(estimates, key=lambda k: estimates[k]) if estimates else "tf"), estimates


def resolve(
    name: str,
    spec: BackboneSpec,
    size: int,
    ds: Dataset,
    layout: CacheLayout,
    images: int,
    cached: Callable[[str], int] | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """``name`` itself unless it is ``auto``; then the chosen runtime and the figures behind it (also kept for the
    manifest and ``extract --json``). ``cached(runtime)`` says how many of the ``images`` that runtime has features of
    already; a runtime that has them all is chosen without timing anything."""

    if name != AUTO:
        return name, None
    if spec.fixed_runtime:
        # tf is what a .tflite file's own runtime is asked for as (lib.runtimes.effective runs the file as it is)
        return "tf", {
            "choice": "tf",
            "why": "a .tflite backbone runs as itself",
            "images": int(images),
            "estimated_seconds": {},
        }
    have = {c: int(cached(c)) for c in CANDIDATES} if cached is not None else {}
    done = [c for c in CANDIDATES if have.get(c, 0) >= images > 0]
    if done:
        return done[0], {
            "choice": done[0],
            "why": f"its features of these {images:,} images are cached already",
            "images": int(images),
            "estimated_seconds": {done[0]: 0.0},
        }
    key = machine_key(spec, size)
    path = layout.runtime_choice_file(key)
    figures = read_json(path)
    measured_now = not valid_figures(figures)  # missing, truncated or damaged: measured again (and replaced)
    if measured_now:
        announce(f"Timing tf and litert for --runtime auto on {spec.name} at {size}px (once on this machine)")
        figures = measure(spec, size, ds, layout)
        write_json_atomic(path, figures)
    assert isinstance(figures, dict)
    converted = LiteRTRuntime(quantized=False).converted(spec, size, ds, layout).is_file()
    choice, estimates = choose(figures, images, converted, have)
    return choice, {
        "choice": choice,
        "images": int(images),
        "estimated_seconds": estimates,
        "measured": "now" if measured_now else "earlier, on this machine",
        "key": key,
        "cores": os.cpu_count(),
        **{k: v for k, v in figures.items() if k in CANDIDATES},
    }


def describe(runtime: str, choice: dict[str, Any], images: int) -> str:
    """The line a command says when ``auto`` chose ``runtime``."""
    if choice.get("why"):
        return f"Runtime auto: {runtime} ({choice['why']})"
    return (
        f"Runtime auto: {runtime} (estimated {choice.get('estimated_seconds')} s for {images:,} images; timed "
        f"{choice.get('measured')})"
    )
