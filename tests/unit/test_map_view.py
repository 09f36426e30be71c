"""The full-dataset map's logic without a browser: colours, selections, clusters, neighbours, thumbnail sprites,
the binary files the browser fetches."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lib.analysis.map_view import colour_points, map_clusters, points_in_polygon, selection_mask
from lib.data import thumbs
from lib.pipeline.neighbours import nearest_across

CLASSES = ["cat", "dog", "ship"]
SPLITS = [("train", 4), ("test", 2)]
LABELS = np.array([0, 1, 2, 0, 1, 2])
PREDS = np.array([0, 2, 2, -1, 1, 0])


def test_colour_modes_codes_legend_and_mistakes_on_top() -> None:
    c = colour_points("true label", CLASSES, LABELS, PREDS, SPLITS)
    assert c.codes.tolist() == [0, 1, 2, 0, 1, 2] and [n for n, _i in c.legend] == CLASSES
    c = colour_points("predicted label", CLASSES, LABELS, PREDS, SPLITS)
    assert c.codes.tolist() == [0, 2, 2, 3, 1, 0] and c.legend[-1] == ("no prediction", 3) and c.palette[3] == "#d0d0d0"
    c = colour_points("correct vs wrong", CLASSES, LABELS, PREDS, SPLITS)
    assert c.codes.tolist() == [0, 1, 0, 2, 0, 1]
    assert c.priority[1] > c.priority[0] > c.priority[3]  # wrong drawn over correct over unknown
    c = colour_points("split", CLASSES, LABELS, PREDS, SPLITS)
    assert c.codes.tolist() == [0, 0, 0, 0, 1, 1] and [n for n, _i in c.legend] == ["train", "test"]
    scores = np.array([0.0, 0.99, 0.5, np.nan, 0.2, 1.0])
    c = colour_points("label-issue score", CLASSES, LABELS, PREDS, SPLITS, scores)
    assert c.codes.tolist() == [0, 7, 4, 8, 1, 7] and c.legend[-1] == ("not audited", 8)
    assert c.priority[1] > c.priority[2] > c.priority[0] > c.priority[3]  # worst on top
    with pytest.raises(ValueError):
        colour_points("size", CLASSES, LABELS, PREDS, SPLITS)


def test_many_classes_get_distinct_colours() -> None:
    c = colour_points("true label", [f"c{i}" for i in range(40)], np.arange(40), np.full(40, -1), [("train", 40)])
    assert len(set(c.palette)) == 40


def test_points_in_box_and_lasso() -> None:
    xy = np.array([[0.5, 0.5], [1.5, 0.5], [0.1, 0.95], [-1, 0], [0.3, 0.2]])
    assert points_in_polygon(xy, [(0, 0), (1, 0), (1, 1), (0, 1)]).tolist() == [True, False, True, False, True]
    triangle = [(0, 0), (1, 0), (0, 1)]  # a lasso is any polygon
    assert points_in_polygon(xy, triangle).tolist() == [False, False, False, False, True]
    for bad in ([(0, 0), (1, 1)], [(0, 0), (1, np.nan), (1, 1)], [[0, 0, 0]]):
        with pytest.raises(ValueError):
            points_in_polygon(xy, bad)


def test_selection_mask_round_trip_and_refusals() -> None:
    mask = np.zeros(13, bool)
    mask[[0, 7, 8, 12]] = True
    bits = base64.b64encode(np.packbits(mask, bitorder="little").tobytes()).decode()
    assert selection_mask({"bits": bits, "n": 13}, 13).tolist() == mask.tolist()
    assert selection_mask({"bits": bits, "n": 20}, 20) is None  # for another map
    assert selection_mask({"bits": "not base64!", "n": 13}, 13) is None
    assert selection_mask({"bits": base64.b64encode(b"\xff" * 50).decode(), "n": 13}, 13) is None
    assert selection_mask({"points": [[0, 0]]}, 13) is None


def test_nearest_across_splits_excludes_the_query() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(50, 8)).astype(np.float32)
    test = rng.normal(size=(10, 8)).astype(np.float32)
    test[3] = train[17] * 2.0  # the same direction: cosine 1
    hits = nearest_across({"train": train, "test": test}, "test", 3, 5)
    assert hits[0][:2] == ("train", 17) and hits[0][2] == pytest.approx(1.0, abs=1e-5)
    assert ("test", 3) not in [(s, i) for s, i, _ in hits] and len(hits) == 5
    sims = [s for _a, _b, s in hits]
    assert sims == sorted(sims, reverse=True)


def _dataset(tmp_path: Path, n_train: int = 300, n_test: int = 20, side: int = 32) -> SimpleNamespace:
    rng = np.random.default_rng(1)
    # One flat colour per image: a thumbnail's tile must show its own image's colour.
    arrays = {
        s: np.broadcast_to(rng.integers(0, 255, (n, 1, 1, 3), np.uint8), (n, side, side, 3))
        for s, n in (("train", n_train), ("test", n_test))
    }
    return SimpleNamespace(
        fingerprint="archive-0123abcd",
        splits=("train", "test"),
        image_shape=(side, side, 3),
        images=arrays.__getitem__,
        size=lambda s: len(arrays[s]),
    )


def test_sprites_tile_every_image_and_are_made_once(tmp_path: Path) -> None:
    from PIL import Image

    ds = _dataset(tmp_path)
    assert thumbs.find_sprites(ds, tmp_path) is None
    sprites = thumbs.ensure_sprites(ds, tmp_path)
    assert sorted(p.name for p in sprites.folder.glob("*.jpg")) == ["test-0000.jpg", "train-0000.jpg", "train-0001.jpg"]
    name, col, row = sprites.locate("train", 300 - 1)
    assert (name, col, row) == ("train-0001.jpg", 43 % 16, 43 // 16)
    sheet = np.asarray(Image.open(sprites.folder / name), np.float32)
    tile = sheet[row * 32 : (row + 1) * 32, col * 32 : (col + 1) * 32]
    assert np.abs(tile.mean(axis=(0, 1)) - ds.images("train")[299, 0, 0]).max() < 6  # JPEG: close, not exact
    assert (
        np.abs(tile.mean(axis=(0, 1)) - ds.images("train")[298, 0, 0]).max() > 6
        or (ds.images("train")[298] == ds.images("train")[299]).all()
    )
    stamp = (sprites.folder / name).stat().st_mtime_ns
    assert thumbs.ensure_sprites(ds, tmp_path) == sprites and (sprites.folder / name).stat().st_mtime_ns == stamp


def test_incomplete_or_foreign_sprite_folder_is_remade(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    sprites = thumbs.ensure_sprites(ds, tmp_path)
    (sprites.folder / thumbs.MANIFEST).unlink()  # as if interrupted before the last write
    assert thumbs.find_sprites(ds, tmp_path) is None
    assert thumbs.ensure_sprites(ds, tmp_path).counts == {"train": 300, "test": 20}
    (sprites.folder / thumbs.MANIFEST).write_text(
        json.dumps({"version": 1, "side": 32, "per_row": 16, "counts": {"train": 5}})
    )
    assert thumbs.find_sprites(ds, tmp_path) is None  # counts of another dataset version
    (sprites.folder / thumbs.MANIFEST).write_text("{not json")
    assert thumbs.find_sprites(ds, tmp_path) is None


def test_large_images_are_shrunk_and_bad_fingerprints_refused(tmp_path: Path) -> None:
    from lib.errors import UserFacingError

    ds = _dataset(tmp_path, 10, 3, side=100)
    assert thumbs.ensure_sprites(ds, tmp_path).side == thumbs.MAX_SIDE
    for bad in ("../x", "/etc", ""):
        with pytest.raises(UserFacingError):
            thumbs.sprite_folder(tmp_path, bad)


def test_map_clusters_name_groups_by_majority_and_purity() -> None:
    """Three separate groups on the map: each gets the label of its majority class and the share that has it; a
    group too small to label is left out."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])
    labels = np.repeat([0, 1, 2], 400)
    labels[:40] = 1  # the first group is 90% class 0
    xy = centres[np.repeat([0, 1, 2], 400)] + rng.normal(size=(1200, 2))
    xy = np.vstack([xy, [[200.0, 200.0]] * 4])  # a group of 4 points: under 0.5% of the points
    labels = np.append(labels, [2] * 4)
    found = map_clusters(xy, labels, CLASSES, k=4)
    named = {c["name"]: c for c in found}
    assert set(named) == {"cat", "dog", "ship"} and len(found) == 3
    assert named["cat"]["purity"] == pytest.approx(0.9) and named["dog"]["purity"] == 1.0
    assert named["dog"]["count"] == 400 and np.hypot(named["ship"]["x"] - 0, named["ship"]["y"] - 50) < 4
    assert map_clusters(xy[:10], labels[:10], CLASSES) == []  # too few points to say anything


