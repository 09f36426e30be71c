"""The one path from a run's inputs to its class probabilities: features of every part (a backbone at an input
size) are concatenated, and with test-time augmentation the original and mirrored views are averaged.

A part's key is its size for the run's first backbone (as single-backbone runs always had it) and ``(j, size)``
for its j-th further backbone (:func:`part_key`), so one run can concatenate several backbones.

Training evaluation (cached features), the upload classifier (a loaded backbone) and the export
(a TensorFlow graph) all go through :func:`combine_views`, so they cannot drift apart.

    probs = predict_images([backbone], head, images_uint8, keys=[128], tta=True)     # numpy
    probs = combine_views(lambda size, flip: feats[size, flip], head.predict_proba, [128], True, concat, mean)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from lib.models.heads import head_logits
from lib.models.preprocess import preprocess

if TYPE_CHECKING:
    from lib.models.heads import TrainedHead
    from lib.runtimes.backbones import LoadedBackbone

T = TypeVar("T")
PartKey = Hashable  # an int size (first backbone) or (j, size) (j-th further backbone)


def part_key(backbone: int, size: int) -> PartKey:
    """The key of ``size`` on the run's ``backbone``-th backbone (0: its first)."""
    return int(size) if backbone == 0 else (int(backbone), int(size))


def split_key(key: PartKey) -> tuple[int, int]:
    """``(backbone, size)`` of a part key."""
    return (0, int(key)) if isinstance(key, int) else (int(key[0]), int(key[1]))  # type: ignore[index]


def tta_flips(tta: bool) -> tuple[bool, ...]:
    """The views a run averages at test time: the original, and the mirror image with TTA."""
    return (False, True) if tta else (False,)


def combine_views(
    features: Callable[[Any, bool], T],
    head_proba: Callable[[T], T],
    sizes: Sequence[PartKey],
    tta: bool,
    concat: Callable[[list[T]], T],
    mean: Callable[[list[T]], T],
) -> T:
    """Probabilities from ``features(key, flip)``: parts (sizes, backbones) concatenated per view, views averaged."""
    return mean([head_proba(concat([features(size, flip) for size in sizes])) for flip in tta_flips(tta)])


def np_concat(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate feature blocks along the feature axis (numpy)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def np_mean(parts: list[np.ndarray]) -> np.ndarray:
    """Average probability matrices (numpy)."""
    return np.mean(parts, axis=0).astype(np.float32)


def predict_images(
    backbones: Sequence[LoadedBackbone], head: TrainedHead, images: np.ndarray, keys: Sequence[PartKey], tta: bool
) -> np.ndarray:
    """Class probabilities ``[N, C]`` of uint8 images ``[N, H, W, 3]`` through a run's backbones (first one first) and
    head."""

    def embed(key: PartKey, flip: bool) -> np.ndarray:
        j, size = split_key(key)
        return backbones[j].embed(images, size, flip)

    return combine_views(embed, head.predict_proba, keys, tta, np_concat, np_mean)


def tf_probabilities(
    forwards: Sequence[Callable[[Any], Any]], head: TrainedHead, keys: Sequence[PartKey], tta: bool
) -> tuple[Callable[[Any], Any], list[Any]]:
    """A TensorFlow function uint8 images -> probabilities for export, and the variables it holds."""
    import tensorflow as tf

    mean, scale = tf.constant(head.mean), tf.constant(head.scale)
    weights = [tf.Variable(w, trainable=False) for w in head.weights]
    temperature = tf.constant(head.temperature, tf.float32)  # the calibrated probabilities, as the app shows them

    def proba(feats: Any) -> Any:
        return tf.nn.softmax(head_logits(feats, mean, scale, weights, tf.matmul, tf.nn.relu) / temperature)

    def fn(images: Any) -> Any:
        def features(key: PartKey, flip: bool) -> Any:
            j, size = split_key(key)
            return forwards[j](preprocess(images, size, flip))

        return combine_views(
            features, proba, keys, tta, lambda parts: tf.concat(parts, axis=1), lambda ps: tf.add_n(ps) / float(len(ps))
        )

    return fn, weights
