"""The one adapter between lib and Streamlit's caches (``lib/`` never imports Streamlit); pages call these and draw.

``st.cache_resource`` holds models and large read-only arrays (memory-mapped features,
datasets, runs); ``st.cache_data`` holds only small results (projections, reports).
Disk artifacts stay the source of truth: these caches only skip re-reading them.

    ds = cached.dataset_if_ready(source, settings.layout)      # None until prepared
    run = cached.run(settings.layout, run_id)
    report = cached.report(settings.layout, run_id)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from lib.analysis import projections
from lib.config import ORIGINAL
from lib.data.sources import Dataset, cached_dataset_status
from lib.errors import UserFacingError
from lib.models import metrics as evaluation
from lib.pipeline.features import FeatureResult, cached_feature_result
from lib.runs.registry import Run, load_run
from lib.runtimes import DEFAULT_RUNTIME
from lib.runtimes.backbones import BackboneSpec, LoadedBackbone, load_backbone, resolve_backbone
from lib.store.layout import RUN_FILES, CacheLayout


@st.cache_resource(show_spinner=False, max_entries=8)
def _dataset(source: str, layout: CacheLayout, fingerprint_hint: str) -> Dataset | None:
    return cached_dataset_status(source, layout)


def dataset_if_ready(source: str, layout: CacheLayout) -> Dataset | None:
    """The converted dataset, or None if it has not been prepared yet (never converts)."""
    ds = _dataset(source, layout, _mtime_hint(source))
    if ds is None:
        _dataset.clear()  # a later prepare must be seen at once
    return ds


def _mtime_hint(source: str) -> str:
    # A changed source file must not be answered from an old cached Dataset.
    try:
        p = Path(source).expanduser()
        return f"{p.stat().st_mtime_ns}" if p.exists() else ""
    except OSError:
        return ""


def forget_datasets() -> None:
    """Drop cached dataset handles (after preparing one)."""
    _dataset.clear()


@st.cache_resource(show_spinner=False, max_entries=16)
def backbone_spec(backbone: str) -> BackboneSpec:
    """Resolve a backbone string (content hash included) once per process."""
    return resolve_backbone(backbone)


@st.cache_resource(show_spinner="Loading the backbone (TensorFlow)...", max_entries=2)
def loaded_backbone(backbone: str, layout: CacheLayout) -> LoadedBackbone:
    """The loaded TF model; only pages that compute features or classify uploads call this."""
    return load_backbone(backbone_spec(backbone))


@st.cache_resource(show_spinner="Loading the fine-tuned model (TensorFlow)...", max_entries=2)
def finetuned_model(layout: CacheLayout, run_id: str) -> Any:
    """A fine-tuned run's stored full model: uint8 images in, probabilities out."""
    import tensorflow as tf

    path = layout.run_file(run_id, RUN_FILES.model)
    if not (path / "saved_model.pb").exists():
        raise UserFacingError(f"Run {run_id} holds no fine-tuned model (made by an older version); train it again.")
    return tf.saved_model.load(str(path))


@st.cache_resource(show_spinner=False, max_entries=32)
def _features(
    source: str, layout: CacheLayout, backbone: str, size: int, split: str, view: str, limit: int | None, runtime: str
) -> FeatureResult | None:
    ds = dataset_if_ready(source, layout)
    if ds is None or split not in ds.splits:
        return None
    return cached_feature_result(
        ds, split, backbone_spec(backbone), size, view, limit, layout, runtime, reduced_ok=True
    )


def features(
    source: str,
    layout: CacheLayout,
    backbone: str,
    size: int,
    split: str,
    view: str = ORIGINAL,
    limit: int | None = None,
    runtime: str = DEFAULT_RUNTIME,
) -> FeatureResult | None:
    """Cached features (memory-mapped) or None; forgets a miss so a later extraction is seen."""
    result = _features(source, layout, backbone, int(size), split, view, limit, runtime)
    if result is None:
        _features.clear()
    return result


def lite_parts_ready(layout: CacheLayout, run_id: str) -> None:
    """:class:`UserFacingError` if a part of the run has no LiteRT model here; loads nothing (memory is a demo's
    budget)."""
    from lib.runtimes.lite_parts import lite_backbones

    r = run(layout, run_id)
    ds = dataset_if_ready(r.manifest.source, layout)
    if ds is None or ds.fingerprint != r.manifest.dataset_fingerprint:
        raise UserFacingError("The run's dataset is not in this cache.")
    lite_backbones(r.manifest, ds, layout, load=False)


def lite_backbone_ready(layout: CacheLayout, source: str, backbone: str, size: int) -> None:
    """:class:`UserFacingError` if this backbone has no LiteRT model at ``size`` here; loads nothing."""
    from lib.runtimes.lite_parts import lite_backbone as check

    ds = dataset_if_ready(source, layout)
    if ds is None:
        raise UserFacingError("The dataset is not in this cache.")
    spec = backbone_spec(backbone)
    check(backbone, spec.identity(), spec.name, [int(size)], ds, layout, load=False)


