"""The map of every image: PCA and openTSNE fitted on train with test placed by the fitted model, the artifact
(keys, damage), and the `project` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lib.analysis import full_map as fm
from lib.errors import ConfigError
from tests.fixtures import cli


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    centres = np.random.default_rng(0).normal(scale=4.0, size=(5, 20))
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(5), n)
    return (centres[y] + rng.normal(size=(len(y), 20))).astype(np.float32), y


def test_tsne_fits_on_train_and_places_test_near_its_class() -> None:
    x_train, y_train = _blobs(80, 1)
    x_test, y_test = _blobs(20, 2)
    coords = fm.project_all({"train": x_train, "test": x_test}, "tsne", perplexity=15, iterations=250, seed=0)
    assert (
        coords["train"].shape == (400, 2) and coords["test"].shape == (100, 2) and coords["train"].dtype == np.float32
    )
    # Each test point's nearest training point on the map has its class: the map is shared by both splits.
    d = ((coords["test"][:, None, :] - coords["train"][None, :, :]) ** 2).sum(-1)
    assert (y_train[d.argmin(1)] == y_test).mean() >= 0.95
    again = fm.project_all({"train": x_train, "test": x_test}, "tsne", perplexity=15, iterations=250, seed=0)
    np.testing.assert_allclose(again["train"], coords["train"], atol=1e-4)  # seeded
    with pytest.raises(ConfigError, match="needs more than"):
        fm.project_all({"train": x_train[:20]}, "tsne", perplexity=30)
    with pytest.raises(ConfigError, match="Unknown projection"):
        fm.project_all({"train": x_train}, "umap")


def test_map_artifact_round_trip_damage_and_key(tmp_path: Path) -> None:
    x, _ = _blobs(10, 1)
    m = fm.FullMap("pca", fm.project_all({"train": x, "test": x[:7]}, "pca"), 0.1, {"seed": 0}, "k")
    path = tmp_path / "projections" / "full-pca-0123456789abcdef.npz"
    fm.save_map(path, m)
    back = fm.load_map(path, {"train": 50, "test": 7})
    assert back is not None and np.array_equal(back.coords["test"], m.coords["test"])
    assert fm.load_map(path, {"train": 50, "test": 8}) is None  # stale: another dataset size
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert fm.load_map(path, {"train": 50, "test": 7}) is None  # damaged: never shown
    keys = {"train": "a", "test": "b"}
    assert fm.map_key(keys, "tsne", {"perplexity": 30}) != fm.map_key(keys, "tsne", {"perplexity": 50})
    assert fm.map_key(keys, "tsne", {"perplexity": 30}) != fm.map_key(
        {"train": "a", "test": "c"}, "tsne", {"perplexity": 30}
    )


def test_project_cli_json_contract_cache_and_bad_input(assets: dict[str, Path], cache_dir: Path) -> None:
    args = [
        "project",
        "--source",
        str(assets["cifar_tar"]),
        "--backbone",
        str(assets["savedmodel"]),
        "--image-size",
        "32",
        "--json",
    ]
    out = cli(*args, "--method", "pca", cache=cache_dir)  # the CLI's main(argv) in this process: its stdout is the JSON
    assert out["method"] == "pca" and out["points"] == {"train": 60, "test": 30}
    assert len(list((cache_dir / "projections").glob("full-pca-*.npz"))) == 1
    again = cli(*args, "--method", "pca", cache=cache_dir)
    assert again["projection_seconds"] == out["projection_seconds"]  # read back, not recomputed
    bad = cli(*args, "--method", "tsne", cache=cache_dir, ok=False)
    assert bad.returncode == 2 and "needs more than 90 training images" in bad.stderr and "Traceback" not in bad.stderr


def test_project_makes_hover_thumbnails_in_the_job(
    assets: dict[str, Path], cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``project --thumbs DIR`` (what the app's map job runs) makes every image's sprite sheets before the map is
    stored, so the page never makes them while a visitor waits; a folder it cannot write costs the thumbnails only,
    said in one line, and the map is still made."""
    from lib.cli.main import main

    argv = ["project", "--source", str(assets["cifar_tar"]), "--backbone", str(assets["savedmodel"])]
    argv += ["--image-size", "32", "--cache-dir", str(cache_dir), "--method", "pca", "--json"]
    assert main([*argv, "--thumbs", str(tmp_path / "thumbs")]) == 0
    out = json.loads(capsys.readouterr().out)
    (folder,) = (tmp_path / "thumbs").iterdir()
    manifest = json.loads((folder / "sprites.json").read_text())
    assert manifest["counts"] == {"train": 60, "test": 30} and f"hover thumbnails in {folder}" in out["_text"]
    assert sorted(p.name for p in folder.glob("*.jpg")) == ["test-0000.jpg", "train-0000.jpg"]
    (tmp_path / "a-file").write_text("not a folder")
    assert main([*argv, "--thumbs", str(tmp_path / "a-file" / "thumbs")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "no hover thumbnails (" in out["_text"] and out["points"] == {"train": 60, "test": 30}
