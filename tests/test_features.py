"""Feature extraction: streaming, caching by key, atomic writes and resume."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import numpy as np
import pytest

from lib.data.sources import load_dataset
from lib.errors import CacheWriteError
from lib.models.backbones import load_backbone, resolve_backbone
from lib.pipeline import features
from lib.pipeline.features import extract_features, feature_cache_key, get_features, list_cached_features


@pytest.fixture
def setup(assets: dict[str, Path], cache_dir: Path) -> tuple:
    ds = load_dataset(str(assets["cifar_tar"]), cache_dir)
    spec = resolve_backbone(str(assets["savedmodel"]))
    return ds, spec, load_backbone(spec)


def test_extract_then_cache_hit_with_same_values(setup: tuple, cache_dir: Path) -> None:
    ds, spec, model = setup
    reports: list[features.ExtractProgress] = []
    first = get_features(ds, "train", spec, cache_dir, image_size=48, batch_size=16, progress=reports.append, backbone=model)
    assert not first.cache_hit and first.features.shape == (60, 16)
    assert reports[-1].done == reports[-1].total == 60 and reports[-1].images_per_second > 0
    second = get_features(ds, "train", spec, cache_dir, image_size=48)
    assert second.cache_hit and isinstance(second.features, np.memmap)
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(second.labels, ds.labels("train"))
    direct = extract_features(model, ds.images("train"), 48, batch_size=7)
    np.testing.assert_allclose(direct, second.features, rtol=1e-5, atol=1e-6)


def test_key_separates_everything_that_changes_features(setup: tuple, cache_dir: Path) -> None:
    ds, spec, model = setup
    base = get_features(ds, "test", spec, cache_dir, image_size=48, backbone=model)
    flip = get_features(ds, "test", spec, cache_dir, image_size=48, view="flip", backbone=model)
    bigger = get_features(ds, "test", spec, cache_dir, image_size=64, backbone=model)
    limited = get_features(ds, "test", spec, cache_dir, image_size=48, limit=1, backbone=model)
    assert len({base.path, flip.path, bigger.path, limited.path}) == 4
    assert not np.allclose(base.features, flip.features)
    assert limited.features.shape == (10, 16)
    np.testing.assert_allclose(limited.features, base.features[limited.indices], rtol=1e-5, atol=1e-6)
    keys = {feature_cache_key("d", "test", "b", 48, "original", None), feature_cache_key("d2", "test", "b", 48, "original", None),
            feature_cache_key("d", "train", "b", 48, "original", None), feature_cache_key("d", "test", "b2", 48, "original", None)}  # fmt: skip
    assert len(keys) == 4
    assert len(list_cached_features(cache_dir)) == 4


def test_corrupt_cache_file_is_recomputed(setup: tuple, cache_dir: Path) -> None:
    ds, spec, model = setup
    first = get_features(ds, "test", spec, cache_dir, image_size=48, backbone=model)
    expected = np.array(first.features)
    first.path.write_bytes(first.path.read_bytes()[:100])  # a truncated file
    again = get_features(ds, "test", spec, cache_dir, image_size=48, backbone=model)
    assert not again.cache_hit
    np.testing.assert_allclose(again.features, expected)


def test_interrupted_extraction_leaves_nothing_valid_and_resumes(setup: tuple, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds, spec, model = setup
    monkeypatch.setattr(features, "CHUNK", 16)
    calls = {"n": 0}
    real_embed = model.embed

    def dying_embed(*args: object, **kwargs: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_embed(*args, **kwargs)

    monkeypatch.setattr(model, "embed", dying_embed)
    with pytest.raises(KeyboardInterrupt):
        get_features(ds, "train", spec, cache_dir, image_size=48, batch_size=16, backbone=model)
    assert features.cached_feature_result(ds, "train", spec, 48, "original", None, cache_dir) is None
    assert list((cache_dir / "features").glob("*.partial/chunk_*.npy"))
    monkeypatch.setattr(model, "embed", real_embed)
    reports: list[features.ExtractProgress] = []
    done = get_features(ds, "train", spec, cache_dir, image_size=48, batch_size=16, backbone=model, progress=reports.append)
    assert reports[0].done == 32  # two chunks were kept from the interrupted run
    np.testing.assert_allclose(done.features, extract_features(model, ds.images("train"), 48), rtol=1e-5, atol=1e-6)
    assert not list((cache_dir / "features").glob("*.partial"))


def test_full_disk_is_a_clear_error_and_keeps_nothing(setup: tuple, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds, spec, model = setup

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(CacheWriteError, match="Disk full"):
        get_features(ds, "test", spec, cache_dir, image_size=48, backbone=model)
    assert not list((cache_dir / "features").glob("*.npy"))
    assert features.cached_feature_result(ds, "test", spec, 48, "original", None, cache_dir) is None


def test_two_writers_of_the_same_key(setup: tuple, cache_dir: Path) -> None:
    """Two sessions extracting the same features at once both finish with identical, valid results."""
    ds, spec, model = setup
    results: list = []
    errors: list = []

    def work() -> None:
        try:
            results.append(get_features(ds, "train", spec, cache_dir, image_size=40, batch_size=8, backbone=model))
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    np.testing.assert_allclose(results[0].features, results[1].features)
    assert features.cached_feature_result(ds, "train", spec, 40, "original", None, cache_dir) is not None


def test_tflite_backbone_features(assets: dict[str, Path], cache_dir: Path) -> None:
    ds = load_dataset(str(assets["cifar_tar"]), cache_dir)
    spec = resolve_backbone(str(assets["tflite"]))
    result = get_features(ds, "test", spec, cache_dir, image_size=32)
    assert result.features.shape == (30, 8)
