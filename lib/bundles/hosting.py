"""The hosting form of a bundle (``python -m lib bundle --hosting``): what a free host downloads at every cold start,
made small. :mod:`lib.bundles.make` packs these parts in place of the big ones, :mod:`lib.bundles.install`
unpacks them.

- Images travel as the source's own files when those decode to exactly the stored pixels (the shared CIFAR-10 copy's
  JPEGs: 19 MB), else as the map's JPEG sprite sheets (:mod:`lib.data.thumbs`: 256 thumbnails per sheet, quality 90;
  only for images no larger than a thumbnail, so they are shown at the same size). Install decodes them into the
  dataset's arrays and writes the app's hover thumbnails (sprite sheets) in the same pass.
- Features travel reduced (:mod:`lib.pipeline.reduced`): neighbour search, re-ranked exactly.
- Each run brings its predicted class of every image of its other splits (``split_predictions.npz``), which the map
  otherwise computes from the real features.
- No SavedModel: each backbone is a stand-in (its name, identity and sizes) and its float LiteRT conversion.

    for path, name in image_members(layout, fingerprint, scratch): ...
    notices = unpack_images(staged_layout, sprites_root)            # on install
    lib.pipeline.predictions.read_split_predictions(layout, run_id, ds)   # what install brings: split -> classes
"""

from __future__ import annotations

import gzip
import json
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lib.data.decode import decode_image_bytes
from lib.data.folders import open_image_source
from lib.data.meta import DatasetMeta
from lib.data.sources import CACHE_PREFIX, load_dataset
from lib.data.thumbs import (
    MANIFEST,
    PER_SHEET,
    THUMBS_PER_ROW,
    ensure_sprites,
    finish,
    new_sprites,
    thumb_side,
    write_sheet,
)
from lib.errors import BundleError, DataSourceError, ReadOnlyError, UserFacingError
from lib.models.specs import resolve_backbone
from lib.pipeline.predictions import run_predictions, save_split_predictions
from lib.pipeline.reduced import basis_path, fit_basis, project, write_reduced
from lib.runs.registry import load_run
from lib.store.atomic import atomic_path
from lib.store.layout import DATASET_FILES, RUN_FILES, CacheLayout, check_name

SPRITES_FOLDER = "sprites"  # inside a dataset's folder in the bundle (moved out on install)
IMAGES_RECORD = "hosting_images.json"  # inside a dataset's folder in the bundle: which form its images travel in
# the source's files travel if, gzipped, they are at most this share of the decoded arrays (CIFAR-10 JPEGs: 0.1)
MAX_ORIGINALS_SHARE = 0.5


def image_members(layout: CacheLayout, fingerprint: str, scratch: Path) -> Iterator[tuple[Path, str]]:
    """The dataset's files for a hosting bundle: its metadata and labels, its images as the source's own files (if they
    decode to exactly the stored pixels) or as sprite sheets, and a record of which (with each split's SHA-256)."""

    ds = load_dataset(CACHE_PREFIX + fingerprint, layout)
    folder = layout.dataset_dir(fingerprint)
    base = folder.relative_to(layout.root).as_posix()
    arrays = {p.name for p in DATASET_FILES.image_arrays(folder)}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name not in arrays:
            yield p, p.relative_to(layout.root).as_posix()
    record: dict[str, Any] = {
        "fingerprint": fingerprint,
        "side": int(ds.image_shape[0]),
        "counts": {s: ds.size(s) for s in ds.splits},
        "sha256": {s: _array_digest(ds.images(s)) for s in ds.splits},
    }
    originals = _originals(layout, ds, scratch)
    if originals is not None:
        record["form"] = "originals"
        for split, (blob, offsets) in originals.items():
            yield blob, f"{base}/{split}{ORIGINALS_BLOB}"
            yield offsets, f"{base}/{split}{ORIGINALS_OFFSETS}"
    else:
        if thumb_side(ds.image_shape) != ds.image_shape[0] or ds.image_shape[0] != ds.image_shape[1]:
            raise BundleError(
                f"The images of {fingerprint} are {ds.image_shape[0]}x{ds.image_shape[1]} px and their source files "
                "are not at hand (or do not decode to the stored pixels): larger than a thumbnail, they cannot "
                "travel as sprite sheets. Make a normal bundle (without --hosting)."
            )
        record["form"] = "sprites"
        sprites = ensure_sprites(ds, scratch / "sprites")
        for p in sorted(sprites.folder.iterdir()):
            yield p, f"{base}/{SPRITES_FOLDER}/{p.name}"
    out = scratch / "records" / fingerprint / IMAGES_RECORD
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    yield out, f"{base}/{IMAGES_RECORD}"


