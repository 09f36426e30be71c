"""Near-duplicates confirmed on the pixels: a copy survives shifts, crops, mirroring and colour changes; a different
photograph of a similar thing does not; candidates come from exact feature neighbours."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance

from lib.analysis import duplicates as dup


def _scene(seed: int, object_seed: int = 0) -> np.ndarray:
    """A 32x32 'photograph': a smooth random background (``seed``) and an elliptic object (``object_seed``)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((32, 32), Image.BICUBIC), np.float32)
    img += rng.normal(0, 12, img.shape)  # texture
    orng = np.random.default_rng(1000 + object_seed)
    cy, cx, ry, rx = orng.uniform(12, 20), orng.uniform(12, 20), orng.uniform(4, 7), orng.uniform(5, 9)
    yy, xx = np.mgrid[:32, :32]
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    img[inside] = orng.uniform(0, 255, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def _copy(img: np.ndarray, how: str) -> np.ndarray:
    im = Image.fromarray(img)
    if how == "shift":
        out = np.roll(img, (2, -3), axis=(0, 1))
        out[:2], out[:, -3:] = img[:2], img[:, -3:]
        return out
    if how == "crop":
        return np.asarray(im.crop((3, 2, 29, 28)).resize((32, 32), Image.BILINEAR))
    if how == "mirror":
        return img[:, ::-1].copy()
    if how == "colour":
        im = ImageEnhance.Color(ImageEnhance.Brightness(im).enhance(1.25)).enhance(0.4)
        return np.asarray(im)
    if how == "grey":
        return np.asarray(im.convert("L").convert("RGB"))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=60)
    return np.asarray(Image.open(buf).convert("RGB"))


def test_copies_pass_and_other_photographs_of_a_similar_thing_do_not() -> None:
    kinds = ["shift", "crop", "mirror", "colour", "grey", "jpeg"]
    originals = np.stack([_scene(s, object_seed=s % 3) for s in range(24)])
    copies = np.stack([_copy(img, kinds[i % len(kinds)]) for i, img in enumerate(originals)])
    # The same object on another background, and the same background with the object moved: other photographs.
    others = np.stack([_scene(100 + s, object_seed=s % 3) for s in range(24)])
    moved = np.stack([_scene(s, object_seed=(s % 3) + 7) for s in range(24)])
    same = dup.same_photo_scores(originals, copies)
    assert (same >= dup.SAME_PHOTO).all(), dict(zip(kinds * 4, same.round(3)))
    for different in (others, moved):
        scores = dup.same_photo_scores(originals, different)
        assert (scores < dup.SAME_PHOTO).all(), scores.round(3)
    assert dup.same_photo_scores(originals[:3], originals[:3]) == __import__("pytest").approx(1.0, abs=1e-3)


def test_top_neighbours_are_exact_and_candidates_are_deduplicated() -> None:
    rng = np.random.default_rng(0)
    base = dup.normalise(rng.normal(size=(300, 16)))
    queries = dup.normalise(rng.normal(size=(40, 16)))
    index, sims = dup.top_neighbours(queries, base, k=3, chunk=16)
    full = queries @ base.T
    assert np.array_equal(index[:, 0], full.argmax(1)) and np.allclose(sims, -np.sort(-full, axis=1)[:, :3], atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # most similar first
    a, b, s = dup.candidate_pairs(np.array([1, 0, 3, 2]), np.array([0.9, 0.9, 0.5, 0.95]), same_split=True, floor=0.8)
    assert sorted(zip(a.tolist(), b.tolist())) == [(0, 1), (2, 3)] and len(s) == 2  # (0,1) and (1,0) listed once
