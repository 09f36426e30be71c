"""How well a 2-D map keeps each image's neighbours, and what it costs: the app's t-SNE (openTSNE) and PCA against
UMAP (umap-learn) and PaCMAP, on every image of a dataset (issue 33's choice of the projection for large maps).

Each method is fitted on the training features and places the test images with the fitted model, as the app's map
does (:func:`lib.analysis.full_map.project_all`). Neighbour keeping: for a seeded sample of 5,000 images, the share of
each one's 10 nearest images in feature space (Euclidean, over every image) that are also among its 10 nearest on the
map; 1.0 keeps every neighbourhood. It is also given among the training images alone (fitted, none placed). Time is
wall-clock on this machine (printed with its CPU and cores); memory is the process's peak RSS growth during the method,
read from /proc (the methods run one after another, in one process, so a later method's figure can only be lower than
its own peak: run one method per process with --methods for exact figures).

    python bench/projection_quality.py --source ../shared/data/cifar10-jpeg.tar.gz \\
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --image-size 128 --cache-dir /tmp/cache \\
        --methods tsne,umap,pacmap,pca

A method whose library is not installed is reported as skipped (``pip install umap-learn pacmap``). ``tsne-stored``
and ``pca-stored`` read the app's map already stored in the cache (``python -m lib project``) instead of computing it:
the neighbour keeping of a million-image t-SNE without another 28 minutes (its time is the stored projection time).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import data_args  # (puts the project on sys.path)

from lib.process import configure_process, machine_info, peak_rss_mb

SAMPLE = 5_000
K = 10
SEED = 0


def neighbour_keeping(features: np.ndarray, coords: np.ndarray, sample: int = SAMPLE, k: int = K) -> float:
    """Mean share of a sampled image's ``k`` nearest in feature space that are among its ``k`` nearest on the map."""
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(SEED)
    picked = rng.choice(len(features), size=min(sample, len(features)), replace=False)
    feat = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", n_jobs=-1).fit(features)
    near_f = feat.kneighbors(features[picked], return_distance=False)
    on_map = NearestNeighbors(n_neighbors=k + 1, algorithm="kd_tree").fit(coords)
    near_m = on_map.kneighbors(coords[picked], return_distance=False)
    kept = [
        len((set(f.tolist()) - {int(i)}) & (set(m.tolist()) - {int(i)})) / k
        for i, f, m in zip(picked, near_f, near_m, strict=True)
    ]
    return float(np.mean(kept))


def _reduced(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both splits on the training features' first principal components, as the app reduces them before t-SNE (a
    method's time includes this, as the app's t-SNE time does)."""
    from sklearn.decomposition import PCA

    from lib.analysis.full_map import PCA_DIMS

    pca = PCA(n_components=PCA_DIMS, random_state=SEED).fit(train)
    return pca.transform(train), pca.transform(test)


def _umap(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import umap  # type: ignore[import-not-found]

    fit, placed = _reduced(train, test)
    # No random_state: umap-learn then runs on every core (a seed makes it single-threaded).
    model = umap.UMAP(n_neighbors=15, min_dist=0.1, n_components=2, low_memory=True, n_jobs=os.cpu_count() or 1)
    a = model.fit_transform(fit)
    return np.asarray(a, np.float32), np.asarray(model.transform(placed), np.float32)


def _pacmap(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import pacmap  # type: ignore[import-not-found]

    fit, placed = _reduced(train, test)
    model = pacmap.PaCMAP(n_components=2, n_neighbors=10, random_state=SEED, save_tree=True, apply_pca=False)
    a = model.fit_transform(fit, init="pca")
    return np.asarray(a, np.float32), np.asarray(model.transform(placed, basis=fit), np.float32)


def _app(method: str) -> Any:
    def run(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from lib.analysis.full_map import project_all

        out = project_all({"train": train, "test": test}, method)
        return out["train"], out["test"]

    return run


METHODS = {"tsne": _app("tsne"), "pca": _app("pca"), "umap": _umap, "pacmap": _pacmap}
STORED = ("tsne-stored", "pca-stored")


def main() -> None:
    ap = data_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    ap.add_argument("--methods", default="tsne,umap,pacmap,pca")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    from lib.data.sources import load_dataset
    from lib.models.specs import resolve_backbone
    from lib.pipeline.features import ensure_features
    from lib.store.layout import CacheLayout

    layout = CacheLayout(args.cache_dir)
    configure_process(layout.tfhub_cache())
    t0 = time.perf_counter()
    ds, spec = load_dataset(args.source, layout), resolve_backbone(args.backbone)
    train, test = (
        np.asarray(ensure_features(ds, s, spec, layout, args.image_size, runtime="tf").features, np.float32)
        for s in ("train", "test")
    )
    print(f"{machine_info()}; features of {len(train):,} + {len(test):,} images in {time.perf_counter() - t0:.0f} s")
    everything = np.concatenate([train, test])
    rows = []
    for name in args.methods.split(","):
        try:
            before = peak_rss_mb() or 0.0
            t = time.perf_counter()
            if name in STORED:
                from lib.analysis.full_map import find_full_map

                stored = find_full_map(
                    args.source, args.backbone, args.image_size, layout, name.split("-")[0], runtime="tf"
                )
                if stored is None:
                    print(f"{name}: skipped (no stored map: run python -m lib project first)")
                    continue
                (a, b), seconds = (stored.coords["train"], stored.coords["test"]), stored.seconds
            else:
                a, b = METHODS[name](train, test)
                seconds = time.perf_counter() - t
            growth = (peak_rss_mb() or 0.0) - before
        except ImportError as err:
            print(f"{name}: skipped ({err})")
            continue
        kept = neighbour_keeping(everything, np.concatenate([a, b]))
        kept_fit = neighbour_keeping(train, a)  # among the fitted (training) images only: no placed points
        rows.append(
            {
                "method": name,
                "seconds": round(seconds, 1),
                "peak_rss_growth_mb": round(growth),
                "kept": kept,
                "kept_train_only": kept_fit,
            }
        )
        print(
            f"{name:7s} {seconds:7.1f} s  peak RSS +{growth:6.0f} MB  10-NN kept {kept:.3f} (train {kept_fit:.3f})",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_info(), "images": len(everything), "rows": rows}))


if __name__ == "__main__":
    main()