ORIGINALS_BLOB, ORIGINALS_OFFSETS = "_originals.bin", "_originals_offsets.npy"


def _array_digest(images: np.ndarray, chunk: int = 4096) -> str:
    import hashlib

    h = hashlib.sha256()
    for i in range(0, len(images), chunk):
        h.update(np.ascontiguousarray(images[i : i + chunk]).tobytes())
    return h.hexdigest()


def _originals(layout: CacheLayout, ds: Any, scratch: Path) -> dict[str, tuple[Path, Path]] | None:
    """Each split's source files (concatenated, with offsets), if the source is still where the dataset came from and
    every file decodes (as the conversion decoded it) to exactly the stored image; else None."""

    meta = DatasetMeta.read(layout.dataset_dir(ds.fingerprint))
    if meta is None or meta.kind != "image-folder" or any(meta.skipped.values()) or not Path(meta.source).exists():
        return None
    try:
        src = open_image_source(Path(meta.source))
        listing = src.listing()
        data = dict(src.stream()) if hasattr(src, "stream") else None
    except DataSourceError:
        return None
    if data is None:
        return (
            None  # a folder or zip source (random access) would be read per file; the bundles made here are tar sources
        )
    out = {}
    for split in ds.splits:
        start, end = listing.split_range(split) if split in listing.splits else (0, 0)
        images = ds.images(split)
        if end - start != len(images):
            return None
        refs = listing.refs[start:end]
        for i, ref in enumerate(refs):
            got = decode_image_bytes(data.get(ref, b""), ds.image_shape[0])
            if got is None or got.shape != images[i].shape or not np.array_equal(got, images[i]):
                return None
        blob, offsets = scratch / "originals" / f"{split}.bin", scratch / "originals" / f"{split}_offsets.npy"
        blob.parent.mkdir(parents=True, exist_ok=True)
        sizes = [len(data[r]) for r in refs]
        with gzip.open(blob, "wb", compresslevel=9) as fh:  # the files repeat their JPEG tables: gzip takes 55 MB to 19
            for r in refs:
                fh.write(data[r])
        np.save(offsets, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
        out[split] = (blob, offsets)
    if sum(blob.stat().st_size for blob, _ in out.values()) > MAX_ORIGINALS_SHARE * sum(
        ds.images(s).nbytes for s in ds.splits
    ):
        return None
    return out


def reduced_members(layout: CacheLayout, fms: list[Any], scratch: Path) -> Iterator[tuple[Path, str]]:
    """The reduced stand-ins (features, basis, manifest) of one backbone part's feature files (every split, one basis),
    written under ``scratch``."""

    full = [np.load(layout.feature_files(fm.key)[0], mmap_mode="r") for fm in fms]
    basis = fit_basis(full)
    tree = CacheLayout(scratch / "reduced")
    for fm, feats in zip(fms, full, strict=True):
        write_reduced(
            tree, fm.key, json.loads(layout.feature_files(fm.key)[1].read_text()), project(feats, basis), basis
        )
        small, small_manifest = tree.feature_files(fm.key)
        for p in (small, basis_path(tree, fm.key), small_manifest):  # the manifest last, as everywhere
            yield p, p.relative_to(tree.root).as_posix()


def split_predictions_member(layout: CacheLayout, run_id: str, scratch: Path) -> tuple[Path, str] | None:
    """The run's predicted class of every image of its dataset's other splits, from the real features (None if it
    cannot be told: a fine-tuned run, or features not cached)."""

    run = load_run(layout, run_id)
    m = run.manifest
    ds = load_dataset(CACHE_PREFIX + m.dataset_fingerprint, layout)
    others = [s for s in ds.splits if s != m.test_split]
    preds = run_predictions(run, ds, resolve_backbone(m.backbone), layout, others)
    if not others or any((p < 0).any() for p in preds.values()):
        return None
    out = CacheLayout(scratch / "predictions").run_file(run_id, RUN_FILES.split_predictions)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_split_predictions(out, preds)
    return out, layout.run_file(run_id, RUN_FILES.split_predictions).relative_to(layout.root).as_posix()


def unpack_images(staged: CacheLayout, sprites_root: Path | None) -> list[str]:
    """Decode each staged dataset's images (the source's files or sprite sheets) into its image arrays, writing the
    app's
    hover thumbnails under ``sprites_root`` in the same pass if it can be written. Returns notices (no hover
    thumbnails; pixels that differ from the stored ones)."""
    import hashlib

    notices: list[str] = []
    for record_path in sorted(staged.datasets.glob(f"*/{IMAGES_RECORD}")):
        folder = record_path.parent
        record = _read_record(record_path)
        side, form = record["side"], record["form"]
        sprites = (
            None
            if sprites_root is None
            else new_sprites(sprites_root, record["fingerprint"], (side, side, 3), record["counts"])
        )
        if sprites is not None and (sprites.folder / MANIFEST).exists():
            sprites = None  # made already (the app restarted)
        for split, count in record["counts"].items():
            blocks = (
                _original_blocks(folder, split, count, side)
                if form == "originals"
                else _sheet_blocks(folder, split, count, side)
            )
            digest = hashlib.sha256()
            header = {"descr": "|u1", "fortran_order": False, "shape": (count, side, side, 3)}
            with (
                atomic_path(folder / DATASET_FILES.images(split)) as tmp,
                open(tmp, "wb") as fh,
            ):  # plain writes, a block at a time
                np.lib.format.write_array_header_1_0(fh, header)
                for sheet, block in enumerate(blocks):
                    raw = np.ascontiguousarray(block).tobytes()
                    fh.write(raw)
                    digest.update(raw)
                    try:
                        if sprites is not None:
                            write_sheet(sprites, split, sheet, block)
                    except UserFacingError as err:
                        notices.append(_no_thumbnails(sprites_root, err))
                        sprites = None
            if digest.hexdigest() != record["sha256"].get(split):
                why = "another JPEG decoder" if form == "originals" else "sprite sheets are JPEG"
                notices.append(
                    f"The {split} images decoded here differ from the ones the bundle was made from ({why}): shown "
                    "and searched as decoded."
                )
        if sprites is not None:
            try:
                finish(sprites)
            except UserFacingError as err:
                notices.append(_no_thumbnails(sprites_root, err))
        for leftover in [
            folder / SPRITES_FOLDER,
            *folder.glob(f"*{ORIGINALS_BLOB}"),
            *folder.glob(f"*{ORIGINALS_OFFSETS}"),
            record_path,
        ]:
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink(missing_ok=True)
    return notices


def _no_thumbnails(root: Path | None, err: UserFacingError) -> str:
    """The notice when the app's thumbnail folder cannot be written (the install goes on without hover thumbnails)."""
    cause = err.__cause__
    why = (
        cause.strerror
        if isinstance(cause, OSError) and cause.strerror
        else "read-only"
        if isinstance(err, ReadOnlyError)
        else "not writable"
    )
    return (
        f"Hover thumbnails are off: {root} cannot be written ({why}). Everything else is installed; give a "
        "writable --thumbs folder to have them."
    )


def _bad(what: str) -> UserFacingError:

    return BundleError(f"The bundle's images are damaged ({what}); nothing was installed.")


def _read_record(path: Path) -> dict[str, Any]:
    """The staged dataset's image record, checked field by field (a bundle is checksummed, not trusted)."""

    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise _bad(f"{IMAGES_RECORD} unreadable: {err}") from err
    ok = (
        isinstance(record, dict)
        and record.get("form") in ("originals", "sprites")
        and type(record.get("side")) is int
        and 1 <= record["side"] <= 4096
        and isinstance(record.get("counts"), dict)
        and all(isinstance(k, str) and type(v) is int and 0 <= v <= 10**8 for k, v in record["counts"].items())
        and isinstance(record.get("sha256"), dict)
        and isinstance(record.get("fingerprint"), str)
    )
    if not ok:
        raise _bad(f"{IMAGES_RECORD} is not a valid record")
    for split in record["counts"]:
        check_name(split, "split name")
    check_name(record["fingerprint"], "dataset fingerprint")
    return record


def _original_blocks(folder: Path, split: str, count: int, side: int) -> Iterator[np.ndarray]:
    """The split's images decoded from the source's files, ``PER_SHEET`` at a time, as the conversion decoded them."""

    blob = folder / f"{split}{ORIGINALS_BLOB}"
    try:
        offsets = np.load(folder / f"{split}{ORIGINALS_OFFSETS}")
        size = blob.stat().st_size
    except (OSError, ValueError) as err:
        raise _bad(f"{split}: {err}") from err
    if (
        offsets.shape != (count + 1,)
        or offsets[0] != 0
        or (np.diff(offsets) < 0).any()
        or offsets[-1] > 64 * size + 2**20
    ):
        raise _bad(f"{split}: offsets do not fit the file")
    with gzip.open(blob, "rb") as fh:
        for start in range(0, count, PER_SHEET):
            stop = min(count, start + PER_SHEET)
            try:
                chunk = fh.read(int(offsets[stop] - offsets[start]))
            except (OSError, EOFError, zlib.error) as err:
                raise _bad(f"{split}: {err}") from err
            if len(chunk) != offsets[stop] - offsets[start]:
                raise _bad(f"{split}: the file ends early")
            block = np.zeros((stop - start, side, side, 3), np.uint8)
            for j, i in enumerate(range(start, stop)):
                img = decode_image_bytes(chunk[offsets[i] - offsets[start] : offsets[i + 1] - offsets[start]], side)
                if img is None or img.shape != (side, side, 3):
                    raise _bad(f"{split} image {i} does not decode")
                block[j] = img
            yield block


def _sheet_blocks(folder: Path, split: str, count: int, side: int) -> Iterator[np.ndarray]:
    """The split's images cut out of its sprite sheets, a sheet at a time."""
    from PIL import Image

    for sheet in range(-(-count // PER_SHEET)):
        try:
            with Image.open(folder / SPRITES_FOLDER / f"{split}-{sheet:04d}.jpg") as im:
                pixels = np.asarray(im.convert("RGB"))
        except OSError as err:
            raise _bad(f"sprite sheet {split}-{sheet:04d}: {err}") from err
        if pixels.shape != (THUMBS_PER_ROW * side, THUMBS_PER_ROW * side, 3):
            raise _bad(f"sprite sheet {split}-{sheet:04d} has the wrong size")
        tiles = (
            pixels.reshape(THUMBS_PER_ROW, side, THUMBS_PER_ROW, side, 3)
            .transpose(0, 2, 1, 3, 4)
            .reshape(PER_SHEET, side, side, 3)
        )
        yield tiles[: count - sheet * PER_SHEET]
