"""A 2-D map of every image (train and test) from one backbone's features: PCA, or t-SNE through openTSNE.

    m = compute_full_map(source, backbone, 128, cache_dir, "tsne", progress=print)   # once; then read back
    m.coords["train"], m.coords["test"]                                              # float32 [n, 2] each

Both projections are fitted on the training features only and place the test images with the fitted
model, so the map is the same whichever split one looks at. t-SNE follows openTSNE's recipe for large
sets: PCA to 50 dimensions first (fitted on train), PCA initialisation, FFT-accelerated gradients, a fixed
seed, every core; test points are added with ``TSNEEmbedding.transform``. A map is computed only when
asked (a button, or ``python -m lib project``), never on page load, and kept as an artifact
(``projections/full-<method>-<key>.npz``) keyed by the features' keys and every parameter, with a CRC
over its arrays: a damaged or stale one is recomputed, never shown.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lib.config import SEED
from lib.errors import ConfigError

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
    text = json.dumps({"features": feature_keys, "method": method, "params": params, "v": MAP_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def project_all(features: dict[str, np.ndarray], method: str = "pca", perplexity: float = 30.0, iterations: int = 500, seed: int = SEED,
                progress: ProgressFn | None = None) -> dict[str, np.ndarray]:  # fmt: skip
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
        return {"train": pca.transform(train).astype(np.float32), **{s: pca.transform(x).astype(np.float32) for s, x in others.items()}}
    from openTSNE import TSNE

    if len(train) <= 3 * perplexity:
        raise ConfigError(f"t-SNE with perplexity {perplexity:g} needs more than {3 * perplexity:g} training images; this split has {len(train)}.")
    report(f"PCA to {PCA_DIMS} dimensions", 0.02)
    pca = PCA(n_components=min(PCA_DIMS, train.shape[1], len(train)), random_state=seed).fit(train)

    def on_iteration(iteration: int, _error: float, _embedding: Any) -> None:
        report(f"t-SNE iteration {iteration}", 0.05 + 0.8 * min(iteration / (iterations + 250), 1.0))

    tsne = TSNE(perplexity=perplexity, n_iter=iterations, initialization="pca", negative_gradient_method="fft", n_jobs=os.cpu_count() or 1,
                random_state=seed, callbacks=on_iteration, callbacks_every_iters=50)  # fmt: skip
    embedding = tsne.fit(pca.transform(train))
    out = {"train": np.asarray(embedding, np.float32)}
    for s, x in others.items():
        report(f"placing {s} images on the map", 0.9)
        out[s] = np.asarray(embedding.transform(pca.transform(x)), np.float32)
    return out


def _checksum(arrays: dict[str, np.ndarray]) -> int:
    crc = 0
    for name in sorted(arrays):
        crc = zlib.crc32(name.encode() + np.ascontiguousarray(arrays[name]).tobytes(), crc)
    return crc


def save_map(path: Path, m: FullMap) -> None:
    """Write the map atomically with a checksum over its arrays."""
    from lib.store.atomic import atomic_path

    meta = {"method": m.method, "seconds": m.seconds, "params": m.params, "crc32": _checksum(m.coords), "version": MAP_VERSION}
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8), **m.coords})  # type: ignore[arg-type]


def load_map(path: Path, expected: dict[str, int]) -> FullMap | None:
    """The stored map, or None if missing, damaged, stale, of other sizes, or not finite."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["meta"]).decode())
            coords = {k: npz[k] for k in npz.files if k != "meta"}
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError, zipfile.BadZipFile):
        return None
    if meta.get("version") != MAP_VERSION or meta.get("crc32") != _checksum(coords):
        return None
    if {s: len(c) for s, c in coords.items()} != expected or not all(c.ndim == 2 and c.shape[1] == 2 and np.isfinite(c).all() for c in coords.values()):
        return None
    return FullMap(str(meta["method"]), coords, float(meta.get("seconds", 0.0)), dict(meta.get("params", {})), path.stem)


def _target(source: str, backbone: str, image_size: int | None, cache_dir: Path, runtime: str, method: str,
            params: dict[str, Any]) -> tuple[Any, Any, int, list[str], Path]:  # fmt: skip
    from lib.data.sources import load_dataset
    from lib.models.specs import resolve_backbone
    from lib.pipeline.features import feature_key_for
    from lib.store.layout import CacheLayout

    if method not in METHODS:
        raise ConfigError(f"Unknown projection {method!r}; choose one of {', '.join(METHODS)}.")
    ds = load_dataset(source, cache_dir)
    spec = resolve_backbone(backbone)
    size = int(image_size or spec.default_size())
    splits: list[str] = sorted(ds.splits, key=lambda s: (s != "train", s))
    if "train" not in splits:
        raise ConfigError(f"A map is fitted on the 'train' split; {source!r} has {', '.join(ds.splits)}.")
    keys = {s: feature_key_for(ds, s, spec, size, "original", None, runtime) for s in splits}
    return ds, spec, size, splits, CacheLayout(cache_dir).full_map_file(method, map_key(keys, method, params))


def _params(method: str, perplexity: float, iterations: int, seed: int) -> dict[str, Any]:
    return {"seed": seed} if method == "pca" else {"perplexity": perplexity, "iterations": iterations, "seed": seed, "pca_dims": PCA_DIMS}


def cached_full_map(source: str, backbone: str, image_size: int | None, cache_dir: Path | str, method: str = "tsne", runtime: str = "tf",
                    perplexity: float = 30.0, iterations: int = 500, seed: int = SEED) -> FullMap | None:  # fmt: skip
    """The stored map if there is a valid one; never computes (what a page calls on load)."""
    params = _params(method, perplexity, iterations, seed)
    ds, _spec, _size, splits, path = _target(source, backbone, image_size, Path(cache_dir), runtime, method, params)
    return load_map(path, {s: ds.size(s) for s in splits})


def compute_full_map(source: str, backbone: str, image_size: int | None, cache_dir: Path | str, method: str = "tsne", runtime: str = "tf",
                     perplexity: float = 30.0, iterations: int = 500, seed: int = SEED, progress: ProgressFn | None = None,
                     batch_size: int = 256) -> FullMap:  # fmt: skip
    """The map of every image (features extracted first if missing), computed once and then read back."""
    from lib.pipeline.training import gather_features

    cache_dir = Path(cache_dir)
    params = _params(method, perplexity, iterations, seed)
    ds, spec, size, splits, path = _target(source, backbone, image_size, cache_dir, runtime, method, params)
    found = load_map(path, {s: ds.size(s) for s in splits})
    if found is not None:
        return found
    backbones: dict[int, Any] = {}
    features = {}
    for s in splits:
        block = gather_features(ds, spec, s, (size,), ("original",), cache_dir, None, batch_size, None, backbones, runtime)
        features[s] = block.parts[(size, "original")]
    t0 = time.perf_counter()
    coords = project_all(features, method, perplexity, iterations, seed, progress)
    m = FullMap(method, coords, time.perf_counter() - t0, params, path.stem)
    save_map(path, m)
    return m
