"""AppTest of Feature space: the sample map, the map of every image, neighbours."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.app.helpers import finish_jobs, no_errors, start


def test_feature_space_pca_tsne_and_neighbours(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user picks the quick map of a sample, looks at PCA, switches to t-SNE coloured by correctness, and sees nearest
    neighbours of an image."""
    at = start(monkeypatch, prepared, page="feature_space.py", run=prepared["run"], fs_view="sample of one split")
    assert any("PCA of 30 points" in c.value and "explained variance" in c.value for c in at.caption)
    at.radio(key="fs_method").set_value("t-SNE").run()
    at.selectbox(key="fs_color").set_value("correct vs wrong").run()
    no_errors(at)
    assert any("t-SNE of 30 points" in c.value for c in at.caption)
    captions = [c for img in at.image for c in img.captions]
    assert any(c.startswith("query #") for c in captions)
    assert sum("(" in c and c.startswith("#") for c in captions) == 8  # k=8 neighbours with similarities


def _map_payload(at: AppTest) -> dict:
    import json

    (el,) = at.get("bidi_component")
    return json.loads(el.proto.json)


def _part(data: dict, name: str) -> np.ndarray:
    """The bytes of one binary part of the map (a static file the browser fetches, or inline base64)."""
    import base64

    from ui.scatter_map import MAPS_ROOT

    part = data["parts"][name]
    if part.get("url"):
        assert part["url"] == f"app/static/maps/{part['name']}"
        raw = (MAPS_ROOT / part["name"]).read_bytes()
    else:
        raw = base64.b64decode(part["b64"])
    assert len(raw) == part["bytes"]
    return np.frombuffer(raw, np.float32 if name == "xy" else np.uint8)


def test_feature_space_map_of_every_image(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user opens Feature space: no map of every image yet, so they compute the PCA map once; every train and test
    image is on it, coloured by whether the active run gets it right (train images too), with hover thumbnails served
    as sprite sheets, the points as binary files fetched once (not JSON); the nearest neighbours of the queried image
    come from both splits."""
    at = start(monkeypatch, prepared, page="feature_space.py", run=prepared["run"], fm_method="PCA")
    assert any("No PCA map of all 90 images" in i.value for i in at.info)
    assert not at.get("bidi_component")  # never computed on page load
    at.button(key="fm_compute").click().run()
    no_errors(at)
    finish_jobs(at, prepared["cache"])
    data = _map_payload(at)
    assert [(s["name"], s["count"]) for s in data["splits"]] == [("train", 60), ("test", 30)]
    xy = _part(data, "xy")
    assert data["n"] == 90 and len(xy) == 2 * 90 and np.isfinite(xy).all()
    assert min(xy[:90]) == data["bounds"][0] and max(xy[90:]) == data["bounds"][3]
    attr = _part(data, "attr")
    assert len(attr) == 6 * 90 and set(attr[5 * 90 :].tolist()) == {1}  # colour, priority, label, pred, score, shown
    assert data["classes"][:3] == ["airplane", "automobile", "bird"] and len(data["classes"]) == 10
    assert data["sprites"]["base"].startswith("app/static/thumbs/") and data["sprites"]["side"] == 32
    preds = attr[3 * 90 : 4 * 90]
    assert (preds < 255).all()  # the run's head predicts train images from their cached features; test from the run
    assert data["clusters"] and all(c["name"] in data["classes"] and 0 < c["purity"] <= 1 for c in data["clusters"])
    geometry = data["parts"]["xy"]["name"]
    at.selectbox(key="fm_color").set_value("correct vs wrong").run()
    no_errors(at)
    data = _map_payload(at)
    assert [name for name, _i in data["legend"]][:2] == ["correct", "wrong"]
    assert data["parts"]["xy"]["name"] == geometry  # another colouring: the points are not sent again
    codes = _part(data, "attr")[:90]  # only the attributes are new
    assert set(codes.tolist()) <= {0, 1} and (codes == 0).any()
    captions = [c for img in at.image for c in img.captions]
    assert any(c.startswith("query test #0 ") for c in captions)
    assert sum(bool(re.match(r"^(train|test) #\d+ .+ \(-?\d\.\d\d\)$", c)) for c in captions) == 8
    # The quick sample view is one click away, and the stored map is reused (no button) when coming back.
    at.radio(key="fs_view").set_value("sample of one split").run()
    no_errors(at)
    assert any("PCA of 30 points" in c.value for c in at.caption)
    at.radio(key="fs_view").set_value("every image").run()
    assert at.get("bidi_component") and not any(b.key == "fm_compute" for b in at.button)


def test_damaged_feature_manifest_breaks_no_page(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A feature manifest holding [1,2,3] (valid JSON, wrong shape) is skipped by Home and Feature space, not a
    traceback."""
    import shutil

    cache = Path(prepared["cache"]) / ".." / "damaged_features"
    shutil.copytree(prepared["cache"], cache)
    for manifest in (cache / "features").glob("*.json"):
        manifest.write_text("[1, 2, 3]")
    env = {**prepared, "cache": str(cache)}
    for page in (None, "feature_space.py"):
        no_errors(start(monkeypatch, env, page=page))
