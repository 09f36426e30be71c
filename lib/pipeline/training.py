"""Train-and-register: dataset -> features (cached) -> head -> evaluated, saved run.

The CLI's ``train`` and the app's Train page both call :func:`train_run`, so a run
started from either makes the same artifacts.

    request = RunRequest.from_protocol("best", source="../shared/data/cifar10-jpeg.tar.gz", backbone="...")
    manifest = train_run(request, CacheLayout("cache"), on_epoch=print)
    manifest.run_id, manifest.metrics.test_accuracy
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lib import bounds
from lib.config import FLIP, ORIGINAL, VIEWS
from lib.data.labels import check_not_excluded, relabelled
from lib.data.sources import Dataset, load_dataset
from lib.errors import ConfigError, DataSourceError
from lib.models.calibration import fit_temperature
from lib.models.heads import EpochReport, HeadConfig, TrainedHead, stratified_split, train_head
from lib.models.metrics import evaluate_for_run, reliability
from lib.models.predict import combine_views, np_concat, np_mean, part_key
from lib.models.protocols import PROTOCOLS
from lib.models.specs import preset_backbone
from lib.pipeline.engines import LocalEngine
from lib.pipeline.features import Engine, ExtractProgress, cached_image_counter, ensure_features
from lib.process import library_versions
from lib.runs.manifest import RunManifest, RunMetrics
from lib.runs.registry import save_run
from lib.runtimes import AUTO, DEFAULT_RUNTIME, check_runtime
from lib.runtimes.auto import describe, resolve
from lib.runtimes.backbones import BackboneSpec, resolve_backbone
from lib.store.layout import CacheLayout

StageFn = Callable[[str], None]
ExtractFn = Callable[[str, ExtractProgress], None]
EpochFn = Callable[[EpochReport], None]


@dataclass
class RunRequest:
    """Everything that defines a run."""

    source: str
    backbone: str
    head: HeadConfig = field(default_factory=HeadConfig)
    image_sizes: tuple[int, ...] | None = None  # several sizes are concatenated (multi-scale)
    train_views: tuple[str, ...] = (ORIGINAL,)
    tta: bool = False
    limit: int | None = None  # first N images per class of each split
    protocol: str | None = None
    batch_size: int = 256  # extraction batch
    test_split: str = "test"
    train_split: str = "train"
    runtime: str = DEFAULT_RUNTIME  # extraction runtime, a name in lib.runtimes' registry
    exclude: dict[str, list[int]] | None = (
        None  # split -> image indices left out of training and scoring (lib.data.excludes)
    )
    relabel: dict[str, tuple[list[int], list[int]]] | None = (
        None  # split -> (image indices, fixed label ids) (lib.data.labels)
    )
    relabel_source: dict[str, Any] | None = (
        None  # where the fixes came from: name, sha256 of the file (recorded in the manifest)
    )
    # Further backbones whose features are concatenated after ``backbone``'s: (backbone, sizes); None sizes: its native
    # size.
    more_backbones: tuple[tuple[str, tuple[int, ...] | None], ...] = ()

    @classmethod
    def from_protocol(cls, name: str, source: str, backbone: str | None, **kwargs: Any) -> RunRequest:
        """A request that follows a named preset; a preset with its own backbones uses them when ``backbone`` is
        None."""
        if name not in PROTOCOLS:
            raise ConfigError(f"Unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}.")
        p = PROTOCOLS[name]
        if backbone is None and p.backbones:
            sizes: dict[str, tuple[int, ...]] = {}  # one part per backbone, at each of its sizes, in the preset's order
            for b, s in p.backbones:
                sizes[b] = (*sizes.get(b, ()), s)
            (first, first_sizes), *rest = sizes.items()
            more = tuple((preset_backbone(b), ss) for b, ss in rest)
            return cls(
                source,
                preset_backbone(first),
                p.head,
                first_sizes,
                p.train_views,
                p.tta,
                protocol=name,
                more_backbones=more,
                **kwargs,
            )
        if backbone is None:
            raise ConfigError(f"The {name!r} preset needs a backbone.")
        return cls(source, backbone, p.head, p.image_sizes, p.train_views, p.tta, protocol=name, **kwargs)

    def validate(self) -> RunRequest:
        """Itself, or :class:`ConfigError` naming the first setting out of range."""

        self.head.validate()
        for size in self.image_sizes or ():
            bounds.check("image_size", size)
        if self.image_sizes is not None and len(set(self.image_sizes)) != len(self.image_sizes):
            raise ConfigError(f"Each input size may be given once, got {list(self.image_sizes)}.")
        if not self.train_views or not set(self.train_views) <= {ORIGINAL, FLIP}:
            raise ConfigError(f"Training views must be original and/or flip, got {self.train_views!r}.")
        for backbone, sizes in self.more_backbones:
            for size in sizes or ():
                bounds.check("image_size", size)
            if not backbone or (sizes is not None and (not sizes or len(set(sizes)) != len(sizes))):
                raise ConfigError(
                    f"Each further backbone needs a name and distinct sizes, got {backbone!r} at {sizes!r}."
                )
        bounds.check("backbones", 1 + len(self.more_backbones))
        if self.limit is not None:
            bounds.check("limit", self.limit)
        bounds.check("batch_size", self.batch_size)
        check_runtime(self.runtime)

        check_not_excluded(self.relabel or {}, self.exclude)
        return self


@dataclass
class FeatureBlock:
    """Features of one split: one array per (part key, view), rows aligned with ``labels``; a part key is the size on
    the first backbone, ``(j, size)`` on the j-th further one (:func:`lib.models.predict.part_key`)."""

    parts: dict[tuple[Any, str], np.ndarray]
    labels: np.ndarray
    indices: np.ndarray
    extract_seconds: float
    cache_hits: int

    def view(self, view: str, sizes: tuple[Any, ...]) -> np.ndarray:
        """The features of ``view`` with every part (size, backbone) concatenated."""
        return np_concat([self.parts[(s, view)] for s in sizes])

    def merge(self, backbone: int, other: FeatureBlock) -> None:
        """Add ``other`` (the same images through the ``backbone``-th further backbone) to this block."""

        if not np.array_equal(self.indices, other.indices):
            raise ConfigError(
                "The backbones' features cover different images of the split; they cannot be concatenated."
            )
        self.parts.update({(part_key(backbone, size), view): arr for (size, view), arr in other.parts.items()})
        self.extract_seconds += other.extract_seconds
        self.cache_hits += other.cache_hits

    def without(self, excluded: list[int] | np.ndarray | None) -> FeatureBlock:
        """The same block without the rows of the given image indices (the block itself if none apply)."""
        if excluded is None or len(excluded) == 0:
            return self
        keep = ~np.isin(self.indices, np.asarray(excluded, np.int64))
        if keep.all():
            return self
        if not keep.any():
            raise ConfigError("The exclude list leaves no image in this split.")
        parts = {k: v[keep] for k, v in self.parts.items()}
        return FeatureBlock(parts, self.labels[keep], self.indices[keep], self.extract_seconds, self.cache_hits)


def gather_features(
    ds: Dataset,
    spec: BackboneSpec,
    split: str,
    sizes: tuple[int, ...],
    views: tuple[str, ...],
    layout: CacheLayout,
    limit: int | None,
    batch_size: int = 256,
    on_extract: ExtractFn | None = None,
    engine: Engine | None = None,
    runtime: str = DEFAULT_RUNTIME,
) -> FeatureBlock:
    """Features of ``split`` for every size and view, through :func:`lib.pipeline.features.ensure_features`; ``engine``
    (shared between calls, so a backbone loads once) computes what the cache lacks (default: this process)."""
    engine = engine if engine is not None else LocalEngine(layout)
    parts: dict[tuple[int, str], np.ndarray] = {}
    seconds, hits, labels, indices = 0.0, 0, None, None
    for size in sizes:
        for view in views:
            label = f"{split}/{view}@{size}"
            report = (lambda p, label=label: on_extract(label, p)) if on_extract else None
            result = ensure_features(ds, split, spec, layout, size, view, limit, batch_size, report, runtime, engine)
            hits += result.cache_hit
            seconds += result.extract_seconds
            parts[(size, view)] = np.asarray(result.features, np.float32)
            labels, indices = result.labels, result.indices
    assert labels is not None and indices is not None
    return FeatureBlock(parts, labels, indices, seconds, hits)


def run_manifest(
    req: RunRequest,
    ds: Dataset,
    spec: BackboneSpec,
    sizes: tuple[int, ...],
    head_cfg: HeadConfig,
    history: list[dict[str, Any]],
    report: dict[str, Any],
    timings: dict[str, float],
    val_accuracy: float | None = None,
    **extra: Any,
) -> RunManifest:
    """The manifest every run stores: what it was trained on and how, its history, metrics, timings and versions."""
    return RunManifest(
        source=req.source,
        dataset_fingerprint=ds.fingerprint,
        classes=list(ds.classes),
        backbone=spec.handle,
        backbone_name=spec.name,
        backbone_identity=spec.identity(),
        image_sizes=[int(s) for s in sizes],
        head=head_cfg,
        metrics=RunMetrics(
            report["accuracy"], report["top5_accuracy"], report["calibration"]["ece"], report["count"], val_accuracy
        ),
        protocol=req.protocol,
        runtime=req.runtime,
        train_views=list(req.train_views),
        tta=req.tta,
        limit=req.limit,
        train_split=req.train_split,
        test_split=req.test_split,
        history=history,
        timings=timings,
        versions=library_versions(),
        machine={"platform": platform.platform(), "cpus": os.cpu_count()},
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    )


def stored_predictions(
    y_true: np.ndarray, probs: np.ndarray, indices: np.ndarray, raw: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The arrays a run stores for its test split (``predictions.npz``): calibrated probabilities, and the uncalibrated
    ones (``probs_raw``) that the Evaluate page's before-and-after compares against."""
    out = {"y_true": y_true, "probs": probs.astype(np.float32), "y_pred": probs.argmax(axis=1), "indices": indices}
    return out | ({"probs_raw": raw.astype(np.float32)} if raw is not None else {})


