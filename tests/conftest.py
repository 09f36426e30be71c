"""Shared pytest fixtures: tiny data and models made once per session, plus paths to ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tests import fixtures

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TLX_SHARED_DIR", ROOT.parent / "shared"))
SHARED_DATA = SHARED / "data" / "cifar10-jpeg.tar.gz"
SHARED_MODEL = SHARED / "models" / "mobilenet_v1_100_224_feature_vector"
SHARED_TFLITE = SHARED / "models" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``shared`` tests only where ../shared is absent (it is present in CI)."""
    if SHARED_DATA.exists() and SHARED_MODEL.exists():
        return
    skip = pytest.mark.skip(reason=f"real assets not found under {SHARED}")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny datasets and models, built once for the whole test session."""
    root = tmp_path_factory.mktemp("assets")
    return {
        "cifar_tar": fixtures.make_cifar_tar(root / "cifar-10-python.tar.gz"),
        "folder": fixtures.make_image_folder(root / "imgs"),
        "savedmodel": fixtures.make_feature_savedmodel(root / "tiny_fv_32"),
        "tflite": fixtures.make_tflite(root / "tiny_32.tflite"),
    }


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A fresh, empty artifact folder."""
    path = tmp_path / "cache"
    path.mkdir()
    return path
