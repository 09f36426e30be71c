"""Thumbnail sprite sheets of every image of a dataset, for maps that show a thumbnail on hover.

    sheets = ensure_sprites(ds, root)            # root/<fingerprint>/<split>-<k>.jpg, made once
    sheets.url(split, index)                     # (sheet file name, column, row) of one image

A browser loads one sheet (256 thumbnails, about 100 KB) the first time it hovers a point in it, so
60,000 thumbnails are never sent in one message. Sheets are JPEG (quality 90), ``THUMBS_PER_ROW`` x
``THUMBS_PER_ROW`` thumbnails of ``side`` pixels, in split order. The folder is keyed by the dataset's
fingerprint (its content) and the sprite format version; every sheet is written atomically and a
``sprites.json`` written last marks the folder complete, so a half-made folder is never served as
complete: it is made again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lib.store.atomic import atomic_path, write_json_atomic
from lib.store.layout import check_name

SPRITE_VERSION = 1
THUMBS_PER_ROW = 16
PER_SHEET = THUMBS_PER_ROW * THUMBS_PER_ROW
MAX_SIDE = 64  # larger stored images are shrunk to this for hovering
MANIFEST = "sprites.json"


@dataclass(frozen=True)
class Sprites:
    """Where each image's thumbnail is: ``folder/<split>-<sheet>.jpg`` at (column, row)."""

    folder: Path
    side: int
    counts: dict[str, int]

    def sheet_name(self, split: str, sheet: int) -> str:
        return f"{split}-{sheet:04d}.jpg"

    def locate(self, split: str, index: int) -> tuple[str, int, int]:
        """(sheet file name, column, row) of image ``index`` of ``split``."""
        sheet, pos = divmod(int(index), PER_SHEET)
        return self.sheet_name(split, sheet), pos % THUMBS_PER_ROW, pos // THUMBS_PER_ROW

    def to_dict(self) -> dict[str, Any]:
        return {"version": SPRITE_VERSION, "side": self.side, "per_row": THUMBS_PER_ROW, "counts": self.counts}


def thumb_side(image_shape: tuple[int, ...]) -> int:
    """Thumbnails keep the stored side up to ``MAX_SIDE`` pixels."""
    return int(min(max(image_shape[0], image_shape[1]), MAX_SIDE))


def sprite_folder(root: Path | str, fingerprint: str) -> Path:
    """The dataset's sprite folder under ``root`` (a fingerprint is checked to be a plain name, never a path)."""

    return Path(root) / f"{check_name(fingerprint, 'dataset fingerprint')}-v{SPRITE_VERSION}"


def find_sprites(ds: Any, root: Path | str) -> Sprites | None:
    """The complete sprite folder of ``ds``, or None (never writes)."""
    folder = sprite_folder(root, ds.fingerprint)
    try:
        meta = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    counts = {s: ds.size(s) for s in ds.splits}
    if meta != Sprites(folder, thumb_side(ds.image_shape), counts).to_dict():
        return None
    return Sprites(folder, int(meta["side"]), counts)


def _sheet(images: np.ndarray, side: int) -> np.ndarray:
    """One sheet: up to PER_SHEET images tiled row-major, padded with black."""
    n = len(images)
    if images.shape[1] != side or images.shape[2] != side:
        from PIL import Image

        images = np.stack(
            [
                np.asarray(Image.fromarray(np.asarray(im)).resize((side, side), Image.Resampling.BILINEAR))
                for im in images
            ]
        )
    tiles = np.zeros((PER_SHEET, side, side, 3), np.uint8)
    tiles[:n] = images
    return (
        tiles.reshape(THUMBS_PER_ROW, THUMBS_PER_ROW, side, side, 3)
        .transpose(0, 2, 1, 3, 4)
        .reshape(THUMBS_PER_ROW * side, THUMBS_PER_ROW * side, 3)
    )


def new_sprites(root: Path | str, fingerprint: str, image_shape: tuple[int, ...], counts: dict[str, int]) -> Sprites:
    """Where a dataset's sprite folder goes (nothing written yet: :func:`write_sheet` each sheet, then
    :func:`finish`)."""
    return Sprites(sprite_folder(root, fingerprint), thumb_side(image_shape), dict(counts))


def write_sheet(sprites: Sprites, split: str, sheet: int, images: np.ndarray) -> None:
    """Write one sheet (up to ``PER_SHEET`` images of ``split`` from ``sheet * PER_SHEET`` on), atomically."""
    from PIL import Image

    with atomic_path(sprites.folder / sprites.sheet_name(split, sheet)) as tmp:
        Image.fromarray(_sheet(np.asarray(images), sprites.side)).save(tmp, format="JPEG", quality=90)


def finish(sprites: Sprites) -> Sprites:
    """Mark the folder complete (its manifest, written last)."""
    write_json_atomic(sprites.folder / MANIFEST, sprites.to_dict())
    return sprites


def ensure_sprites(ds: Any, root: Path | str, progress: Any = None) -> Sprites:
    """The sprite folder of ``ds``, made first if missing or incomplete (a few seconds for CIFAR-10)."""
    found = find_sprites(ds, root)
    if found is not None:
        return found
    sprites = new_sprites(root, ds.fingerprint, ds.image_shape, {s: ds.size(s) for s in ds.splits})
    total = sum(-(-n // PER_SHEET) for n in sprites.counts.values())
    done = 0
    for split in ds.splits:
        images = ds.images(split)
        for sheet in range(-(-len(images) // PER_SHEET)):
            write_sheet(sprites, split, sheet, images[sheet * PER_SHEET : (sheet + 1) * PER_SHEET])
            done += 1
            if progress:
                progress(done / total)
    return finish(sprites)