@dataclass
class FitResult:
    """A trained head and its test probabilities (sizes concatenated, TTA views averaged), calibrated and before."""

    head: TrainedHead
    probs: np.ndarray
    train_rows: int
    val_rows: int
    raw_probs: np.ndarray | None = None  # the test probabilities at temperature 1
    calibration: dict[str, Any] | None = None  # what the temperature was fitted on, and the ECE it changed


def fit_head(
    train: FeatureBlock,
    test: FeatureBlock,
    sizes: tuple[Any, ...],
    train_views: tuple[str, ...],
    tta: bool,
    head_cfg: HeadConfig,
    num_classes: int,
    on_epoch: EpochFn | None = None,
) -> FitResult:
    """Train a head on ``train`` (every view) and predict ``test`` through the one prediction path."""
    tr_rows, val_rows = stratified_split(train.labels, head_cfg.val_fraction, head_cfg.seed)
    # Validation is carved per image, so a held-out image's flipped twin never trains.
    x_train = np.concatenate([train.view(v, sizes)[tr_rows] for v in train_views])
    y_train = np.concatenate([train.labels[tr_rows] for _ in train_views])
    x_val = train.view(ORIGINAL, sizes)[val_rows] if len(val_rows) else None
    y_val = train.labels[val_rows] if len(val_rows) else None
    head = train_head(x_train, y_train, num_classes, head_cfg, x_val, y_val, on_epoch)
    views = {False: ORIGINAL, True: FLIP}

    def probs_at(block: FeatureBlock, rows: np.ndarray | slice, t: float | None) -> np.ndarray:
        # With TTA, the held-out rows are averaged over both views as the test rows are (when the flipped view exists).
        use_tta = tta and all((s, FLIP) in block.parts for s in sizes)
        return combine_views(
            lambda size, flip: block.parts[(size, views[flip])][rows],
            lambda x: head.predict_proba(x, t),
            sizes,
            use_tta,
            np_concat,
            np_mean,
        )

    raw = probs_at(test, slice(None), 1.0)
    calibration = None
    if len(val_rows):
        y_held = train.labels[val_rows]
        head.temperature = fit_temperature(lambda t: probs_at(train, val_rows, t), y_held)
        calibration = {
            "method": "temperature scaling",
            "temperature": round(head.temperature, 4),
            "fitted_on": f"{len(val_rows):,} validation images",
            "validation_ece_before": reliability(y_held, probs_at(train, val_rows, 1.0))["ece"],
            "validation_ece_after": reliability(y_held, probs_at(train, val_rows, None))["ece"],
            "test_ece_before": reliability(test.labels, raw)["ece"],
        }
    probs = probs_at(test, slice(None), None)
    return FitResult(head, probs, len(x_train), len(val_rows), raw if calibration else None, calibration)


