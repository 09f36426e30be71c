"""Fixtures of the app lane: one cache with the tiny dataset, its features and a trained run, shared by every page's
tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lib.models.heads import HeadConfig
from lib.pipeline.training import RunRequest, train_run
from lib.store.layout import CacheLayout


@pytest.fixture(autouse=True)
def _jobs_in_process() -> Any:
    """A page's background job runs in this process (the runner and each job as threads, calling the CLI's main): the
    pages' tests look at what a job leaves, not at its process, and a job's process would import TensorFlow again for
    each job. Real processes (outliving the server, kill -9, cancel by signal) are tested in tests/tf/test_jobs.py and
    tests/browser/test_jobs.py. Per test, not per session: an xdist worker runs other lanes' tests after this one."""
    from lib.cli.main import main
    from lib.jobs import queue

    queue.run_jobs_in_process(main)
    yield
    queue.run_jobs_in_process(None)


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
    manifest = train_run(req, CacheLayout(cache))
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
