"""Decode any image Pillow opens into 8-bit RGB, scaling high-bit-depth modes instead of clipping them.

Used both for dataset folders and for uploads, so a 16-bit PNG, a CMYK JPEG or a palette image
with transparency looks the same whichever way it arrives.

    rgb = to_rgb(Image.open(path))          # uint8 [H, W, 3]
    arr = decode_image_bytes(data, side=32)  # or None if unreadable
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

# Modes whose samples are wider than 8 bits: Pillow's convert("RGB") clips them to 255.
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _wide_to_gray8(img: Any) -> np.ndarray:
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
        arr = arr * 255.0  # float images in [0, 1]
    elif arr.size and np.nanmax(arr) > 255.0:
        arr = arr / 257.0  # 16-bit range 0..65535 onto 0..255
    return np.clip(np.nan_to_num(np.round(arr)), 0, 255).astype(np.uint8)


def upright(img: Any) -> Any:
    """The image turned as its EXIF orientation says (a phone photo stored on its side shows upright); in place where it
    can be (no copy of an image without an orientation: a 9000x9000 PNG is 243 MB)."""
    from PIL import ImageOps

    try:
        if img.getexif().get(0x0112, 1) in (0, 1):
            return img
        return ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, ZeroDivisionError):
        return img  # damaged EXIF: the pixels as stored


def to_rgb(img: Any) -> np.ndarray:
    """An opened Pillow image as uint8 ``[H, W, 3]``, upright (EXIF orientation applied); transparent pixels land on
    white."""
    from PIL import Image

    img = upright(img)
    if img.mode in _WIDE_MODES:
        gray = _wide_to_gray8(img)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def resize_square(rgb: np.ndarray, side: int) -> np.ndarray:
    """Bilinear resize of an RGB array to ``side`` x ``side`` (the dataset's storage size)."""
    from PIL import Image

    if rgb.shape[:2] == (side, side):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.BILINEAR), dtype=np.uint8)


_REDUCIBLE = ("RGB", "RGBA", "L", "LA", "CMYK", "I", "F")  # modes Image.reduce handles


def decode_image_bytes(data: bytes, side: int | None) -> np.ndarray | None:
    """Decode bytes to uint8 RGB (resized to ``side`` if given), or None if they are not a readable image.

    With ``side``, a large image is shrunk while it is decoded (a JPEG's DCT scaling) or just after (an integer box
    reduction), to no less than twice ``side``, before any copy is made: a 9000x9000 PNG then costs its decoded
    pixels once, not four times."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            if side is not None and opened.format == "JPEG":
                opened.draft(None, (2 * side, 2 * side))
            opened.load()
            img: Any = opened
            if side is not None and img.mode in _REDUCIBLE and (factor := min(img.size) // (2 * side)) >= 2:
                img = img.reduce(factor)
            rgb = to_rgb(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return resize_square(rgb, side) if side is not None else rgb


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the header, or None if unreadable."""
    return image_file_size(io.BytesIO(data))


def image_file_size(fp: Any) -> tuple[int, int] | None:
    """Width and height from the header of a file (a path or a binary file object; the pixels are not read), or None."""
    from PIL import Image

    try:
        with Image.open(fp) as img:
            return img.size
    except Exception:  # noqa: BLE001 - any failure means "unreadable", counted later
        return None
