"""Constants shared by every module: class names, seeds, format versions, paths.

from lib.config import CIFAR10_CLASSES, SEED, default_cache_dir
"""

from __future__ import annotations

import os
from pathlib import Path

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_BYTES = 170_498_071  # its size: a file of another size is never asked for its MD5 (10 s for a 3 GB archive)
# The blog experiment this project reproduces, for reference lines in charts.
BLOG_ACCURACY = 0.8335

SEED = 0

# Bump a version when the bytes an artifact holds would change for the same key,
# so stale artifacts are never read as current.
DATASET_FORMAT_VERSION = (
    3  # 2: 16-bit images scaled, mixed sizes stored at the median over images; 3: EXIF orientation applied
)
FEATURE_FORMAT_VERSION = 1


# Image-folder datasets with mixed image sizes are stored at one square size,
# capped so that a folder of large photos does not become tens of GB of uint8.
MAX_STORAGE_SIDE = 224
# An image file larger than this is not read (it is counted as unreadable): a zip or tar member that inflates to a
# gigabyte, or a stray video, must not be held in memory by every decoding thread at once.
MAX_IMAGE_FILE_BYTES = 64 * 1024 * 1024
# Decoded pixels in flight across the conversion's threads: a folder of 9000x9000 PNGs decodes one or two at a time.
MAX_PIXELS_IN_FLIGHT = 64_000_000

ENV_CACHE_DIR = "TLX_CACHE_DIR"
ENV_SOURCE = "TLX_SOURCE"
ENV_BACKBONE = "TLX_BACKBONE"
ENV_IMAGE_SIZE = "TLX_IMAGE_SIZE"

DEFAULT_SOURCE = "cifar10"
DEFAULT_BACKBONE = "mobilenet_v1_100_128"
# Real backbones for offline work live beside the project (see ../shared/README.md); never committed.
SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"


def default_cache_dir() -> Path:
    """The artifact directory: $TLX_CACHE_DIR, else ./cache next to app.py."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "cache"


# The two views of an image a backbone sees: as it is, and mirrored left-right (training augmentation, test-time
# augmentation, the audit's heads). Part of every feature key; the one declaration of their names.
ORIGINAL = "original"
FLIP = "flip"
VIEWS = (ORIGINAL, FLIP)
