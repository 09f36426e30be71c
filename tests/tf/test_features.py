"""Feature extraction: streaming, caching by key, atomic writes and resume."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import numpy as np
import pytest

from lib.data.sources import load_dataset
from lib.errors import CacheWriteError
from lib.pipeline import feature_store, features
from lib.pipeline.features import extract_features, feature_cache_key, list_cached_features
from lib.runtimes.backbones import load_backbone, resolve_backbone
from lib.store.layout import CacheLayout
from tests.fixtures import get_features


@pytest.fixture
def setup(assets: dict[str, Path], cache_dir: Path, layout: CacheLayout) -> tuple:
    ds = load_dataset(str(assets["cifar_tar"]), layout)
    spec = resolve_backbone(str(assets["savedmodel"]))
    return ds, spec, load_backbone(spec)


def test_extract_then_cache_hit_with_same_values(setup: tuple, cache_dir: Path) -> None:
    ds, spec, model = setup
    reports: list[features.ExtractProgress] = []
    first = get_features(
        ds, "train", spec, cache_dir, image_size=48, batch_size=16, progress=reports.append, backbone=model
    )
    assert not first.cache_hit and first.features.shape == (60, 16)
    assert reports[-1].done == reports[-1].total == 60 and reports[-1].images_per_second > 0
    second = get_features(ds, "train", spec, cache_dir, image_size=48)
    assert second.cache_hit and isinstance(second.features, np.memmap)
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(second.labels, ds.labels("train"))
    direct = extract_features(model, ds.images("train"), 48, batch_size=7)
    np.testing.assert_allclose(direct, second.features, rtol=1e-5, atol=1e-6)


def test_key_separates_everything_that_changes_features(setup: tuple, cache_dir: Path, layout: CacheLayout) -> None:
    ds, spec, model = setup
    base = get_features(ds, "test", spec, cache_dir, image_size=48, backbone=model)
    flip = get_features(ds, "test", spec, cache_dir, image_size=48, view="flip", backbone=model)
    bigger = get_features(ds, "test", spec, cache_dir, image_size=64, backbone=model)
    limited = get_features(ds, "test", spec, cache_dir, image_size=48, limit=1, backbone=model)
    assert len({base.path, flip.path, bigger.path, limited.path}) == 4
    assert not np.allclose(base.features, flip.features)
    assert limited.features.shape == (10, 16)
    np.testing.assert_allclose(limited.features, base.features[limited.indices], rtol=1e-5, atol=1e-6)
    keys = {
        feature_cache_key("d", "test", "b", 48, "original", None),
        feature_cache_key("d2", "test", "b", 48, "original", None),
        feature_cache_key("d", "train", "b", 48, "original", None),
        feature_cache_key("d", "test", "b2", 48, "original", None),
    }
    assert len(keys) == 4
    assert len(list_cached_features(layout)) == 4


def test_key_follows_the_preprocessing_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key holds a hash of the one preprocessing function's source: editing it can never serve stale features."""
    import inspect

    from lib.models import preprocess

    assert preprocess.PREPROCESSING_ID.endswith(
        __import__("hashlib").sha256(inspect.getsource(preprocess).encode()).hexdigest()[:12]
    )
    before = feature_cache_key("d", "test", "b", 48, "original", None)
    monkeypatch.setattr(feature_store, "PREPROCESSING_ID", "v1-edited")
    assert feature_cache_key("d", "test", "b", 48, "original", None) != before


def test_corrupt_cache_file_is_recomputed(setup: tuple, cache_dir: Path) -> None:
    ds, spec, model = setup
    first = get_features(ds, "test", spec, cache_dir, image_size=48, backbone=model)
    expected = np.array(first.features)
    first.path.write_bytes(first.path.read_bytes()[:100])  # a truncated file
    again = get_features(ds, "test", spec, cache_dir, image_size=48, backbone=model)
    assert not again.cache_hit
    np.testing.assert_allclose(again.features, expected)


