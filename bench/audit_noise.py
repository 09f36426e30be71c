"""How well does the audit find label errors we know about? Flip a share of the training labels at random,
audit, and count how many flipped images it flags (recall) and how many of its flags are flipped ones.

    python bench/audit_noise.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --image-size 128 --flip 0.02

The features must be cached (``python -m lib extract ... --split all``). The dataset's own label errors stay in,
so "precision" here counts them as false alarms: it is a lower bound. Nothing is tuned on any published list.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _common import data_args  # (puts the project on sys.path)


def main() -> int:
    from lib.analysis.audit import compute_audit
    from lib.data.sources import load_dataset
    from lib.models.specs import resolve_backbone
    from lib.pipeline.features import cached_feature_result
    from lib.process import configure_process, machine_info
    from lib.store.layout import CacheLayout

    parser = data_args(argparse.ArgumentParser())
    parser.add_argument("--flip", type=float, default=0.02, help="share of training labels to flip to another class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    configure_process(CacheLayout(args.cache_dir).tfhub_cache())
    m = machine_info()
    print(
        f"machine: {m['cpu']}, {m['cores']} cores; flipping {args.flip:.1%} of the training labels (seed {args.seed})",
        flush=True,
    )
    ds = load_dataset(args.source, args.cache_dir)
    spec = resolve_backbone(args.backbone)
    feats, labels = {}, {}
    for split in ("train", "test"):
        res = cached_feature_result(ds, split, spec, args.image_size, "original", None, args.cache_dir)
        if res is None:
            raise SystemExit(
                f"no cached {split} features: run `python -m lib extract ... --image-size {args.image_size} --split "
                "all` first"
            )
        feats[split], labels[split] = np.asarray(res.features), np.asarray(res.labels).copy()
    rng = np.random.default_rng(args.seed)
    y = labels["train"]
    flipped = rng.choice(len(y), size=round(args.flip * len(y)), replace=False)
    y[flipped] = (y[flipped] + rng.integers(1, len(ds.classes), size=len(flipped))) % len(ds.classes)
    t0 = time.perf_counter()
    audit = compute_audit(list(ds.classes), feats, labels)
    flagged = set(audit.issues["train"].tolist())
    hit = flagged & set(flipped.tolist())
    top = audit.issues["train"][: len(flipped)]
    top_hit = len(set(top.tolist()) & set(flipped.tolist()))
    print(
        f"audit {time.perf_counter() - t0:.1f}s; {len(flipped):,} flipped; {len(flagged):,} flagged in train",
        flush=True,
    )
    print(
        f"recall {len(hit) / len(flipped):.1%} ({len(hit):,} of the flipped are flagged); "
        f"{len(hit) / max(len(flagged), 1):.1%} of the flags are flipped images",
        flush=True,
    )
    print(
        f"among the {len(flipped):,} worst-ranked flags, {top_hit:,} ({top_hit / len(flipped):.1%}) are flipped images",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
