"""How well the near-duplicate pixel check (:mod:`lib.analysis.duplicates`) tells the same photograph from a similar
one: N test images against a strongly edited copy of themselves (mirrored at random, cropped to 75-100% and scaled
back, colour, brightness and contrast changed, sometimes made grey, re-saved as JPEG at quality 50-95), and against
their hardest negative (the most similar other test image of the same class in grey-level pixels).

    python bench/same_photo.py --source ../shared/data/cifar10-jpeg.tar.gz [--n 1000] [--cache-dir cache]

Prints the machine, the seconds per pair, and for each threshold the share of edited copies kept and of hard negatives
passed (the latter include real duplicates inside the test split, so it is an upper bound on false matches).
"""

from __future__ import annotations

import argparse
import io
import sys
import time

import numpy as np
from _common import ROOT, CacheLayout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--cache-dir", type=CacheLayout, default=str(ROOT / "cache"))
    args = parser.parse_args()
    from PIL import Image, ImageEnhance

    from lib.analysis.duplicates import SAME_PHOTO, same_photo_scores
    from lib.data.sources import load_dataset
    from lib.process import machine_info

    m = machine_info()
    print(f"machine: {m['cpu']}, {m['cores']} cores", flush=True)
    ds = load_dataset(args.source, args.cache_dir)
    pool = min(3 * args.n, ds.size("test"))
    x, y = np.asarray(ds.images("test")[:pool]), ds.labels("test")[:pool]
    rng = np.random.default_rng(0)

    def edited(img: np.ndarray) -> np.ndarray:
        im = Image.fromarray(img)
        side = im.size[0]
        if rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        s = round(side * rng.uniform(0.75, 1.0))
        ox, oy = rng.integers(0, side - s + 1, 2)
        im = im.crop((int(ox), int(oy), int(ox) + s, int(oy) + s)).resize((side, side), Image.Resampling.BILINEAR)
        for enhance in (ImageEnhance.Color, ImageEnhance.Brightness, ImageEnhance.Contrast):
            im = enhance(im).enhance(
                float(rng.uniform(0.3, 1.7) if enhance is ImageEnhance.Color else rng.uniform(0.7, 1.3))
            )
        if rng.random() < 0.3:
            im = im.convert("L").convert("RGB")
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=int(rng.integers(50, 95)))
        return np.asarray(Image.open(buf).convert("RGB"))

    n = min(args.n, pool)
    a = x[:n]
    copies = np.stack([edited(i) for i in a])
    g = x.astype(np.float32).mean(-1)[:, ::2, ::2].reshape(len(x), -1)
    g -= g.mean(1, keepdims=True)
    g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-6)
    sims = g[:n] @ g.T
    sims[np.arange(n), np.arange(n)] = -9
    sims[y[:n, None] != y[None, :]] -= 1  # the same class first
    negatives = x[sims.argmax(1)]
    t0 = time.perf_counter()
    pos, neg = same_photo_scores(a, copies), same_photo_scores(a, negatives)
    per_pair = (time.perf_counter() - t0) / (2 * n)
    print(f"{2 * n:,} pairs, {1000 * per_pair:.1f} ms per pair; the project's threshold is {SAME_PHOTO}", flush=True)
    for thr in (0.7, 0.75, 0.8, 0.85, 0.9):
        print(
            f"threshold {thr:.2f}: edited copies kept {np.mean(pos >= thr):.1%}, hard negatives passed "
            f"{np.mean(neg >= thr):.1%}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
