"""The one image preprocessing function between stored uint8 images and a backbone.

Feature extraction, export and fine-tuning all call :func:`preprocess`, and the feature
cache key includes :data:`PREPROCESSING_ID`, a hash of this function's own source code: editing
the preprocessing can never leave old features looking current.

    x = preprocess(uint8_batch, image_size=128, flip=False)   # float32 [B, 128, 128, 3] in [0, 1]
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any


def preprocess(images: Any, image_size: int, flip: bool = False) -> Any:
    """uint8 ``[B, H, W, 3]`` -> float32 in [0, 1], bilinear resize to ``image_size``, optional mirror."""
    import tensorflow as tf

    x = tf.cast(images, tf.float32) / 255.0
    x = tf.image.resize(x, (image_size, image_size), method="bilinear")
    return tf.image.flip_left_right(x) if flip else x


PREPROCESSING_ID = "v1-" + hashlib.sha256(inspect.getsource(preprocess).encode()).hexdigest()[:12]
