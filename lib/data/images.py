"""Image helpers for display and uploads: decoding untrusted bytes safely, upscaling, data URIs.

img = decode_upload(data)                 # uint8 [H, W, 3] or ImageDecodeError with a clear message
(resize it to the dataset's storage size with lib.data.decode.resize_square, as training images were)
big = upscale(img, 96)                    # nearest-neighbour, crisp pixels
uri = thumbnail_uri(img)                  # "data:image/png;base64,..." for chart tooltips
"""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np

from lib.data.decode import to_rgb
from lib.errors import ImageDecodeError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # 10 MB: larger uploads are refused before decoding
MAX_UPLOAD_PIXELS = 40_000_000  # guards against decompression bombs
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")


def _too_large(width: int, height: int) -> ImageDecodeError:
    return ImageDecodeError(
        f"The image is {width:,}x{height:,} pixels, too large to classify here (the limit is "
        f"{MAX_UPLOAD_PIXELS / 1e6:.0f} megapixels)."
    )


def decode_upload(data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> np.ndarray:
    """Decode uploaded bytes into an RGB uint8 array, or raise :class:`ImageDecodeError` with a clear message."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageDecodeError("The uploaded file is empty.")
    if len(data) > max_bytes:
        raise ImageDecodeError(
            f"The file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB. Upload a smaller JPEG or "
            "PNG."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.format not in UPLOAD_FORMATS:
                    raise ImageDecodeError(f"That is a {img.format} file; upload a JPEG or PNG image.")
                if img.width * img.height > MAX_UPLOAD_PIXELS:
                    raise _too_large(img.width, img.height)
                img.load()  # an animated image decodes its first frame
                return to_rgb(img)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(
            f"The image is too large to classify here: it declares more than {MAX_UPLOAD_PIXELS / 1e6:.0f} "
            "megapixels. Upload a smaller JPEG or PNG."
        ) from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageDecodeError("That file is not an image this app can read; upload a JPEG or PNG.") from err


def upscale(img: np.ndarray, side: int) -> np.ndarray:
    """Nearest-neighbour upscale to about ``side`` pixels, so 32x32 pixels stay crisp."""
    factor = max(1, side // max(img.shape[:2]))
    return np.repeat(np.repeat(np.asarray(img), factor, axis=0), factor, axis=1)


def thumbnail_uri(img: np.ndarray, side: int = 64) -> str:
    """A small PNG as a data URI (Vega tooltips show a field named ``image`` as a picture)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(upscale(img, side)).save(buf, format="PNG", optimize=False, compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
