"""Data-quality commands: ``audit`` (label issues and near-duplicates).

    python -m lib audit --source ../shared/data/cifar10-jpeg.tar.gz --backbone ... --image-size 128 --json
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from lib.cli.common import add_backbone, add_common, add_source, peak_rss_mb, positive_int


def add_commands(sub: Any) -> None:
    """Register ``audit`` on the sub-parser set."""
    from lib.analysis.audit import DEFAULT_FOLDS, DEFAULT_THRESHOLD

    p = sub.add_parser("audit", help="find likely label errors (cleanlab, K-fold heads) and near-duplicate images (exact cosine neighbours)")
    add_source(p)
    add_backbone(p)
    p.add_argument("--folds", type=positive_int, default=DEFAULT_FOLDS, help="K of the K-fold out-of-sample probabilities for train")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="cosine similarity from which two images are near-duplicates")
    p.add_argument("--top", type=positive_int, default=None, help="print only the first N label issues and duplicate pairs")
    add_common(p)


def cmd_audit(args: argparse.Namespace) -> dict[str, Any]:
    """``audit``: computed once per (features, folds, seed, head), then read back."""
    from lib.analysis.audit import run_audit
    from lib.errors import ConfigError

    if not -1.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold is a cosine similarity in [-1, 1], got {args.threshold}.")
    if args.limit is not None:
        raise ConfigError("An audit covers every image; --limit does not apply.")
    t0 = time.perf_counter()
    last = [""]

    def progress(stage: str, _fraction: float) -> None:
        if stage != last[0]:
            print(stage, file=sys.stderr)
            last[0] = stage

    audit = run_audit(args.source, args.backbone, args.image_size, args.cache_dir, args.runtime, args.folds, progress=progress, batch_size=args.batch_size)
    issues, duplicates = audit.label_issues(), audit.duplicates(args.threshold)
    leaked = audit.leaked_test_images(args.threshold)
    seconds = time.perf_counter() - t0
    top = args.top
    text = [f"{len(issues):,} likely label issues ({', '.join(f'{s}: {len(v):,}' for s, v in audit.issues.items())}); "
            f"{len(duplicates):,} near-duplicate pairs at similarity >= {args.threshold}; {len(leaked):,} test images have one in train. "
            f"{seconds:.1f}s (audit computed in {audit.seconds:.1f}s).", "worst label issues (split/index given -> suggested, score):"]  # fmt: skip
    text += [f"  {r['split']}/{r['index']}  {r['given']} -> {r['suggested']}  {r['score']:.3f}" for r in issues[: top or 10]]
    text += ["closest pairs:"] + [f"  {d['split_a']}/{d['index_a']} ~ {d['split_b']}/{d['index_b']}  {d['similarity']:.4f}" for d in duplicates[: top or 10]]
    return {"label_issues": issues[:top] if top else issues, "duplicates": duplicates[:top] if top else duplicates, "seconds": round(seconds, 3),
            "audit_seconds": round(audit.seconds, 3), "threshold": args.threshold, "folds": args.folds, "test_with_train_duplicate": len(leaked),
            "counts": {"label_issues": {s: len(v) for s, v in audit.issues.items()}, "duplicate_pairs": len(duplicates)},
            "audit_key": audit.key, "peak_rss_mb": peak_rss_mb(), "_text": "\n".join(text)}  # fmt: skip


HANDLERS = {"audit": cmd_audit}
