"""Decoding every image mode to 8-bit RGB: 16-bit, 32-bit and float images are scaled, not clipped to white;
CMYK, palette-with-transparency and grey+alpha images come out as they look. Folders and uploads share it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib.data.decode import decode_image_bytes
from lib.data.images import decode_upload
from lib.data.sources import load_dataset
from lib.store.layout import CacheLayout

RAMP16 = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)  # 0..65472


def png(img: Image.Image, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def sixteen_bit_png() -> bytes:
    img = Image.fromarray(RAMP16)  # mode I;16, saved as a real 16-bit greyscale PNG
    data = png(img)
    assert Image.open(io.BytesIO(data)).mode in ("I;16", "I")
    return data


def test_16_bit_png_is_scaled_not_white() -> None:
    out = decode_image_bytes(sixteen_bit_png(), None)
    assert out is not None and out.shape == (32, 32, 3)
    expected = np.round(RAMP16 / 257.0)
    np.testing.assert_allclose(out[..., 0], expected, atol=1)
    assert out.mean() < 200 and out.min() == 0  # before the fix every pixel above 255 became 255


def test_32_bit_and_float_images_are_scaled() -> None:
    as_i = Image.fromarray(RAMP16.astype(np.int32), mode="I")
    out = decode_image_bytes(_tiff(as_i), None)
    assert out is not None and abs(int(out[-1, -1, 0]) - round(65472 / 257)) <= 1
    as_f = Image.fromarray((RAMP16 / 65535.0).astype(np.float32), mode="F")
    rgb = decode_image_bytes(_tiff(as_f), None)
    assert rgb is not None and abs(int(rgb[-1, -1, 1]) - round(65472 / 65535 * 255)) <= 1


def _tiff(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    return buf.getvalue()


def test_cmyk_palette_transparency_and_la() -> None:
    red = Image.new("RGB", (8, 8), (200, 30, 30))
    cmyk = red.convert("CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, format="JPEG", quality=95)
    out = decode_image_bytes(buf.getvalue(), None)
    assert out is not None and out[..., 0].mean() > 150 and out[..., 1].mean() < 90

    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    pal.putpixel((0, 0), 0)
    out = decode_image_bytes(png(pal, transparency=0), None)
    assert out is not None
    assert tuple(out[0, 0]) == (255, 255, 255)  # the transparent index lands on white
    assert tuple(out[4, 4]) == (10, 200, 10)

    la = Image.new("LA", (8, 8), (60, 255))
    la.putpixel((0, 0), (60, 0))
    out = decode_image_bytes(png(la), None)
    assert out is not None and tuple(out[0, 0]) == (255, 255, 255) and tuple(out[4, 4]) == (60, 60, 60)


def test_upload_decodes_16_bit_the_same_way() -> None:
    out = decode_upload(sixteen_bit_png())
    np.testing.assert_allclose(out[..., 2], np.round(RAMP16 / 257.0), atol=1)


def test_16_bit_images_in_a_source_folder(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for cls in ("a", "b"):
            folder = tmp_path / "src" / split / cls
            folder.mkdir(parents=True)
            (folder / "0.png").write_bytes(sixteen_bit_png())
    ds = load_dataset(str(tmp_path / "src"), CacheLayout(tmp_path / "cache"))
    assert ds.skipped == {"train": 0, "test": 0}
    np.testing.assert_allclose(ds.images("train")[0, ..., 0], np.round(RAMP16 / 257.0), atol=1)


def test_bomb_sized_upload_says_too_large() -> None:
    # A tiny PNG whose header declares 20000 x 20000 pixels: Pillow refuses it as a decompression bomb.
    big = Image.new("1", (20000, 20000))
    data = png(big, optimize=True)
    with pytest.raises(Exception, match="too large"):
        decode_upload(data)
