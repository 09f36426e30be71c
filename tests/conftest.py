"""Shared pytest fixtures: tiny data and models made once per session, plus paths to ../shared."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Users get --runtime auto by default; the suite pins tf so its features, keys and timings do not depend on which
# runtime this machine finds faster (the auto tests ask for auto explicitly, and test_default_runtime checks the
# default itself).
os.environ.setdefault("TLX_RUNTIME", "tf")
from lib.process import configure_process
from lib.store.layout import CacheLayout

# What the CLI and app.py do at start-up, so tests see the same process settings (deterministic ops, legacy Keras for
# TF Hub).
TEST_CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "tlx-test-cache"  # what outlives one test run on this machine
configure_process(TEST_CACHE / "tfhub")

from tests import fixtures  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TLX_SHARED_DIR", ROOT.parent / "shared"))
SHARED_DATA = SHARED / "data" / "cifar10-jpeg.tar.gz"
SHARED_MODEL = SHARED / "models" / "mobilenet_v1_100_224_feature_vector"
SHARED_SMALL_MODEL = SHARED / "models" / "mobilenet_v1_025_128_dequant_feature_vector"  # the fastest real backbone
FULL_MAP_SIZE = 32  # the browser lane's full-dataset map: CIFAR-10's own size (a quarter of 64 px's arithmetic)
SHARED_TFLITE = SHARED / "models" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"


# Every test runs in the lane of its folder: tests/unit (no TensorFlow, under 30 s; `pytest -m unit`), tests/tf,
# tests/app (AppTest, one file per page), tests/browser (a real server in Chromium) and tests/ray (Ray instances, a
# two-node cluster).
LANES = ("unit", "tf", "app", "browser", "ray")
# Run first: the test whose setup converts the shared CIFAR-10 copy for this machine (about 25 s, under a lock; see
# shared_cifar). First, it converts while the other xdist worker runs tests that do not need the copy; in collection
# order, both workers reached the browser lane together and one waited on the lock with its core idle.
FIRST = ("tests/browser/test_browser.py::test_every_page_train_and_click_confusion_cell",)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group mark added here (it was ignored)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its folder's lane, skip ``shared`` tests only where ../shared is absent (it is present in
    CI), and put :data:`FIRST` first."""
    have_shared = SHARED_DATA.exists() and SHARED_MODEL.exists()
    for item in items:
        lane = Path(str(item.fspath)).parent.name
        if lane not in LANES:
            raise pytest.UsageError(f"{item.fspath} is in no lane folder: put it in tests/<{'|'.join(LANES)}>/")
        item.add_marker(getattr(pytest.mark, lane))
        if lane == "ray":  # one Ray instance or cluster at a time: the lane runs on one xdist worker, in order
            item.add_marker(pytest.mark.xdist_group("ray"))
        if "shared" in item.keywords and not have_shared:
            item.add_marker(pytest.mark.skip(reason=f"real assets not found under {SHARED}"))
    items.sort(key=lambda item: item.nodeid not in FIRST)  # stable: the rest keep their order