@st.cache_resource(show_spinner=False, max_entries=8)
def lite_parts(layout: CacheLayout, run_id: str) -> list[Any]:
    """A run's backbones as float LiteRT models (no TensorFlow): what the demo classifies uploads with.
    :class:`UserFacingError` when a part has no conversion here."""
    from lib.runtimes.lite_parts import lite_backbones

    r = run(layout, run_id)
    ds = dataset_if_ready(r.manifest.source, layout)
    if ds is None or ds.fingerprint != r.manifest.dataset_fingerprint:
        raise UserFacingError("The run's dataset is not in this cache.")
    return lite_backbones(r.manifest, ds, layout)


@st.cache_resource(show_spinner=False, max_entries=8)
def lite_backbone(layout: CacheLayout, source: str, backbone: str, size: int) -> Any:
    """One backbone at one size as a float LiteRT model (no TensorFlow), for searching by image in the demo."""
    from lib.runtimes.lite_parts import lite_backbone as load

    ds = dataset_if_ready(source, layout)
    if ds is None:
        raise UserFacingError("The dataset is not in this cache.")
    spec = backbone_spec(backbone)
    return load(backbone, spec.identity(), spec.name, [int(size)], ds, layout)


def embedder(source: str, layout: CacheLayout, backbone: str, size: int) -> Any:
    """``images -> features`` by the backbone's float LiteRT model (what re-ranks a hosting bundle's reduced features),
    or None if this cache has no conversion of it."""
    try:
        model = lite_backbone(layout, source, backbone, int(size))
    except UserFacingError:
        return None
    return lambda images: model.embed(images, int(size))


@st.cache_resource(show_spinner=False, max_entries=16)
def _run(layout: CacheLayout, run_id: str, mtime: str) -> Run:
    return load_run(layout, run_id)


def run(layout: CacheLayout, run_id: str) -> Run:
    """A loaded run; re-read when its manifest changes (a rename). :class:`RunError` for a bad or damaged id."""
    manifest = layout.run_file(run_id, RUN_FILES.manifest)
    try:
        mtime = str(manifest.stat().st_mtime_ns)
    except OSError:
        mtime = ""
    return _run(layout, run_id, mtime)


@st.cache_data(show_spinner=False, max_entries=32)
def report(layout: CacheLayout, run_id: str, mtime: str = "") -> dict[str, Any]:
    """The evaluation report of a run (small: lists of numbers)."""
    r = run(layout, run_id)
    out = evaluation.evaluate(r.y_true, r.probs, r.classes)
    if r.probs_raw is not None:
        out["calibration_before"] = evaluation.reliability(r.y_true, r.probs_raw)
    return out


@st.cache_data(show_spinner=False, max_entries=64)
def sample(source: str, layout: CacheLayout, split: str, n: int, seed: int) -> np.ndarray:
    """A stratified sample of row indices of a split."""
    ds = dataset_if_ready(source, layout)
    if ds is None:
        raise UserFacingError("The dataset is not prepared yet.")
    return projections.stratified_sample(ds.labels(split), n, seed)


@st.cache_data(show_spinner=False, max_entries=32)
def projection(
    layout: CacheLayout,
    feature_path: str,
    rows: tuple[int, ...],
    method: str,
    perplexity: float,
    max_iter: int,
    seed: int,
) -> projections.Projection:
    """PCA or t-SNE of the given rows (t-SNE also persists on disk, see
    :func:`lib.analysis.projections.cached_projection`)."""
    return projections.cached_projection(
        layout, feature_path, np.asarray(rows, dtype=np.int64), method, perplexity, max_iter, seed
    )


@st.cache_data(show_spinner=False, max_entries=16)
def thumbnails(source: str, layout: CacheLayout, split: str, rows: tuple[int, ...]) -> list[str]:
    """PNG data URIs of the given images, for chart tooltips."""
    from lib.data.images import thumbnail_uri

    ds = dataset_if_ready(source, layout)
    assert ds is not None
    images = ds.images(split)
    return [thumbnail_uri(np.asarray(images[i])) for i in rows]


@st.cache_resource(show_spinner=False, max_entries=16)
def _full_map(
    source: str,
    layout: CacheLayout,
    backbone: str,
    size: int,
    method: str,
    runtime: str,
    perplexity: float,
    iterations: int,
    stamp: str,
) -> Any:
    from lib.analysis.full_map import find_full_map

    return find_full_map(source, backbone, size, layout, method, runtime, perplexity, iterations)


def full_map(
    source: str,
    layout: CacheLayout,
    backbone: str,
    size: int,
    method: str,
    runtime: str,
    perplexity: float,
    iterations: int,
) -> Any:
    """The stored map of every image, or None (never computes). Keyed by the projections folder's mtime, so a map
    written since (by this app or the CLI) is seen, and a miss is not read again on every rerun."""
    try:
        stamp = str(layout.projections.stat().st_mtime_ns)
    except OSError:
        stamp = ""
    return _full_map(source, layout, backbone, int(size), method, runtime, float(perplexity), int(iterations), stamp)


