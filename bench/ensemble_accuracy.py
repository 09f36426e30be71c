"""Test accuracy and calibration of the ``best`` preset's head on concatenations of several backbones' cached features:
the search behind ``--protocol best-ensemble``.

    python bench/ensemble_accuracy.py --source ../shared/data/cifar10-jpeg.tar.gz --runtime litert \
        --parts mobilenet_v1_100_224@128 --parts mobilenet_v1_100_224@128,efficientnet_lite0_224@224 [--hidden 2048 ...]

Each ``--parts`` is one configuration: comma-separated ``BACKBONE@SIZE`` (a registry name resolves to its folder in
``../shared/models``, as presets do; or give a path). Features are extracted first where missing (train and test,
original and mirrored, every image). For each configuration it prints the machine, then test accuracy on the whole
test split, ECE before and after temperature scaling, the temperature, the head's training seconds and the feature
width. The head is the ``best`` preset's (MLP, original + flipped training, flip TTA) unless overridden.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time

import numpy as np
from _common import ROOT, CacheLayout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True)
    parser.add_argument(
        "--parts",
        action="append",
        required=True,
        help="BACKBONE@SIZE[,BACKBONE@SIZE...] (repeatable: one configuration each)",
    )
    parser.add_argument("--runtime", default=None)
    parser.add_argument("--cache-dir", type=CacheLayout, default=str(ROOT / "cache"))
    parser.add_argument("--hidden", type=int, default=None)
    parser.add_argument("--dropout", type=float, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()

    from lib.data.sources import load_dataset
    from lib.models.metrics import reliability
    from lib.models.predict import part_key
    from lib.models.protocols import PROTOCOLS, with_overrides
    from lib.models.specs import preset_backbone
    from lib.pipeline.features import cached_feature_result
    from lib.pipeline.training import FeatureBlock, fit_head
    from lib.process import machine_info
    from lib.runtimes import DEFAULT_RUNTIME
    from lib.runtimes.backbones import resolve_backbone

    runtime = args.runtime or DEFAULT_RUNTIME
    m = machine_info()
    print(f"machine: {m['cpu']}, {m['cores']} cores; runtime {runtime}", flush=True)
    head = with_overrides(PROTOCOLS["best"].head, hidden=args.hidden, dropout=args.dropout, epochs=args.epochs)
    ds = load_dataset(args.source, args.cache_dir)
    for config in args.parts:
        parts = [(preset_backbone(p.rsplit("@", 1)[0]), int(p.rsplit("@", 1)[1])) for p in config.split(",")]
        blocks = {}
        for backbone, size in parts:
            cmd = [
                "-m",
                "lib",
                "extract",
                "--source",
                args.source,
                "--backbone",
                backbone,
                "--image-size",
                str(size),
                "--split",
                "all",
                "--view",
                "both",
                "--runtime",
                runtime,
                "--cache-dir",
                args.cache_dir,
                "--json",
            ]
            subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True, capture_output=True)
        for split in ("train", "test"):
            found = {}
            for j, (backbone, size) in enumerate(parts):
                for view in ("original", "flip"):
                    r = cached_feature_result(
                        ds, split, resolve_backbone(backbone), size, view, None, args.cache_dir, runtime
                    )
                    assert r is not None, (backbone, size, split, view)
                    found[(part_key(j, size), view)] = np.asarray(r.features, np.float32)
            blocks[split] = FeatureBlock(found, ds.labels(split), np.arange(ds.size(split)), 0, 0)
        keys = tuple(part_key(j, s) for j, (_b, s) in enumerate(parts))
        t0 = time.perf_counter()
        fit = fit_head(
            blocks["train"],
            blocks["test"],
            keys,
            ("original", "flip"),
            True,
            dataclasses.replace(head),
            len(ds.classes),
        )
        seconds = time.perf_counter() - t0
        y = ds.labels("test")
        width = sum(blocks["train"].parts[(k, "original")].shape[1] for k in keys)
        print(
            f"{config}: accuracy {float((fit.probs.argmax(1) == y).mean()):.2%}, ECE "
            f"{reliability(y, fit.raw_probs)['ece']:.4f} -> {reliability(y, fit.probs)['ece']:.4f} (T "
            f"{fit.head.temperature:.3f}), head {seconds:.0f} s, {width:,} features",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
