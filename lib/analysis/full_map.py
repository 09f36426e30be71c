"""A 2-D map of every image (train and test) from one backbone's features: PCA, or t-SNE through openTSNE.

    m = compute_full_map(source, backbone, 128, layout, "tsne", progress=print)   # once; then read back
    m.coords["train"], m.coords["test"]                                              # float32 [n, 2] each

Both projections are fitted on the training features only and place the test images with the fitted
model, so the map is the same whichever split one looks at. t-SNE follows openTSNE's recipe for large
sets: PCA to 50 dimensions first (fitted on train), PCA initialisation, FFT-accelerated gradients, a fixed
seed, every core; test points are added with ``TSNEEmbedding.transform``. A map is computed only when
asked (``python -m lib project``), and kept as an artifact
(``projections/full-<method>-<key>.npz``) keyed by the features' keys and every parameter, with a CRC
over its arrays: a damaged or stale one is recomputed, never shown.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lib.config import SEED
from lib.errors import ConfigError
from lib.pipeline.whole import whole_dataset
from lib.runtimes import DEFAULT_RUNTIME
from lib.store.atomic import load_npz_checked, save_npz_checked
from lib.store.layout import CacheLayout, artifact_key

MAP_VERSION = 1
METHODS = ("pca", "tsne")
PCA_DIMS = 50

ProgressFn = Callable[[str, float], None]


@dataclass
class FullMap:
    """Coordinates of every image of each split, and how they were made."""

    method: str
    coords: dict[str, np.ndarray]
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    key: str = ""


def map_key(feature_keys: dict[str, str], method: str, params: dict[str, Any]) -> str:
    """A hash of the features and every parameter."""
    return artifact_key({"features": feature_keys, "method": method, "params": params, "v": MAP_VERSION})


def project_all(
    features: dict[str, np.ndarray],
    method: str = "pca",
    perplexity: float = 30.0,
    iterations: int = 500,
    seed: int = SEED,
    progress: ProgressFn | None = None,
) -> dict[str, np.ndarray]:
    """Fit on ``features["train"]``, place every other split with the fitted model."""
    from sklearn.decomposition import PCA

    if method not in METHODS:
        raise ConfigError(f"Unknown projection {method!r}; choose one of {', '.join(METHODS)}.")
    report = progress or (lambda _s, _f: None)
    train = np.asarray(features["train"], np.float32)
    others = {s: np.asarray(x, np.float32) for s, x in features.items() if s != "train"}
    if method == "pca":
        report("PCA", 0.0)
        pca = PCA(n_components=2, random_state=seed).fit(train)
        return {
            "train": pca.transform(train).astype(np.float32),
            **{s: pca.transform(x).astype(np.float32) for s, x in others.items()},
        }
    from openTSNE import TSNE

    if len(train) <= 3 * perplexity:
        raise ConfigError(
            f"t-SNE with perplexity {perplexity:g} needs more than {3 * perplexity:g} training images; this split "
            f"has {len(train)}."
        )
    report(f"PCA to {PCA_DIMS} dimensions", 0.02)
    pca = PCA(n_components=min(PCA_DIMS, train.shape[1], len(train)), random_state=seed).fit(train)

    def on_iteration(iteration: int, _error: float, _embedding: Any) -> None:
        report(f"t-SNE iteration {iteration}", 0.05 + 0.8 * min(iteration / (iterations + 250), 1.0))

    tsne = TSNE(
        perplexity=perplexity,
        n_iter=iterations,
        initialization="pca",
        negative_gradient_method="fft",
        n_jobs=os.cpu_count() or 1,
        random_state=seed,
        callbacks=on_iteration,
        callbacks_every_iters=50,
    )
    embedding = tsne.fit(pca.transform(train))
    out = {"train": np.asarray(embedding, np.float32)}
    for s, x in others.items():
        report(f"placing {s} images on the map", 0.9)
        out[s] = np.asarray(embedding.transform(pca.transform(x)), np.float32)
    return out


def save_map(path: Path, m: FullMap, feature_keys: dict[str, str] | None = None) -> None:
    """Write the map atomically with a checksum over its arrays; ``feature_keys`` (split -> the features it was
    computed from) tell a bundle which dataset and backbone it belongs to."""

    meta = {
        "method": m.method,
        "seconds": m.seconds,
        "params": m.params,
        "version": MAP_VERSION,
        "feature_keys": feature_keys or {},
    }
    save_npz_checked(path, m.coords, meta)


def load_map(path: Path, expected: dict[str, int]) -> FullMap | None:
    """The stored map, or None if missing, damaged, stale, of other sizes, or not finite."""

    loaded = load_npz_checked(path)
    if loaded is None or loaded[0].get("version") != MAP_VERSION:
        return None
    meta, coords = loaded
    if {s: len(c) for s, c in coords.items()} != expected or not all(
        c.ndim == 2 and c.shape[1] == 2 and np.isfinite(c).all() for c in coords.values()
    ):
        return None
    return FullMap(
        str(meta["method"]), coords, float(meta.get("seconds", 0.0)), dict(meta.get("params", {})), path.stem
    )


def _params(method: str, perplexity: float, iterations: int, seed: int) -> dict[str, Any]:
    return (
        {"seed": seed}
        if method == "pca"
        else {"perplexity": perplexity, "iterations": iterations, "seed": seed, "pca_dims": PCA_DIMS}
    )


def _map_target(
    source: str,
    backbone: str,
    image_size: int | None,
    layout: CacheLayout,
    method: str,
    runtime: str,
    params: dict[str, Any],
) -> tuple[Any, Path]:

    if method not in METHODS:
        raise ConfigError(f"Unknown projection {method!r}; choose one of {', '.join(METHODS)}.")
    whole = whole_dataset(source, backbone, image_size, layout, runtime, "A map (fitted on the training images)")
    return whole, layout.full_map_file(method, map_key(whole.feature_keys, method, params))


def find_full_map(
    source: str,
    backbone: str,
    image_size: int | None,
    layout: CacheLayout,
    method: str = "tsne",
    runtime: str = DEFAULT_RUNTIME,
    perplexity: float = 30.0,
    iterations: int = 500,
    seed: int = SEED,
) -> FullMap | None:
    """The stored map if there is a valid one; never computes anything (what a page calls on load)."""
    whole, path = _map_target(
        source, backbone, image_size, layout, method, runtime, _params(method, perplexity, iterations, seed)
    )
    return load_map(path, whole.sizes)


def compute_full_map(
    source: str,
    backbone: str,
    image_size: int | None,
    layout: CacheLayout,
    method: str = "tsne",
    runtime: str = DEFAULT_RUNTIME,
    perplexity: float = 30.0,
    iterations: int = 500,
    seed: int = SEED,
    progress: ProgressFn | None = None,
    batch_size: int = 256,
) -> FullMap:
    """The map of every image (features extracted first if missing), computed once and then read back."""
    params = _params(method, perplexity, iterations, seed)
    whole, path = _map_target(source, backbone, image_size, layout, method, runtime, params)
    found = load_map(path, whole.sizes)
    if found is not None:
        return found
    features, _labels = whole.features(layout, runtime, batch_size, progress)
    t0 = time.perf_counter()
    coords = project_all(features, method, perplexity, iterations, seed, progress)
    m = FullMap(method, coords, time.perf_counter() - t0, params, path.stem)
    save_map(path, m, whole.feature_keys)
    return m