def train_run(
    req: RunRequest,
    layout: CacheLayout,
    on_stage: StageFn | None = None,
    on_extract: ExtractFn | None = None,
    on_epoch: EpochFn | None = None,
    engine: Engine | None = None,
) -> RunManifest:
    """Extract (or load) features (with ``engine``: default this process), train the head, evaluate on test, save the
    run; returns its manifest."""

    req.validate()
    stage = on_stage or (lambda _msg: None)
    stage("Loading data")
    ds = load_dataset(req.source, layout)
    for split in (req.train_split, req.test_split):
        if split not in ds.splits:
            raise DataSourceError(f"Dataset {req.source!r} has no {split!r} split (it has {', '.join(ds.splits)}).")
    ds.require_classes("Training a classifier", req.train_split)
    spec = resolve_backbone(req.backbone)
    sizes = tuple(req.image_sizes or (spec.default_size(),))
    more = [
        (s, tuple(sz or (s.default_size(),))) for s, sz in ((resolve_backbone(b), sz) for b, sz in req.more_backbones)
    ]
    seen: set[tuple[str, int]] = set()
    for b, b_sizes in ((spec, sizes), *more):
        for size in b_sizes:
            if (b.identity(), size) in seen:  # the same features twice would only double one part of the head's input
                raise ConfigError(
                    f"{b.name} at {size}px is asked for twice (a --backbone repeats another with the same size); "
                    "give each once."
                )
            seen.add((b.identity(), size))
    test_views = VIEWS if req.tta else (ORIGINAL,)
    runtime_choice = None
    if req.runtime == AUTO:  # one runtime for the whole run: chosen on the first backbone at its first size
        split_views = [(req.train_split, v) for v in req.train_views] + [(req.test_split, v) for v in test_views]
        parts = [
            (b, size, split, view)
            for b, b_sizes in ((spec, sizes), *more)
            for size in b_sizes
            for split, view in split_views
        ]
        images = sum(ds.subset_size(split, req.limit) for _b, _size, split, _view in parts)
        req.runtime, runtime_choice = resolve(
            AUTO, spec, sizes[0], ds, layout, images, cached_image_counter(ds, parts, req.limit, layout)
        )
        if runtime_choice:
            stage(describe(req.runtime, runtime_choice, images))
    stage("Features" + (f" ({req.runtime} runtime)" if req.runtime != DEFAULT_RUNTIME else ""))
    common = (layout, req.limit, req.batch_size, on_extract, engine or LocalEngine(layout), req.runtime)
    train = gather_features(ds, spec, req.train_split, sizes, tuple(req.train_views), *common)
    test = gather_features(ds, spec, req.test_split, sizes, test_views, *common)
    for j, (extra_spec, extra_sizes) in enumerate(more, start=1):
        stage(f"Features of backbone {j + 1}: {extra_spec.name}")
        train.merge(j, gather_features(ds, extra_spec, req.train_split, extra_sizes, tuple(req.train_views), *common))
        test.merge(j, gather_features(ds, extra_spec, req.test_split, extra_sizes, test_views, *common))
    keys = sizes + tuple(
        part_key(j, size) for j, (_spec, extra_sizes) in enumerate(more, start=1) for size in extra_sizes
    )
    exclude = req.exclude or {}
    full_rows = {"train": len(train.labels), "test": len(test.labels)}
    train, test = train.without(exclude.get(req.train_split)), test.without(exclude.get(req.test_split))
    excluded = {"train": full_rows["train"] - len(train.labels), "test": full_rows["test"] - len(test.labels)}
    if any(excluded.values()):
        stage(f"Left out as the exclude list asks: {excluded['train']:,} training and {excluded['test']:,} test images")

    fixes = {s: (np.asarray(idx, np.int64), np.asarray(lab, np.int64)) for s, (idx, lab) in (req.relabel or {}).items()}
    fixed_train, fixed_test = (
        relabelled(ds.labels(s), fixes.get(s))[block.indices]
        for s, block in ((req.train_split, train), (req.test_split, test))
    )
    changed = {"train": int((fixed_train != train.labels).sum()), "test": int((fixed_test != test.labels).sum())}
    train.labels = (
        fixed_train  # the head learns the fixed labels; the test keeps its given ones, and is scored against both
    )
    if fixes:
        stage(
            f"Labels fixed as the list asks: {changed['train']:,} training and {changed['test']:,} test labels changed"
        )

    hits, total = train.cache_hits + test.cache_hits, len(train.parts) + len(test.parts)
    stage(
        f"Features ready: {hits} of {total} feature sets loaded from the cache"
        + (" (instant)" if hits == total else "")
    )
    stage("Training head")
    head_cfg = req.head
    fit = fit_head(train, test, keys, tuple(req.train_views), req.tta, head_cfg, len(ds.classes), on_epoch)
    head, probs = fit.head, fit.probs
    stage("Evaluating")
    report = evaluate_for_run(test.labels, probs, ds.classes, stage)
    manifest = run_manifest(
        req,
        ds,
        spec,
        sizes,
        head_cfg,
        head.history,
        report,
        timings={
            "extract_seconds": round(train.extract_seconds + test.extract_seconds, 3),
            "train_seconds": round(head.seconds, 3),
            "feature_cache_hits": hits,
            "feature_artifacts": total,
        },
        val_accuracy=head.history[-1].get("val_accuracy") if head.history else None,
        best_epoch=head.best_epoch,
        steps=head.steps,
        train_rows=fit.train_rows,
        val_rows=fit.val_rows,
        excluded={split: [int(i) for i in sorted(v)] for split, v in exclude.items() if len(v)},
        extra_backbones=[
            {
                "backbone": s.handle,
                "backbone_name": s.name,
                "backbone_identity": s.identity(),
                "image_sizes": [int(x) for x in sz],
            }
            for s, sz in more
        ],
        calibration=(fit.calibration or {}) | {"test_ece_after": report["calibration"]["ece"]}
        if fit.calibration
        else None,
        runtime_choice=runtime_choice,
        relabel=(req.relabel_source or {})
        | {
            "changed": changed,
            "listed": {s: len(f[0]) for s, f in fixes.items()},
            "test_accuracy_fixed": float((probs.argmax(axis=1) == fixed_test).mean()),
        }
        if fixes
        else None,
    )
    predictions = stored_predictions(test.labels, probs, test.indices, fit.raw_probs) | (
        {"y_fixed": fixed_test} if fixes else {}
    )
    if fit.calibration:
        stage(
            f"Calibrated: temperature {head.temperature:.3f}, test ECE {fit.calibration['test_ece_before']:.4f} -> "
            f"{report['calibration']['ece']:.4f}"
        )
    stage("Saving run")
    save_run(layout, manifest, head, predictions)
    return manifest
