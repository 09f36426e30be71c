"""A run's predictions of every image of a dataset: its stored test predictions, its head on cached features of the
other splits, or what a hosting bundle brought for them (it brings no features).

    preds = run_predictions(run, ds, spec, layout, ["train", "test"])   # split -> class, -1 where unknown
    probs = head_probabilities(run, ds, spec, layout, "train")          # None unless every part is cached
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lib.config import FLIP, ORIGINAL
from lib.models.predict import combine_views, np_concat, np_mean, part_key
from lib.models.specs import resolve_backbone
from lib.pipeline.features import cached_feature_result
from lib.store.layout import RUN_FILES, CacheLayout


def head_probabilities(
    run: Any, ds: Any, spec: Any, layout: CacheLayout, split: str, limit: int | None = None, dtype: Any = np.float32
) -> np.ndarray | None:
    """The run's head on cached features of ``split`` (its sizes and views; ``limit`` images per class, None: all),
    or None if any are not cached. ``dtype`` rounds the features first (float16: what a bundle stores)."""
    m = run.manifest
    views = {False: ORIGINAL, True: FLIP}
    parts: dict[tuple[Any, bool], np.ndarray] = {}
    for j, (handle, _identity, sizes) in enumerate(m.backbones()):
        part_spec = spec if j == 0 else resolve_backbone(handle)
        for size in sizes:
            for flip in (False, True) if m.tta else (False,):
                found = cached_feature_result(ds, split, part_spec, size, views[flip], limit, layout, m.runtime)
                if found is None:
                    return None
                parts[(part_key(j, size), flip)] = np.asarray(found.features, dtype).astype(np.float32)
    return combine_views(
        lambda key, flip: parts[(key, flip)], run.head.predict_proba, m.part_keys(), m.tta, np_concat, np_mean
    )


def run_predictions(run: Any, ds: Any, spec: Any, layout: CacheLayout, splits: list[str]) -> dict[str, np.ndarray]:
    """The run's predicted class of every image of each split; -1 where it cannot be told without new work.

    The run's own test split uses its stored predictions. Another split (train) is predicted by the run's
    head from cached features of the run's sizes and views (never extracted here); a fine-tuned run has
    no separate head, so only its stored predictions are known. A hosting bundle brings them instead of features.
    """
    brought = read_split_predictions(layout, run.run_id, ds) or {}
    out: dict[str, np.ndarray] = {}
    for split in splits:
        pred = np.full(ds.size(split), -1, np.int64)
        if split == run.manifest.test_split:
            pred[np.asarray(run.indices, np.int64)] = run.y_pred
        elif split in brought:
            pred[:] = brought[split]
        elif not run.manifest.finetuned:
            probs = head_probabilities(run, ds, spec, layout, split)
            if probs is not None:
                pred[:] = probs.argmax(axis=1)
        out[split] = pred
    return out


def save_split_predictions(path: Any, preds: dict[str, np.ndarray]) -> None:
    """Write split -> class of every image as :func:`read_split_predictions` reads it (int16: ten thousand classes)."""
    arrays: dict[str, Any] = {s: p.astype(np.int16) for s, p in preds.items()}
    np.savez(path, **arrays)


def read_split_predictions(layout: CacheLayout, run_id: str, ds: Any) -> dict[str, np.ndarray] | None:
    """What a hosting bundle brought for this run (split -> class of every image), or None if absent or not this
    dataset's shape."""
    path = layout.run_file(run_id, RUN_FILES.split_predictions)
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            out = {s: np.asarray(z[s], np.int64) for s in z.files}
    except (OSError, ValueError, KeyError, EOFError):
        return None
    ok = all(
        s in ds.splits and v.shape == (ds.size(s),) and ((v >= 0) & (v < len(ds.classes))).all() for s, v in out.items()
    )
    return out if ok and out else None
