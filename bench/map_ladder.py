"""The scale ladder of the map of every image: a dataset of N images made from CIFAR-10, through conversion,
extraction, PCA and t-SNE maps, and the browser.

    python bench/map_ladder.py --cifar ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_025_128_dequant_feature_vector --image-size 64 \
        --rungs 60000,250000 --work /tmp/ladder [--browser]

Each rung of N images is an uncompressed tar archive (``<split>/<class>/<n>.png``) made from the CIFAR-10 source:
N * 5/6 training images drawn in turn from its 50,000 training images and N / 6 test images from its 10,000 test
images, each copy after the first of an image changed by a seeded augmentation (a horizontal flip every other copy,
a shift of up to 4 px with mirrored edges, a brightness change of up to 20%), so no two images of the archive are the
same. Then, each in a fresh process of the CLI on a cache of the rung's own, with its wall time and peak RSS
(``wait4``): ``data`` (the conversion), ``project --method pca`` (the features of every image, then PCA), ``project
--method tsne`` (openTSNE on the cached features). With ``--browser``, ``bench/map_view.py`` then opens each map in
headless Chromium (first draw, hover-to-thumbnail, full redraw, pan and zoom frames/s, a lasso, the server's peak
RSS). The CPU model and core
count are printed first; ``--json`` keeps every figure.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from _common import ROOT

from lib.process import machine_info

TEST_SHARE = 6  # one image in six is a test image, as in CIFAR-10
SHIFT = 4  # pixels
BRIGHTNESS = 0.2


def augment(img: np.ndarray, copy: int, seed: int) -> np.ndarray:
    """Copy ``copy`` of an image: the image itself for copy 0, else flipped every other copy, shifted and brightened
    by amounts drawn from ``seed``."""
    if copy == 0:
        return img
    rng = np.random.default_rng(seed)
    out = img[:, ::-1] if copy % 2 else img
    dy, dx = (int(v) for v in rng.integers(-SHIFT, SHIFT + 1, size=2))
    padded = np.pad(out, ((SHIFT, SHIFT), (SHIFT, SHIFT), (0, 0)), mode="reflect")
    out = padded[SHIFT + dy : SHIFT + dy + img.shape[0], SHIFT + dx : SHIFT + dx + img.shape[1]]
    scale = 1.0 + rng.uniform(-BRIGHTNESS, BRIGHTNESS)
    return np.clip(out.astype(np.float32) * scale, 0, 255).astype(np.uint8)


def _encode_range(args: tuple[str, int, int, int]) -> list[tuple[str, bytes]]:
    """PNG members for positions ``[start, end)`` of one split (run in a worker process)."""
    from PIL import Image

    split, start, end, rung_seed = args
    images, labels, classes = _SOURCE[split]
    out = []
    for i in range(start, end):
        j, copy = i % len(images), i // len(images)
        img = augment(images[j], copy, rung_seed * 1_000_003 + i * 2 + (split == "test"))
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", compress_level=1)
        out.append((f"{split}/{classes[int(labels[j])]}/{split}-{i:07d}.png", buf.getvalue()))
    return out


_SOURCE: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}


def _load_source(cifar: str, cache: Path) -> None:
    from lib.data.sources import load_dataset
    from lib.store.layout import CacheLayout

    ds = load_dataset(cifar, CacheLayout(cache))
    for split in ("train", "test"):
        _SOURCE[split] = (np.asarray(ds.images(split)), np.asarray(ds.labels(split)), list(ds.classes))


def make_rung(cifar: str, images: int, out: Path, cache: Path, seed: int = 0) -> dict[str, Any]:
    """Write the rung's archive (once; an existing one is reused) and say how long it took."""
    if out.exists():
        return {"images": images, "archive_mb": out.stat().st_size / 1e6, "seconds": 0.0, "reused": True}
    t0 = time.perf_counter()
    _load_source(cifar, cache)
    counts = {"test": images // TEST_SHARE, "train": images - images // TEST_SHARE}
    step = 5000
    tasks = [(s, a, min(a + step, n), seed) for s, n in counts.items() for a in range(0, n, step)]
    partial = out.with_name(out.name + ".writing")  # renamed into place once complete
    with tarfile.open(partial, "w") as tar, ProcessPoolExecutor(os.cpu_count() or 2) as pool:
        for members in pool.map(_encode_range, tasks):
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    os.replace(partial, out)
    return {"images": images, "archive_mb": out.stat().st_size / 1e6, "seconds": time.perf_counter() - t0}


def _peak_rss_mb(usage: Any) -> float | None:
    return usage.ru_maxrss / 1024 if usage is not None else None


class _Popen(subprocess.Popen):
    """A ``Popen`` that reaps its child with ``wait4`` and keeps the child's resource usage (its own peak RSS)."""

    rusage: Any = None

    def _try_wait(self, wait_flags: int) -> tuple[int, int]:  # type: ignore[override]
        try:
            pid, status, self.rusage = os.wait4(self.pid, wait_flags)
        except ChildProcessError:
            pid, status = self.pid, 0
        return pid, status


def stage(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """One CLI command in a fresh process: its wall time, its own peak RSS, and its JSON answer."""
    t0 = time.perf_counter()
    with _Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[3:5])} failed ({proc.returncode}): {err[-2000:]}")
    try:
        answer = json.loads(out)
    except ValueError:
        answer = {}
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(_peak_rss_mb(proc.rusage) or 0.0), "answer": answer}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cifar", required=True, help="the CIFAR-10 source the rungs are made from")
    p.add_argument("--backbone", required=True)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--rungs", default="60000,250000,1000000", help="comma-separated image counts")
    p.add_argument("--work", type=Path, required=True, help="folder for the archives and each rung's cache")
    p.add_argument("--methods", default="pca,tsne")
    p.add_argument("--runtime", default="tf", help="extraction runtime (pinned, so rungs compare)")
    p.add_argument("--browser", action="store_true", help="also open each map in headless Chromium")
    p.add_argument("--json", default="", help="write every figure here")
    args = p.parse_args()
    info = machine_info()
    print(f"CPU: {info['cpu']}, {info['cores']} cores")
    args.work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    py = [sys.executable, "-m", "lib"]
    common = ["--backbone", args.backbone, "--image-size", str(args.image_size), "--runtime", args.runtime]
    results: list[dict[str, Any]] = []
    for n in (int(r) for r in args.rungs.split(",")):
        archive = args.work / f"cifar10-ladder-{n}.tar"
        cache = args.work / f"cache-{n}"
        row: dict[str, Any] = {"images": n, "make": make_rung(args.cifar, n, archive, args.work / "source-cache")}
        print(
            f"{n:,} images: archive {row['make']['archive_mb']:,.0f} MB in {row['make']['seconds']:.0f} s", flush=True
        )
        src = ["--source", str(archive), "--cache-dir", str(cache), "--json"]
        row["convert"] = stage([*py, "data", *src], env)
        print(
            f"  convert: {row['convert']['seconds']:.0f} s, peak RSS {row['convert']['peak_rss_mb']:,} MB", flush=True
        )
        for method in args.methods.split(","):
            r = stage([*py, "project", *src, *common, "--method", method], env)
            r["projection_seconds"] = r["answer"].get("projection_seconds")
            row[method] = r
            print(
                f"  project {method}: {r['seconds']:.0f} s (projection {r['projection_seconds']} s), "
                f"peak RSS {r['peak_rss_mb']:,} MB",
                flush=True,
            )
            if args.browser:
                figures = args.work / f"browser-{n}-{method}.json"
                figures.unlink(missing_ok=True)
                view = subprocess.run(
                    [
                        sys.executable,
                        str(ROOT / "bench" / "map_view.py"),
                        "--source",
                        str(archive),
                        "--backbone",
                        args.backbone,
                        "--image-size",
                        str(args.image_size),
                        "--cache-dir",
                        str(cache),
                        "--method",
                        {"pca": "PCA", "tsne": "t-SNE"}[method],
                        "--hovers",
                        "20",
                        "--json",
                        str(figures),
                    ],
                    cwd=ROOT,
                    env={**env, "TLX_RUNTIME": args.runtime},
                    capture_output=True,
                    text=True,
                    timeout=1800,
                )
                r["browser"] = json.loads(figures.read_text()) if figures.exists() else {}
                r["browser_text"] = (view.stdout + view.stderr)[-3000:]
                shown = view.stdout if view.returncode == 0 else f"failed ({view.returncode}): {view.stderr[-1500:]}"
                print("  browser:\n" + "\n".join("    " + line for line in shown.strip().splitlines()))
        results.append(row)
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": info, "rungs": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
