"""Whole-dataset commands: ``audit`` (label issues and near-duplicates) and ``project`` (a 2-D map of every image).

python -m lib audit --source ../shared/data/cifar10-jpeg.tar.gz --backbone ... --image-size 128 --json
python -m lib project --source ... --backbone ... --image-size 128 --method tsne --json
python -m lib export-dataset --source ... --out clean.zip --exclude flagged.json --relabel fixes.csv
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib.analysis.audit import DEFAULT_FOLDS, DEFAULT_THRESHOLD, run_audit
from lib.analysis.full_map import compute_full_map
from lib.bounds import backbone_at_sizes, flag
from lib.cli.common import Bar, add_backbone, add_common, add_source, concrete_runtime, load_with_progress, say_stage
from lib.config import ORIGINAL, VIEWS
from lib.data.excludes import read_exclude_file
from lib.data.export_dataset import export_dataset
from lib.data.labels import changed_count, read_label_file
from lib.data.thumbs import ensure_sprites
from lib.errors import ConfigError, UserFacingError
from lib.models.specs import resolve_backbone
from lib.process import peak_rss_mb


def add_commands(sub: Any) -> None:
    """Register ``audit``, ``project`` and ``export-dataset`` on the sub-parser set."""

    p = sub.add_parser(
        "audit",
        help="find likely label errors (cleanlab, K-fold heads) and near-duplicate images (exact cosine neighbours)",
    )
    add_source(p)
    add_backbone(p, repeatable=True)
    p.add_argument(
        "--folds",
        type=flag("folds"),
        default=DEFAULT_FOLDS,
        help="K of the K-fold out-of-sample probabilities for train",
    )
    p.add_argument(
        "--threshold",
        type=flag("threshold"),
        default=DEFAULT_THRESHOLD,
        help="cosine similarity from which two images are near-duplicates",
    )
    p.add_argument(
        "--top", type=flag("top"), default=None, help="print only the first N label issues and duplicate pairs"
    )
    p.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="audit as if these labels were given: CSV split,index,label (class names), e.g. CIFAR-10N's human labels",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="use a label list that changes more than half of the labels it names (made for another dataset?)",
    )
    add_common(p)

    p = sub.add_parser("project", help="a 2-D map of every image (PCA, or t-SNE via openTSNE fitted on train), cached")
    add_source(p)
    add_backbone(p)
    p.add_argument("--method", choices=["pca", "tsne"], default="tsne")
    p.add_argument("--perplexity", type=flag("perplexity"), default=30.0)
    p.add_argument(
        "--iterations",
        type=flag("iterations"),
        default=500,
        help="t-SNE optimisation iterations after the early exaggeration phase",
    )
    p.add_argument(
        "--thumbs",
        type=Path,
        default=None,
        help="also make the hover thumbnails of every image (sprite sheets) in this folder; the app passes its "
        "static/thumbs, so a large map's thumbnails are made in the background job, not when the page opens",
    )
    add_common(p)

    p = sub.add_parser(
        "export-dataset", help="write the curated dataset as an image folder <split>/<class>/*.png (a folder or a .zip)"
    )
    add_source(p)
    p.add_argument(
        "--out", type=Path, required=True, help="a new folder, or a file ending in .zip (never replaced if it exists)"
    )
    p.add_argument(
        "--exclude", type=Path, default=None, help="leave these images out: an exclude list (JSON, or CSV split,index)"
    )
    p.add_argument(
        "--relabel", type=Path, default=None, help="label fixes: CSV split,index,label (class names) or the app's JSON"
    )
    p.add_argument(
        "--selection",
        type=Path,
        default=None,
        help="export only these images: CSV split,index (e.g. a map selection's download)",
    )
    p.add_argument("--note", default="", help="a note kept in the export's curation.json")
    p.add_argument(
        "--force",
        action="store_true",
        help="use a label list that changes more than half of the labels it names (made for another dataset?)",
    )
    add_common(p)


def stage_printer() -> Callable[[str, float], None]:
    """A progress callback that prints each new stage name once, to stderr."""
    last = [""]

    def progress(stage: str, _fraction: float) -> None:
        if stage != last[0]:
            say_stage(stage)
            last[0] = stage

    return progress


def _one_size(part: tuple[str, tuple[int, ...] | None]) -> tuple[str, int | None]:

    backbone, sizes = part
    if sizes and len(sizes) > 1:
        raise ConfigError(f"An audit uses one size per backbone; {backbone[:60]!r} names {len(sizes)}.")
    return backbone, sizes[0] if sizes else None


def cmd_audit(args: argparse.Namespace) -> dict[str, Any]:
    """``audit``: computed once per (features, folds, seed, head), then read back."""

    if args.limit is not None:
        raise ConfigError("An audit covers every image; --limit does not apply.")
    t0 = time.perf_counter()
    ds = load_with_progress(args.source, args.layout)
    labels = None
    if args.labels is not None:
        labels = read_label_file(args.labels, ds, args.force)
        say_stage(
            f"Replacement labels: {', '.join(f'{s} {n:,} changed' for s, n in changed_count(labels, ds).items())}"
        )
    progress = stage_printer()
    backbone, first_sizes = backbone_at_sizes(args.backbone)
    if first_sizes and (len(first_sizes) > 1 or args.image_size):
        raise ConfigError("An audit uses one size per backbone: give BACKBONE@SIZE or --image-size, once.")
    size = first_sizes[0] if first_sizes else args.image_size
    more = tuple(_one_size(backbone_at_sizes(b)) for b in getattr(args, "more_backbones", None) or ())

    spec = resolve_backbone(backbone)
    runtime, _choice = concrete_runtime(
        args, spec, size or spec.default_size(), ds, [(s, v) for s in ds.splits for v in VIEWS]
    )
    audit = run_audit(
        args.source,
        backbone,
        size,
        args.layout,
        runtime,
        args.folds,
        progress=progress,
        batch_size=args.batch_size,
        labels=labels,
        more=more,
    )
    issues, duplicates, photos = audit.label_issues(), audit.duplicates(args.threshold), audit.same_photos()
    leaked = audit.leaked_test_images(args.threshold)
    copied = audit.leaked_test_images(None)
    seconds = time.perf_counter() - t0
    top = args.top
    text = [
        f"{len(issues):,} likely label issues ({', '.join(f'{s}: {len(v):,}' for s, v in audit.issues.items())}); "
        f"{len(duplicates):,} near-duplicate pairs at similarity >= {args.threshold}; {len(leaked):,} test images "
        f"have one in train. Checked on the pixels: {len(photos):,} pairs are the same photograph; {len(copied):,} "
        f"test images have theirs in train. {seconds:.1f}s (audit computed in {audit.seconds:.1f}s).",
        "worst label issues (split/index given -> suggested, score):",
    ]
    text += [
        f"  {r['split']}/{r['index']}  {r['given']} -> {r['suggested']}  {r['score']:.3f}" for r in issues[: top or 10]
    ]
    text += ["same photographs (split/index ~ split/index, pixel score, feature similarity):"]
    text += [
        f"  {d['split_a']}/{d['index_a']} ~ {d['split_b']}/{d['index_b']}  {d['photo_score']:.3f}  "
        f"{d['similarity']:.4f}"
        for d in photos[: top or 10]
    ]
    text += ["closest pairs:"] + [
        f"  {d['split_a']}/{d['index_a']} ~ {d['split_b']}/{d['index_b']}  {d['similarity']:.4f}"
        for d in duplicates[: top or 10]
    ]
    return {
        "label_issues": issues[:top] if top else issues,
        "duplicates": duplicates[:top] if top else duplicates,
        "seconds": round(seconds, 3),
        "audit_seconds": round(audit.seconds, 3),
        "threshold": args.threshold,
        "folds": args.folds,
        "test_with_train_duplicate": len(leaked),
        "same_photos": photos[:top] if top else photos,
        "test_with_train_same_photo": len(copied),
        "test_same_photo_indices": copied.tolist(),
        "counts": {
            "label_issues": {s: len(v) for s, v in audit.issues.items()},
            "duplicate_pairs": len(duplicates),
            "same_photo_pairs": len(photos),
        },
        "audit_key": audit.key,
        "temperature": round(audit.temperature, 4),
        "peak_rss_mb": peak_rss_mb(),
        "_text": "\n".join(text),
    }


def cmd_project(args: argparse.Namespace) -> dict[str, Any]:
    """``project``: the map is computed once per (features, method, parameters), then read back."""

    if args.limit is not None:
        raise ConfigError("A map covers every image; --limit does not apply.")
    t0 = time.perf_counter()

    ds = load_with_progress(args.source, args.layout)
    progress = stage_printer()
    spec = resolve_backbone(args.backbone)
    runtime, _choice = concrete_runtime(
        args, spec, args.image_size or spec.default_size(), ds, [(s, ORIGINAL) for s in ds.splits]
    )
    # Thumbnails first: the page shows the map as soon as it is stored, and must find them made by then.
    thumbs = ""
    if args.thumbs is not None:
        try:
            made = ensure_sprites(ds, args.thumbs, progress=lambda f: progress("thumbnails", f))
            thumbs = f"; hover thumbnails in {made.folder}"
        except UserFacingError as err:  # thumbnails are a nicety: say why there are none, make the map
            thumbs = f"; no hover thumbnails ({err})"
    m = compute_full_map(
        args.source,
        args.backbone,
        args.image_size,
        args.layout,
        args.method,
        runtime,
        args.perplexity,
        args.iterations,
        progress=progress,
        batch_size=args.batch_size,
    )
    seconds = time.perf_counter() - t0
    points = {s: len(c) for s, c in m.coords.items()}
    return {
        "method": m.method,
        "points": points,
        "params": m.params,
        "seconds": round(seconds, 3),
        "projection_seconds": round(m.seconds, 3),
        "key": m.key,
        "peak_rss_mb": peak_rss_mb(),
        "_text": f"{m.method}: {sum(points.values()):,} points ({', '.join(f'{s} {n:,}' for s, n in points.items())}); "
        f"{seconds:.1f}s (projection computed in {m.seconds:.1f}s){thumbs}",
    }


def cmd_export_dataset(args: argparse.Namespace) -> dict[str, Any]:
    """``export-dataset``: the dataset less the excluded images, with the fixed labels, as lossless PNGs."""

    t0 = time.perf_counter()
    ds = load_with_progress(args.source, args.layout)
    exclude = read_exclude_file(args.exclude, ds) if args.exclude is not None else None
    fixes = read_label_file(args.relabel, ds, args.force) if args.relabel is not None else None
    selection = (
        read_exclude_file(args.selection, ds, what="Selection") if args.selection is not None else None
    )  # the same split,index format
    bar = Bar("export", unit="img")
    try:
        summary = export_dataset(ds, args.out, exclude, fixes, selection, note=args.note, on_progress=bar.update_to)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    counts = ", ".join(f"{s} {n:,}" for s, n in summary["images"].items())
    return {
        **{k: v for k, v in summary.items() if k != "relabelled"},
        "relabelled": len(summary["relabelled"]),
        "seconds": round(seconds, 3),
        "_text": f"wrote {counts} images to {summary['out']} ({len(summary['relabelled']):,} labels fixed, "
        f"{sum(len(v) for v in summary['excluded'].values()):,} images left out) in {seconds:.1f}s",
    }


HANDLERS = {"audit": cmd_audit, "project": cmd_project, "export-dataset": cmd_export_dataset}
