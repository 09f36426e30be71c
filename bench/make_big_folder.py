"""Write a synthetic image-folder dataset of N images for conversion tests and benchmarks.

Layout ``<out>/<train|test>/class_<k>/<n>.<ext>`` with 10 classes (one test image in six). Images
have random sizes (16 to 96 px a side by default, not square) and random modes: RGB, grayscale and
CMYK JPEGs; RGB, RGBA, palette and 16-bit grayscale PNGs. Each class has its own colour, so a
backbone can tell them apart. Deterministic for a given --seed; written by all cores.

    python bench/make_big_folder.py /tmp/big --images 200000
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CLASSES = 10
MODES = ("RGB-jpg", "L-jpg", "CMYK-jpg", "RGB-png", "RGBA-png", "P-png", "I16-png")
MODE_WEIGHTS = (0.45, 0.1, 0.05, 0.15, 0.1, 0.1, 0.05)


def image_path(out: Path, i: int, seed: int) -> tuple[Path, str]:
    """Where image ``i`` goes and its mode (chosen from ``seed`` and ``i`` only, so any worker can write any image)."""
    rng = np.random.default_rng([seed, i, 0])
    mode = MODES[int(rng.choice(len(MODES), p=MODE_WEIGHTS))]
    split = "test" if (i // CLASSES) % 6 == 5 else "train"  # every class: one image in six goes to test
    ext = mode.split("-")[1]
    return out / split / f"class_{i % CLASSES}" / f"{i:07d}.{ext}", mode


def render(i: int, seed: int, min_side: int, max_side: int, mode: str) -> object:
    """Image ``i``: a smooth field in its class's colour, at a random size, in ``mode``."""
    from PIL import Image

    rng = np.random.default_rng([seed, i, 1])
    w, h = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    hue = np.array([(i % CLASSES) * 25, 255 - (i % CLASSES) * 25, ((i % CLASSES) * 77) % 256], np.float64)
    coarse = np.clip(hue + rng.normal(0, 40, size=(4, 4, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(coarse).resize((w, h), Image.Resampling.BILINEAR)
    if mode.startswith("L-"):
        return img.convert("L")
    if mode.startswith("CMYK"):
        return img.convert("CMYK")
    if mode.startswith("RGBA"):
        rgba = img.convert("RGBA")
        rgba.putalpha(Image.fromarray(np.full((h, w), 255 - int(rng.integers(0, 64)), np.uint8)))
        return rgba
    if mode.startswith("P-"):
        return img.quantize(64)
    if mode.startswith("I16"):
        return Image.fromarray(np.asarray(img.convert("L"), np.uint16) * 257)
    return img


def write_range(out: str, start: int, end: int, seed: int, min_side: int, max_side: int) -> int:
    """Write images ``[start, end)``; returns the bytes written."""
    total = 0
    for i in range(start, end):
        path, mode = image_path(Path(out), i, seed)
        img = render(i, seed, min_side, max_side, mode)
        tmp = path.with_name(f".{path.name}.tmp")
        img.save(tmp, format="JPEG" if path.suffix == ".jpg" else "PNG", quality=85)  # type: ignore[attr-defined]
        os.replace(tmp, path)
        total += path.stat().st_size
    return total


def make_big_folder(
    out: Path, images: int, seed: int = 0, min_side: int = 16, max_side: int = 96, workers: int | None = None
) -> int:
    """Write ``images`` images under ``out``; returns the bytes written."""
    for split in ("train", "test"):
        for k in range(CLASSES):
            (out / split / f"class_{k}").mkdir(parents=True, exist_ok=True)
    step = 2000
    ranges = [(s, min(s + step, images)) for s in range(0, images, step)]
    workers = workers or os.cpu_count() or 2
    if workers == 1 or len(ranges) == 1:
        return sum(write_range(str(out), s, e, seed, min_side, max_side) for s, e in ranges)
    with ProcessPoolExecutor(workers) as pool:
        return sum(pool.map(write_range, *zip(*[(str(out), s, e, seed, min_side, max_side) for s, e in ranges])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "out", type=Path, help="folder to write (created; existing images of the same names are replaced)"
    )
    parser.add_argument("--images", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-side", type=int, default=16)
    parser.add_argument("--max-side", type=int, default=96)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    args = parser.parse_args()
    if args.images < 1 or not 1 <= args.min_side <= args.max_side:
        parser.error("--images must be positive and 1 <= --min-side <= --max-side")
    t0 = time.perf_counter()
    size = make_big_folder(args.out, args.images, args.seed, args.min_side, args.max_side, args.workers)
    seconds = time.perf_counter() - t0
    print(
        f"wrote {args.images:,} images ({size / 1e6:,.1f} MB) to {args.out} in {seconds:.1f} s "
        f"({args.images / seconds:,.0f} images/s)"
    )


if __name__ == "__main__":
    main()