def forget_full_maps() -> None:
    """After computing a map."""
    _full_map.clear()


@st.cache_resource(show_spinner=False, max_entries=4)
def run_predictions(source: str, layout: CacheLayout, run_id: str, splits: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The active run's predicted class of every image of each split (-1 where unknown without new work)."""
    from lib.pipeline.predictions import run_predictions as predict

    r = run(layout, run_id)
    ds = dataset_if_ready(source, layout)
    if ds is None:
        return {}
    return predict(r, ds, backbone_spec(r.manifest.backbone), layout, list(splits))


def audit_scores(
    source: str, layout: CacheLayout, backbone: str, size: int, runtime: str
) -> dict[str, np.ndarray] | None:
    """Label-issue score (1 - p(given label)) of every image from the stored audit of these features, or None
    (the audit the Data quality page reads, computed once per audit)."""
    found = audit(source, layout, backbone, size, runtime)
    if found is None:
        return None
    return memo(
        ("audit-scores", found.key),
        lambda: {s: 1.0 - found.probs[s][np.arange(len(found.labels[s])), found.labels[s]] for s in found.labels},
    )


@st.cache_resource(show_spinner="Making hover thumbnails (once)…", max_entries=4)
def _sprites(source: str, layout: CacheLayout) -> Any:
    from lib.data.thumbs import ensure_sprites
    from ui.scatter_map import THUMBS_ROOT

    ds = dataset_if_ready(source, layout)
    if ds is None:
        return None
    try:
        return ensure_sprites(ds, THUMBS_ROOT)
    except UserFacingError:
        return None


def sprites(source: str, layout: CacheLayout) -> Any:
    """The dataset's thumbnail sprite sheets under the app's static folder, made once; None if that folder is not
    writable."""
    found = _sprites(source, layout)
    if found is None:
        _sprites.clear()
    return found


@st.cache_resource(show_spinner=False, max_entries=4)
def _audit(
    source: str,
    layout: CacheLayout,
    backbone: str,
    size: int,
    runtime: str,
    more: tuple[tuple[str, int], ...],
    labels: str | None,
    stamp: str,
) -> Any:
    from lib.analysis.audit import cached_audit

    fixes = None
    if labels:
        from lib.data.labels import read_label_file

        ds = dataset_if_ready(source, layout)
        if ds is None:
            return None
        fixes = read_label_file(labels, ds)
    return cached_audit(source, backbone, size, layout, runtime, more=more, labels=fixes)


def audit(
    source: str,
    layout: CacheLayout,
    backbone: str,
    size: int,
    runtime: str,
    more: tuple[tuple[str, int], ...] = (),
    labels: str | None = None,
) -> Any:
    """The stored audit of these features (the heads' further (backbone, size) parts in ``more``; with the replacement
    labels of the saved list ``labels``; read and checked once per file version, shared by every session), or None."""
    stamp = ";".join(f"{p.name}:{p.stat().st_mtime_ns}" for p in layout.audit_files())
    found = _audit(source, layout, backbone, int(size), runtime, tuple(more), labels, stamp)
    if found is None:
        _audit.clear()
    return found


@st.cache_data(show_spinner=False, max_entries=64)
def label_issue_table(_audit_obj: Any, audit_key: str, split: str | None, given: int | None) -> Any:
    """The audit's flagged images as a table, worst first (``audit_key`` keys the cache; the audit is not hashed)."""
    import pandas as pd

    return pd.DataFrame(
        _audit_obj.label_issues(split, given), columns=["split", "index", "given", "suggested", "score"]
    )


@st.cache_data(show_spinner=False, max_entries=64)
def duplicate_pairs(_audit_obj: Any, audit_key: str, threshold: float) -> list[dict[str, Any]]:
    """The audit's near-duplicate pairs at ``threshold``, most similar first."""
    return _audit_obj.duplicates(threshold)


@st.cache_resource(show_spinner=False, max_entries=16)
def feature_norms(feature_path: str) -> np.ndarray:
    """L2 norm of every row of a cached feature file (for cosine neighbours without a full-size temporary per query)."""
    from lib.pipeline.neighbours import row_norms

    return row_norms(np.load(feature_path, mmap_mode="r"))


@st.cache_resource(show_spinner=False, max_entries=64)
def memo(key: tuple, _build: Any) -> Any:
    """``_build()`` once per ``key`` for the whole server (read-only results shared by every session: do not mutate)."""
    return _build()


@st.cache_data(show_spinner=False, max_entries=20_000)
def png(pixels: bytes, shape: tuple[int, ...], side: int) -> bytes:
    """A small image upscaled without blur and encoded as PNG once (every page draws the same thumbnails again and
    again)."""
    import io

    from PIL import Image

    from lib.data.images import upscale

    buf = io.BytesIO()
    Image.fromarray(upscale(np.frombuffer(pixels, np.uint8).reshape(shape), side)).save(
        buf, format="PNG", compress_level=1
    )
    return buf.getvalue()
