"""How well the audit finds real human label errors: CIFAR-10N's ``aggre`` labels (4,505 of the 50,000 training labels
differ from the clean ones, mostly between classes people confuse) replace the given labels, the audit runs, and its
flags and ranking are scored against the clean labels.

    python bench/audit_human_noise.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --image-size 128 \
        --labels ../shared/data/cifar10n/aggre_labels.csv [--also
        ../shared/models/efficientnet_lite2_260_feature_vector@260 ...]
        [--cache-dir cache]

Prints the machine, then for the audit: how many training images it flags, their precision and recall (a flag is
right when the replaced label differs from the clean one), precision among the top 1,000 and the top N ranked (N = the
number of wrong labels, 4,505 for aggre; ranked by the audit's score, 1 - p(given label), over every training image),
and the seconds the audit took with its features cached.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from _common import ROOT, data_args


def main() -> int:
    parser = data_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--labels", required=True, help="split,index,label CSV of the noisy labels (CIFAR-10N)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--runtime", default=None, help="the features' runtime (default: the project's default)")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        help="a further BACKBONE@SIZE whose features the audit's heads also use (repeatable)",
    )
    args = parser.parse_args()

    from lib.analysis.audit import cached_audit
    from lib.bounds import backbone_at_sizes
    from lib.data.labels import read_label_file, relabelled
    from lib.data.sources import load_dataset
    from lib.process import machine_info
    from lib.runtimes import DEFAULT_RUNTIME

    runtime = args.runtime or DEFAULT_RUNTIME
    m = machine_info()
    print(f"machine: {m['cpu']}, {m['cores']} cores", flush=True)
    common = [
        "--source",
        args.source,
        "--backbone",
        args.backbone,
        "--image-size",
        str(args.image_size),
        "--cache-dir",
        args.cache_dir,
        "--runtime",
        runtime,
    ]
    more = tuple((b, (s or (None,))[0]) for b, s in map(backbone_at_sizes, args.also))
    for backbone, size in [(args.backbone, args.image_size), *more]:
        part = [
            "--source",
            args.source,
            "--backbone",
            backbone,
            "--cache-dir",
            args.cache_dir,
            "--runtime",
            runtime,
            *(["--image-size", str(size)] if size else []),
        ]
        subprocess.run(
            [sys.executable, "-m", "lib", "extract", *part, "--split", "all", "--view", "both", "--json"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    also = [a for b in args.also for a in ("--backbone", b)]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lib",
            "audit",
            *common,
            *also,
            "--labels",
            args.labels,
            "--folds",
            str(args.folds),
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        print(proc.stderr[-2000:])
        return 1
    out = json.loads(proc.stdout)
    ds = load_dataset(args.source, args.cache_dir)
    fixes = read_label_file(args.labels, ds)
    clean = ds.labels("train")
    noisy = relabelled(clean, fixes.get("train"))
    wrong = noisy != clean
    audit = cached_audit(
        args.source, args.backbone, args.image_size, args.cache_dir, runtime, folds=args.folds, labels=fixes, more=more
    )
    assert audit is not None
    flagged = np.asarray(audit.issues["train"], np.int64)
    score = 1.0 - audit.probs["train"][np.arange(len(noisy)), noisy]
    order = np.argsort(-score, kind="stable")
    n_wrong = int(wrong.sum())
    precision = float(wrong[flagged].mean()) if len(flagged) else 0.0
    recall = float(wrong[flagged].sum() / n_wrong) if n_wrong else 0.0
    print(f"noisy labels: {n_wrong:,} of {len(noisy):,} training labels differ from the clean ones", flush=True)
    print(
        f"audit ({args.folds}-fold, {out['audit_seconds']:.0f}s computing, {wall:.0f}s whole command with features "
        f"cached): flags {len(flagged):,} training images, precision {precision:.3f}, recall {recall:.3f}",
        flush=True,
    )
    for n in (1000, n_wrong):
        print(f"precision among the top {n:,} ranked: {wrong[order[:n]].mean():.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
