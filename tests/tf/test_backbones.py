"""Backbones: registry, local SavedModels and .tflite files, and clear rejections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lib.errors import BackboneError
from lib.runtimes.backbones import REGISTRY, load_backbone, resolve_backbone
from tests import fixtures


def test_registry_covers_mobilenet_v1_grid_and_other_families() -> None:
    v1 = [n for n in REGISTRY if n.startswith("mobilenet_v1_")]
    assert len(v1) == 16
    assert REGISTRY["mobilenet_v1_100_128"].native_size == 128 and REGISTRY["mobilenet_v1_050_160"].feature_dim == 512
    families = {s.family for s in REGISTRY.values()}
    assert {"MobileNet v2", "EfficientNet", "ResNet", "Inception v3"} <= families


def test_local_savedmodel_embeds_and_flip_changes_features(assets: dict[str, Path]) -> None:
    spec = resolve_backbone(str(assets["savedmodel"]))
    assert spec.kind == "savedmodel" and spec.native_size is None
    model = load_backbone(spec)
    images = fixtures.class_images(3, 4)
    feats = model.embed(images, 48)
    assert feats.shape == (4, 16) and feats.dtype == np.float32
    np.testing.assert_allclose(model.embed(images, 48), feats)
    assert not np.allclose(model.embed(images, 48, flip=True), feats)


def test_tflite_quantized_input_and_output_are_handled(assets: dict[str, Path]) -> None:
    spec = resolve_backbone(str(assets["tflite"]))
    model = load_backbone(spec)
    feats = model.embed(fixtures.class_images(1, 5), 32)
    assert feats.shape == (5, 8) and feats.dtype == np.float32 and feats.max() > 0
    with pytest.raises(BackboneError, match="only accepts 32x32"):
        model.embed(fixtures.class_images(1, 2), 64)


def test_identity_follows_contents(assets: dict[str, Path], tmp_path: Path) -> None:
    a = resolve_backbone(str(assets["savedmodel"])).identity()
    other = fixtures.make_feature_savedmodel(tmp_path / "other", seed=5)
    assert a != resolve_backbone(str(other)).identity()
    assert resolve_backbone("mobilenet_v1_100_128").identity().startswith("hub:https://tfhub.dev/")


@pytest.mark.parametrize("bad", ["not_a_backbone", "./missing/model", "   "])
def test_unknown_names_and_paths_are_clear_errors(bad: str) -> None:
    with pytest.raises(BackboneError):
        resolve_backbone(bad)


def test_unreachable_handle_names_the_handle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub"))
    spec = resolve_backbone("https://tfhub.dev/google/imagenet/does_not_exist/feature_vector/5")
    with pytest.raises(BackboneError, match="does_not_exist") as err:
        load_backbone(spec)
    assert "Offline?" in str(err.value)


def test_classification_module_is_rejected(tmp_path: Path) -> None:
    path = fixtures.make_classifier_savedmodel(tmp_path / "classifier")
    with pytest.raises(BackboneError, match="classification module"):
        load_backbone(resolve_backbone(str(path)))


def test_spatial_output_is_rejected(tmp_path: Path) -> None:
    path = fixtures.make_spatial_savedmodel(tmp_path / "spatial")
    with pytest.raises(BackboneError, match=r"\[batch, features\]"):
        load_backbone(resolve_backbone(str(path)))


def test_folder_that_is_not_a_savedmodel(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    with pytest.raises(BackboneError, match="neither a SavedModel"):
        resolve_backbone(str(tmp_path / "junk"))


def test_corrupt_savedmodel_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad_model"
    bad.mkdir()
    (bad / "saved_model.pb").write_bytes(b"\x00garbage")
    with pytest.raises(BackboneError, match="Could not load backbone"):
        load_backbone(resolve_backbone(str(bad)))
