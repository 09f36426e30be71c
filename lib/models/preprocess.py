"""The one image preprocessing function between stored uint8 images and a backbone.

Feature extraction (TensorFlow and LiteRT), export and fine-tuning all use :func:`preprocess`, or
its two halves (:func:`to_unit_range` then :func:`resize_view`, which LiteRT graphs embed), and the
feature cache key includes :data:`PREPROCESSING_ID`, a hash of this module's own source code:
editing the preprocessing can never leave old features looking current.

    x = preprocess(uint8_batch, image_size=128, flip=False)   # float32 [B, 128, 128, 3] in [0, 1]
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from typing import Any


def to_unit_range(images: Any) -> Any:
    """uint8 pixels -> float32 in [0, 1] (TensorFlow tensors or numpy arrays alike)."""
    if hasattr(images, "dtype") and type(images).__module__ == "numpy":
        return images.astype("float32") / 255.0
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 255.0


def resize_view(x: Any, image_size: int, flip: bool = False) -> Any:
    """Bilinear resize of float images to ``image_size``, mirrored left-right if ``flip``."""
    import tensorflow as tf

    x = tf.image.resize(x, (image_size, image_size), method="bilinear")
    return tf.image.flip_left_right(x) if flip else x


def preprocess(images: Any, image_size: int, flip: bool = False) -> Any:
    """uint8 ``[B, H, W, 3]`` -> float32 in [0, 1], bilinear resize to ``image_size``, optional mirror."""
    import tensorflow as tf

    return resize_view(to_unit_range(tf.convert_to_tensor(images)), image_size, flip)


PREPROCESSING_ID = "v2-" + hashlib.sha256(inspect.getsource(sys.modules[__name__]).encode()).hexdigest()[:12]
