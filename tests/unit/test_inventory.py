"""lib/analysis/inventory.py (and the one door, lib.pipeline.features.ensure_features, with a stand-in backbone): what
the
cache holds for a dataset, which features to show first, which splits still need features."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lib.analysis.inventory import FeatureSet, feature_sets, missing_feature_splits, preferred_feature_set, splits_with
from lib.data.sources import load_dataset
from lib.models.specs import resolve_backbone
from lib.pipeline.engines import LocalEngine
from lib.pipeline.features import ensure_features
from lib.store.layout import CacheLayout


class Fake:
    """A backbone stand-in without TensorFlow: each image's mean colour, scaled by the input size."""

    feature_dim, fixed_size = 3, None

    def check_size(self, size: int) -> None:
        pass

    def embed(self, images: np.ndarray, size: int, flip: bool = False) -> np.ndarray:
        return np.asarray(images, np.float32).mean(axis=(1, 2)) * size / 32


def test_sets_preferred_and_missing(data_assets: dict[str, Path], tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    ds = load_dataset(str(data_assets["cifar_tar"]), layout)
    model_dir = tmp_path / "model_32"
    model_dir.mkdir()
    (model_dir / "saved_model.pb").write_bytes(b"a stand-in: only its contents' hash is read here")
    spec = resolve_backbone(str(model_dir))
    assert missing_feature_splits(layout, ds, spec, 32) == ["train", "test"]
    engine = LocalEngine(layout, Fake())
    first = ensure_features(ds, "train", spec, layout, 32, engine=engine)
    assert not first.cache_hit and ensure_features(ds, "train", spec, layout, 32, engine=engine).cache_hit
    ensure_features(ds, "test", spec, layout, 48, engine=engine)
    assert missing_feature_splits(layout, ds, spec, 32) == ["test"]
    assert missing_feature_splits(layout, ds, spec, 32, "litert") == [
        "train",
        "test",
    ]  # another runtime's features do not count
    sets = feature_sets(layout, ds)
    assert sets == [FeatureSet(spec.handle, 32, None, "tf"), FeatureSet(spec.handle, 48, None, "tf")]
    assert splits_with(layout, ds, sets[1]) == ["test"] and sets[1].label() == "model_32 @ 48px"
    assert preferred_feature_set(sets, None, spec.handle, 48) == sets[1]
    assert preferred_feature_set(sets, None, "another", 224) == sets[0]
