"""Datasets: every kind of source converts, caches, memory-maps and fails clearly."""

from __future__ import annotations

import socket
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lib.data import cifar
from lib.data.folders import storage_side
from lib.data.sources import load_dataset, subset_indices
from lib.errors import CacheWriteError, DataSourceError
from lib.store.layout import CacheLayout
from tests import fixtures


def test_cifar_pickle_archive_converts_and_memory_maps(
    data_assets: dict[str, Path], cache_dir: Path, layout: CacheLayout
) -> None:
    ds = load_dataset(str(data_assets["cifar_tar"]), layout)
    assert ds.classes == tuple(fixtures.CLASSES)
    assert ds.splits == ("train", "test")
    assert ds.images("train").shape == (60, 32, 32, 3) and ds.images("train").dtype == np.uint8
    assert isinstance(ds.images("test"), np.memmap)
    assert ds.counts["test"] == [3] * 10
    # Pixels survive the pickle -> array conversion exactly.
    first_test = fixtures.class_images(0, 3, seed=1)
    np.testing.assert_array_equal(ds.images("test")[:3], first_test)


def test_second_load_is_a_fast_cache_hit(data_assets: dict[str, Path], cache_dir: Path, layout: CacheLayout) -> None:
    first = load_dataset(str(data_assets["cifar_tar"]), layout)
    t0 = time.perf_counter()
    again = load_dataset(str(data_assets["cifar_tar"]), layout)
    assert time.perf_counter() - t0 < 1.0
    assert again.fingerprint == first.fingerprint and again.path == first.path


def test_extracted_batches_folder_is_a_source(
    data_assets: dict[str, Path], tmp_path: Path, cache_dir: Path, layout: CacheLayout
) -> None:
    with tarfile.open(data_assets["cifar_tar"]) as tar:
        tar.extractall(tmp_path, filter="data")
    ds = load_dataset(str(tmp_path / "cifar-10-batches-py"), layout)
    assert ds.size("train") == 60 and ds.kind == "cifar10-pickle"


def test_image_folder_mixed_sizes_modes_and_a_corrupt_file(
    data_assets: dict[str, Path], cache_dir: Path, layout: CacheLayout
) -> None:
    ds = load_dataset(str(data_assets["folder"]), layout)
    assert ds.classes == ("cat", "dog", "frog")
    assert ds.skipped == {"train": 1, "test": 0}
    assert ds.counts["train"] == [8, 8, 8]
    h, w, c = ds.image_shape
    assert h == w and c == 3
    imgs = ds.images("train")
    assert imgs.shape[1:] == (h, w, 3)
    # Most images are 32x32 and a third are 48x40: the median over images keeps 32, not the 40 of two distinct sizes.
    assert h == 32
    # Every stored image is close to its source: the RGBA, L and P files were decoded, not blanked or clipped.
    expected = fixtures.class_images(0, 8, size=32, seed=0)
    for i in (0, 2, 3):  # RGB jpg, RGBA png (opaque: composited onto white changes nothing), P png
        diff = np.abs(imgs[i].astype(int) - expected[i].astype(int)).mean()
        assert diff < 40, (i, diff)


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_image_folder_archives(
    data_assets: dict[str, Path], tmp_path: Path, cache_dir: Path, layout: CacheLayout, fmt: str
) -> None:
    folder = data_assets["folder"]
    archive = tmp_path / f"data.{fmt}"
    if fmt == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for p in folder.rglob("*"):
                zf.write(p, Path("mydata") / p.relative_to(folder))
    else:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, arcname="mydata")
    ds = load_dataset(str(archive), layout)
    assert ds.classes == ("cat", "dog", "frog") and ds.size("test") == 12 and ds.skipped["train"] == 1


def test_truncated_archive_is_a_clear_error_and_caches_nothing(
    data_assets: dict[str, Path], tmp_path: Path, cache_dir: Path, layout: CacheLayout
) -> None:
    data = data_assets["cifar_tar"].read_bytes()
    broken = tmp_path / "cifar-10-python.tar.gz"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataSourceError, match=r"truncated|corrupt|readable"):
        load_dataset(str(broken), layout)
    assert not list((cache_dir / "datasets").glob("v*"))  # (glob of a missing folder is empty too)