def test_interrupted_extraction_leaves_nothing_valid_and_resumes(
    setup: tuple, cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds, spec, model = setup
    monkeypatch.setattr(feature_store, "CHUNK", 16)
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
    assert features.cached_feature_result(ds, "train", spec, 48, "original", None, layout) is None
    assert list((cache_dir / "features").glob("*.partial/chunk_*.npy"))
    monkeypatch.setattr(model, "embed", real_embed)
    reports: list[features.ExtractProgress] = []
    done = get_features(
        ds, "train", spec, cache_dir, image_size=48, batch_size=16, backbone=model, progress=reports.append
    )
    assert reports[0].done == 32  # two chunks were kept from the interrupted run
    np.testing.assert_allclose(done.features, extract_features(model, ds.images("train"), 48), rtol=1e-5, atol=1e-6)
    assert not list((cache_dir / "features").glob("*.partial"))


def test_full_disk_is_a_clear_error_and_keeps_nothing(
    setup: tuple, cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds, spec, model = setup

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(CacheWriteError, match="Disk full"):
        get_features(ds, "test", spec, cache_dir, image_size=48, backbone=model)
    assert not list((cache_dir / "features").glob("*.npy"))
    assert features.cached_feature_result(ds, "test", spec, 48, "original", None, layout) is None


def test_two_writers_of_the_same_key(setup: tuple, cache_dir: Path, layout: CacheLayout) -> None:
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
    assert features.cached_feature_result(ds, "train", spec, 40, "original", None, layout) is not None


def test_tflite_backbone_features(assets: dict[str, Path], cache_dir: Path, layout: CacheLayout) -> None:
    ds = load_dataset(str(assets["cifar_tar"]), layout)
    spec = resolve_backbone(str(assets["tflite"]))
    result = get_features(ds, "test", spec, cache_dir, image_size=32)
    assert result.features.shape == (30, 8)


@pytest.mark.parametrize("manifest_text", ["[1, 2, 3]", '{"shape": "big"}', "{not json"])
def test_damaged_feature_manifest_is_re_extracted(
    setup: tuple, cache_dir: Path, layout: CacheLayout, manifest_text: str
) -> None:
    ds, spec, model = setup
    first = get_features(ds, "test", spec, cache_dir, image_size=48, backbone=model)
    expected = np.array(first.features)
    first.path.with_suffix(".json").write_text(manifest_text)
    assert list_cached_features(layout) == []  # listing skips it (Home would otherwise crash)
    again = get_features(ds, "test", spec, cache_dir, image_size=48, backbone=model)
    assert not again.cache_hit
    np.testing.assert_allclose(again.features, expected)
    assert get_features(ds, "test", spec, cache_dir, image_size=48, backbone=model).cache_hit  # and repaired for good


def test_bit_rot_is_detected_by_the_checksum(setup: tuple, cache_dir: Path) -> None:
    ds, spec, model = setup
    first = get_features(ds, "test", spec, cache_dir, image_size=48, backbone=model)
    expected = np.array(first.features)
    raw = bytearray(first.path.read_bytes())
    raw[-7] ^= 0x7F  # one byte of the last feature rots into a different (here NaN-free) float
    first.path.write_bytes(bytes(raw))
    again = get_features(ds, "test", spec, cache_dir, image_size=48, backbone=model)
    assert not again.cache_hit
    np.testing.assert_allclose(again.features, expected)


def test_a_writer_that_loses_the_race_leaves_no_orphan_chunk(
    setup: tuple, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two extractions of one key: the second finishes (and cleans up) while the first is between chunks."""
    ds, spec, model = setup
    monkeypatch.setattr(feature_store, "CHUNK", 16)
    real_embed = model.embed
    state = {"raced": False}

    def racing_embed(images: np.ndarray, size: int, flip: bool = False) -> np.ndarray:
        if not state["raced"]:
            state["raced"] = True
            other = get_features(
                ds, "train", spec, cache_dir, image_size=48, batch_size=16, backbone=_Plain(real_embed, model)
            )
            assert not other.cache_hit
        return real_embed(images, size, flip)

    monkeypatch.setattr(model, "embed", racing_embed)
    result = get_features(ds, "train", spec, cache_dir, image_size=48, batch_size=16, backbone=model)
    assert result.features.shape == (60, 16)
    assert not list((cache_dir / "features").glob("*.partial")), "an orphan checkpoint folder was left behind"
    assert not list((cache_dir / "features").glob(".*"))


class _Plain:
    """A backbone stand-in with the real embed (the racing one is monkeypatched on the shared object)."""

    def __init__(self, embed: object, model: object) -> None:
        self.embed = embed
        self.feature_dim = model.feature_dim
        self.check_size = model.check_size


FULL_DISK_SCRIPT = """
import sys, numpy as np
from lib.data.sources import load_dataset
from lib.runtimes.backbones import resolve_backbone
from lib.pipeline import feature_store
from lib.errors import UserFacingError
from lib.store.layout import CacheLayout
from tests.fixtures import get_features

class Wide:
    feature_dim = 4096          # 16 KB of features per image: 200 images make 3.3 MB
    def check_size(self, size): pass
    def embed(self, images, size, flip=False):
        return np.ones((len(images), 4096), np.float32)

ds = load_dataset(sys.argv[1], CacheLayout(sys.argv[2]))
spec = resolve_backbone(sys.argv[3])
if sys.argv[4] == "no-precheck":
    feature_store.check_free_space = lambda folder, needed: None   # reach the final write itself
try:
    get_features(ds, "train", spec, sys.argv[2], image_size=32, backbone=Wide())
except UserFacingError as err:
    import os
    print("error:", err)
    print("left:", sorted(p for p in os.listdir(sys.argv[2] + "/features") if p.startswith(".")))
    sys.exit(2)
"""


@pytest.mark.parametrize("mode", ["precheck", "no-precheck"])
def test_full_disk_on_a_real_small_filesystem(assets: dict[str, Path], tmp_path: Path, mode: str) -> None:
    """A 5 MB tmpfs holds the chunks (3.3 MB) but not the final file too: before the fix the final write
    through a memory map died with SIGBUS (exit 135) and left a hidden .tmp.npy behind."""
    import shutil
    import subprocess
    import sys

    mount = tmp_path / "small"
    mount.mkdir()
    folder = fixtures_folder(tmp_path)
    wrap = ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size=5m tmpfs "{mount}" && exec "$0" "$@"']
    if shutil.which("unshare") is None or subprocess.run([*wrap, "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs unshare and user namespaces)")
    cache = mount / "cache"
    script = FULL_DISK_SCRIPT
    # The dataset is converted inside the namespace too, so the whole cache lives on the small disk.
    proc = subprocess.run(
        [*wrap, sys.executable, "-c", script, str(folder), str(cache), str(assets["savedmodel"]), mode],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Disk full" in proc.stdout and "Traceback" not in proc.stderr
    assert "left: []" in proc.stdout  # no hidden temp file keeps the disk full


def fixtures_folder(tmp_path: Path) -> Path:
    """An image folder of 200 train and 20 test images (tiny files)."""
    from PIL import Image

    root = tmp_path / "imgs"
    for split, n in (("train", 100), ("test", 10)):
        for cls in ("a", "b"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (i, 0, 0)).save(d / f"{i}.png")
    return root