@pytest.fixture(scope="session")
def data_assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny datasets (no TensorFlow needed), built once for the whole test session."""
    root = tmp_path_factory.mktemp("data_assets")
    return {
        "cifar_tar": fixtures.make_cifar_tar(root / "cifar-10-python.tar.gz"),
        "folder": fixtures.make_image_folder(root / "imgs"),
    }


@pytest.fixture(scope="session")
def assets(data_assets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny datasets and models (TensorFlow), built once for the whole test session."""
    root = tmp_path_factory.mktemp("model_assets")
    return {
        **data_assets,
        "savedmodel": fixtures.make_feature_savedmodel(root / "tiny_fv_32"),
        "tflite": fixtures.make_tflite(root / "tiny_32.tflite"),
    }


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A fresh, empty artifact folder."""
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture
def layout(cache_dir: Path) -> CacheLayout:
    """The layout of ``cache_dir``: what a test hands to lib, as the CLI, the app and the job runner do."""
    return CacheLayout(cache_dir)


@pytest.fixture(scope="session", autouse=True)
def _unit_lane_stays_without_tensorflow(request: pytest.FixtureRequest) -> Any:
    """The unit lane promises no TensorFlow: with ``-m unit`` a session that pulled it in errors (in every xdist
    worker, where the tests run)."""
    import sys

    yield
    if request.config.option.markexpr == "unit":
        assert "tensorflow" not in sys.modules, "the unit lane imported TensorFlow"


@pytest.fixture(scope="session")
def shared_cifar() -> Any:
    """``fresh(path)``: a new cache at ``path`` holding the shared CIFAR-10 copy already converted (converted once per
    machine, then hard-linked: tests about something else do not each spend 30 s decoding 60,000 JPEGs)."""
    from lib.data.sources import load_dataset

    if not SHARED_DATA.exists():
        pytest.skip(f"real assets not found under {SHARED}")
    # One conversion for this machine's test runs, whichever xdist worker of whichever run gets there first (the others
    # wait on the lock; .ci/run's second pytest, the Ray lane, finds it done). A changed archive is another folder.
    stat = SHARED_DATA.stat()
    root = TEST_CACHE / f"shared_cifar-{stat.st_size}-{stat.st_mtime_ns}"
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base = CacheLayout(root / "cache")
        load_dataset(str(SHARED_DATA), base)

    def fresh(path: Path, full_map: bool = False, small_model_runtime: bool = False, data: bool = True) -> Path:
        """``path`` with the converted copy (linked once; not with ``data=False``); with ``full_map``, also the full
        map's features (asked by the tests that need them, so a worker that needs only the conversion does not wait for
        them); with ``small_model_runtime``, the smallest backbone's runtime choice and LiteRT model at 128 px."""
        target = CacheLayout(path)
        if data and not target.datasets.exists():
            # Converted arrays are never written in place (a new version is a new folder), so links are safe to share.
            shutil.copytree(base.datasets, target.datasets, copy_function=_link_or_copy)
        if full_map:
            _link_full_map(root, base, target)
        if small_model_runtime:
            _link_small_model_runtime(root, base, target)
        return path

    return fresh


def _link_full_map(root: Path, base: CacheLayout, target: CacheLayout) -> None:
    """The features of all 60,000 shared images (MobileNet v1 0.25 at 32 px, the browser lane's full map and demo
    bundle) and their PCA map, made once per machine like the conversion and hard-linked into ``target``: two browser
    tests on two workers each extracted them (about 40 s). Artifacts are replaced, never written in place."""
    from lib.analysis.full_map import compute_full_map

    with (root / ".map-lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        compute_full_map(str(SHARED_DATA), str(SHARED_SMALL_MODEL), FULL_MAP_SIZE, base, "pca")
    _link_folders(base, target, (base.features, base.projections))


def _link_small_model_runtime(root: Path, base: CacheLayout, target: CacheLayout) -> None:
    """``--runtime auto``'s timing of tf and litert for MobileNet v1 0.25 at 128 px on this machine, and its LiteRT
    model, made once per machine and hard-linked into ``target``: the browser lane's first job on each fresh cache
    loaded the SavedModel in TensorFlow and converted it (about 10 CPU-s) only to learn what the last test learned.
    What ``auto`` does without a choice on record is tested in tests/tf (test_runtimes.py)."""
    from lib.data.sources import load_dataset
    from lib.models.specs import resolve_backbone
    from lib.runtimes.auto import AUTO, resolve

    with (root / ".runtime-lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ds = load_dataset(str(SHARED_DATA), base)
        _choice, figures = resolve(AUTO, resolve_backbone(str(SHARED_SMALL_MODEL)), 128, ds, base, 1_000)
        # Timing both runtimes converts the model into the cache, whichever wins.
        assert figures is not None and any(base.converted_models.glob("*.tflite")), figures
    _link_folders(base, target, (base.runtime_choices, base.converted_models))


def _link_folders(base: CacheLayout, target: CacheLayout, folders: tuple[Path, ...]) -> None:
    """Each of ``base``'s ``folders`` hard-linked into the same place under ``target`` (files already there kept)."""
    for folder in folders:
        shutil.copytree(
            folder, target.root / folder.relative_to(base.root), copy_function=_link_new, dirs_exist_ok=True
        )


def _link_new(src: str, dst: str) -> None:
    """:func:`_link_or_copy`, unless ``dst`` is already there (linked by an earlier test of the same cache)."""
    if not os.path.exists(dst):
        _link_or_copy(src, dst)


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link, or a copy where the two folders are on different file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