def test_map_files_are_published_once_by_content_and_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The map's points go to the static folder as binary files named by their content (made once, reused by every
    session), the oldest are pruned past the limit, nothing else in the folder is touched, and an unwritable folder
    falls back to inline base64."""
    from ui import scatter_map

    monkeypatch.setattr(scatter_map, "MAPS_ROOT", tmp_path / "maps")
    monkeypatch.setattr(scatter_map, "MAPS_KEEP", 3)
    coords = np.array([[0.0, 1.0], [2.0, -1.0], [4.0, 3.0]], np.float32)
    colours = colour_points("true label", CLASSES, LABELS[:3], PREDS[:3], [("train", 3)])
    shown = np.array([1, 1, 0], bool)
    payload = scatter_map.map_payload(
        coords, LABELS[:3], colours, PREDS[:3], None, shown, [("train", 3)], CLASSES, None, view_key="v"
    )
    wire = scatter_map._wire(payload)
    assert "_blobs" not in wire and json.loads(json.dumps(wire)) == wire  # small JSON only
    xy = (tmp_path / "maps" / wire["parts"]["xy"]["name"]).read_bytes()
    assert wire["parts"]["xy"]["url"] == f"app/static/maps/{wire['parts']['xy']['name']}"
    assert np.frombuffer(xy, "<f4").tolist() == [0.0, 2.0, 4.0, 1.0, -1.0, 3.0] and wire["bounds"] == [0, 4, -1, 3]
    attr = np.frombuffer((tmp_path / "maps" / wire["parts"]["attr"]["name"]).read_bytes(), np.uint8).reshape(6, 3)
    assert attr[2].tolist() == [0, 1, 2] and attr[3].tolist() == [0, 2, 2] and attr[4].tolist() == [255] * 3
    assert attr[5].tolist() == [1, 1, 0]
    (tmp_path / "maps" / "notes.txt").write_text("mine")
    for k in range(5):  # other maps: the oldest files go, the newest stay, notes.txt stays
        other = scatter_map.map_payload(
            coords + k + 1, LABELS[:3], colours, PREDS[:3], None, shown, [("train", 3)], CLASSES, None, view_key="v"
        )
        scatter_map._wire(other)
    left = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert len(left) == 4 and "notes.txt" in left
    assert scatter_map._wire(payload)["parts"]["xy"].get("url")  # pruned, asked again: written again
    with pytest.raises(ValueError):
        scatter_map.publish("../../app.py", b"x")
    monkeypatch.setattr(scatter_map, "MAPS_ROOT", tmp_path / "maps" / "notes.txt" / "maps")  # cannot be made
    fallback = scatter_map._wire(payload)["parts"]
    assert "url" not in fallback["xy"] and base64.b64decode(fallback["xy"]["b64"]) == xy