def test_missing_path_and_unknown_format(tmp_path: Path, cache_dir: Path, layout: CacheLayout) -> None:
    with pytest.raises(DataSourceError, match="neither 'cifar10' nor an existing path"):
        load_dataset(str(tmp_path / "nope"), layout)
    odd = tmp_path / "data.csv"
    odd.write_text("a,b")
    with pytest.raises(DataSourceError, match="Don't know how to read"):
        load_dataset(str(odd), layout)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataSourceError, match="No images found"):
        load_dataset(str(empty), layout)


def test_corrupt_dataset_cache_is_rebuilt_not_trusted(
    data_assets: dict[str, Path], cache_dir: Path, layout: CacheLayout
) -> None:
    ds = load_dataset(str(data_assets["cifar_tar"]), layout)
    (ds.path / "train_images.npy").write_bytes(b"garbage")
    again = load_dataset(str(data_assets["cifar_tar"]), layout)
    assert again.images("train").shape == (60, 32, 32, 3)


def test_cifar10_without_network_fails_fast_with_a_hint(
    cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The official download, with no network, fails within seconds and says how to use a local copy."""
    with socket.socket() as s:  # a port on this machine that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TLX_CIFAR10_URL", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    t0 = time.perf_counter()
    with pytest.raises(DataSourceError) as err:
        load_dataset("cifar10", layout)
    assert time.perf_counter() - t0 < 10
    assert "--source" in str(err.value) and "cifar-10-python.tar.gz" in str(err.value)
    assert not (cache_dir / "downloads" / "cifar-10-python.tar.gz").exists()


def test_cifar10_real_url_offline_fails_fast(cache_dir: Path, layout: CacheLayout) -> None:
    """On a machine without internet the real URL fails quickly too (DNS or connect error)."""
    t0 = time.perf_counter()
    try:
        load_dataset("cifar10", layout)
    except DataSourceError as err:
        assert "local copy" in str(err) or "--source" in str(err)
    else:  # pragma: no cover - only with internet
        pytest.skip("network available: downloaded for real")
    assert time.perf_counter() - t0 < cifar.DOWNLOAD_TIMEOUT_S + 5


def test_download_with_bad_checksum_keeps_nothing(
    tmp_path: Path, cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    bogus = tmp_path / "served.tar.gz"
    bogus.write_bytes(b"not cifar at all")
    monkeypatch.setenv("TLX_CIFAR10_URL", bogus.as_uri())
    with pytest.raises(DataSourceError, match="MD5"):
        cifar.download_cifar10(layout.cifar_download())
    assert not list((cache_dir / "downloads").iterdir())


def test_full_disk_while_converting_leaves_no_dataset(
    data_assets: dict[str, Path], cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    real_save = np.save

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full_disk)
    with pytest.raises(CacheWriteError, match="Disk full"):
        load_dataset(str(data_assets["cifar_tar"]), layout)
    monkeypatch.setattr(np, "save", real_save)
    assert not [p for p in (cache_dir / "datasets").iterdir()]
    assert load_dataset(str(data_assets["cifar_tar"]), layout).size("train") == 60


def test_concurrent_conversions_both_succeed(
    data_assets: dict[str, Path], cache_dir: Path, layout: CacheLayout
) -> None:
    """Two sessions converting the same source at once: both get a valid dataset, one folder remains."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: load_dataset(str(data_assets["folder"]), layout), range(2)))
    assert all(r.size("train") == 24 for r in results)
    assert len([p for p in (cache_dir / "datasets").iterdir() if not p.name.startswith(".")]) == 1


def test_subset_indices_takes_first_n_per_class() -> None:
    labels = np.array([0, 1, 0, 1, 0, 2])
    np.testing.assert_array_equal(subset_indices(labels, 2), [0, 1, 2, 3, 5])
    np.testing.assert_array_equal(subset_indices(labels, None), np.arange(6))


def test_storage_side_is_the_median_over_images_not_over_distinct_sizes() -> None:
    sizes = [(32, 32)] * 9 + [(64, 64), (48, 40)]
    assert storage_side(sizes) == 32  # the old median over the distinct sizes {32, 48, 64} gave 48
    assert storage_side([(20, 20)] * 3) == 20
    assert storage_side([(1000, 800)] * 3) == 224  # capped


def test_absurdly_long_source_is_a_clear_error(cache_dir: Path, layout: CacheLayout) -> None:
    with pytest.raises(DataSourceError, match="characters long"):
        load_dataset("x" * 5000, layout)
    with pytest.raises(DataSourceError, match="neither 'cifar10' nor an existing path"):
        load_dataset("/" + "a" * 300 + "/b", layout)  # a component too long for the file system
