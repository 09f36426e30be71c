"""Fixtures of the app lane: one cache with the tiny dataset, its features and a trained run, shared by every page's
tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lib.models.heads import HeadConfig
from lib.pipeline.training import RunRequest, train_run


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, assets: dict[str, Path]) -> dict[str, str]:
    """A cache holding the tiny dataset, its features and one trained run."""
    cache = tmp_path_factory.mktemp("app_cache")
    req = RunRequest(
        str(assets["cifar_tar"]),
        str(assets["savedmodel"]),
        HeadConfig(head="mlp", hidden=32, epochs=30, batch_size=16, learning_rate=3e-3, dropout=0.0),
        image_sizes=(32,),
        train_views=("original", "flip"),
        tta=True,
    )
    manifest = train_run(req, cache)
    return {
        "cache": str(cache),
        "source": str(assets["cifar_tar"]),
        "backbone": str(assets["savedmodel"]),
        "run": manifest.run_id,
    }


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Demo mode for one test; the read-only mark app.py puts on the cache is lifted afterwards."""
    from lib.store import atomic

    monkeypatch.setenv("TLX_DEMO", "1")
    yield
    atomic.set_read_only(None)
