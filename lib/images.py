"""Image helpers for display and uploads: decoding user bytes safely, upscaling, data URIs.

    img = decode_upload(data)                 # uint8 [H, W, 3] or ImageDecodeError
    big = upscale(img, 96)                    # nearest-neighbour, crisp pixels
    uri = thumbnail_uri(img)                  # "data:image/png;base64,..." for chart tooltips
"""

from __future__ import annotations

import base64
import io

import numpy as np

from lib.errors import ImageDecodeError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # 10 MB: larger uploads are refused before decoding
MAX_UPLOAD_PIXELS = 40_000_000  # guards against decompression bombs


def decode_upload(data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> np.ndarray:
    """Decode uploaded bytes into an RGB uint8 array, or raise :class:`ImageDecodeError` with a clear message."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageDecodeError("The uploaded file is empty.")
    if len(data) > max_bytes:
        raise ImageDecodeError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB. Upload a smaller JPEG or PNG.")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in ("JPEG", "PNG", "WEBP", "BMP", "GIF"):
                raise ImageDecodeError(f"That is a {img.format} file; upload a JPEG or PNG image.")
            if img.width * img.height > MAX_UPLOAD_PIXELS:
                raise ImageDecodeError(f"The image is {img.width}x{img.height} pixels, too large to classify here.")
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
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


def square_resize(img: np.ndarray, side: int) -> np.ndarray:
    """Resize an uploaded image to the dataset's square storage size (what the head saw in training)."""
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((side, side), Image.Resampling.BILINEAR), dtype=np.uint8)
