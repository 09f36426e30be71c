"""Upload decoding: images are read, anything else gets a clear message."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lib.data.decode import resize_square
from lib.data.images import decode_upload, thumbnail_uri, upscale
from lib.errors import ImageDecodeError


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("mode, fmt", [("RGB", "JPEG"), ("RGBA", "PNG"), ("L", "PNG"), ("P", "PNG")])
def test_images_of_any_mode_decode_to_rgb(mode: str, fmt: str) -> None:
    img = Image.new(mode, (40, 30))
    out = decode_upload(encode(img, fmt))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"just some text", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "not an image"),  # a truncated PNG
    ],
)
def test_non_images_are_refused_clearly(data: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_upload(data)


def test_oversized_upload_is_refused_before_decoding() -> None:
    with pytest.raises(ImageDecodeError, match="limit"):
        decode_upload(b"x" * 2048, max_bytes=1024)


def test_display_helpers() -> None:
    img = np.zeros((32, 32, 3), np.uint8)
    assert upscale(img, 96).shape == (96, 96, 3)
    assert thumbnail_uri(img).startswith("data:image/png;base64,")
    assert resize_square(np.zeros((50, 80, 3), np.uint8), 32).shape == (32, 32, 3)
