"""The one path from a run's inputs to its class probabilities: features of every input size are
concatenated, and with test-time augmentation the original and mirrored views are averaged.

Training evaluation (cached features), the upload classifier (a loaded backbone) and the export
(a TensorFlow graph) all go through :func:`combine_views`, so they cannot drift apart.

    probs = predict_images(backbone, head, images_uint8, sizes=[128], tta=True)       # numpy
    probs = combine_views(lambda size, flip: feats[size, flip], head.predict_proba, [128], True, concat, mean)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from lib.models.backbones import LoadedBackbone
    from lib.models.heads import TrainedHead

T = TypeVar("T")


def tta_flips(tta: bool) -> tuple[bool, ...]:
    """The views a run averages at test time: the original, and the mirror image with TTA."""
    return (False, True) if tta else (False,)


def combine_views(
    features: Callable[[int, bool], T],
    head_proba: Callable[[T], T],
    sizes: Sequence[int],
    tta: bool,
    concat: Callable[[list[T]], T],
    mean: Callable[[list[T]], T],
) -> T:
    """Probabilities from ``features(size, flip)``: sizes concatenated per view, views averaged."""
    return mean([head_proba(concat([features(size, flip) for size in sizes])) for flip in tta_flips(tta)])


def np_concat(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate feature blocks along the feature axis (numpy)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def np_mean(parts: list[np.ndarray]) -> np.ndarray:
    """Average probability matrices (numpy)."""
    return np.mean(parts, axis=0).astype(np.float32)


def predict_images(backbone: LoadedBackbone, head: TrainedHead, images: np.ndarray, sizes: Sequence[int], tta: bool) -> np.ndarray:
    """Class probabilities ``[N, C]`` of uint8 images ``[N, H, W, 3]`` through a backbone and a head."""
    return combine_views(lambda size, flip: backbone.embed(images, size, flip), head.predict_proba, sizes, tta, np_concat, np_mean)


def tf_probabilities(forward: Callable[[Any], Any], head: TrainedHead, sizes: Sequence[int], tta: bool) -> tuple[Callable[[Any], Any], list[Any]]:
    """A TensorFlow function uint8 images -> probabilities for export, and the variables it holds."""
    import tensorflow as tf

    from lib.models.heads import head_logits
    from lib.models.preprocess import preprocess

    mean, scale = tf.constant(head.mean), tf.constant(head.scale)
    weights = [tf.Variable(w, trainable=False) for w in head.weights]
    temperature = tf.constant(head.temperature, tf.float32)  # the calibrated probabilities, as the app shows them

    def proba(feats: Any) -> Any:
        return tf.nn.softmax(head_logits(feats, mean, scale, weights, tf.matmul, tf.nn.relu) / temperature)

    def fn(images: Any) -> Any:
        return combine_views(lambda size, flip: forward(preprocess(images, size, flip)), proba, sizes, tta,
                             lambda parts: tf.concat(parts, axis=1), lambda ps: tf.add_n(ps) / float(len(ps)))  # fmt: skip

    return fn, weights
