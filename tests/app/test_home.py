"""AppTest of Home: preparing data and features, and what a new or offline user is told."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from lib.data.sources import load_dataset
from lib.store.layout import CacheLayout
from tests.app.helpers import APP, ROOT, finish_jobs, no_errors, plain, start


def test_home_prepares_dataset_and_features(
    monkeypatch: pytest.MonkeyPatch, assets: dict[str, Path], tmp_path: Path
) -> None:
    """A new user opens the app with an empty cache, clicks prepare, and sees the dataset and features cached."""
    env = {"source": str(assets["folder"]), "backbone": str(assets["savedmodel"]), "cache": str(tmp_path / "cache")}
    at = start(monkeypatch, env)
    assert at.metric[0].value == "not prepared"
    at.button[0].click().run()
    no_errors(at)
    finish_jobs(at, env["cache"])
    assert at.metric[0].value == "cached"
    assert at.metric[1].value == "2/2 splits"
    assert at.success, "the page should confirm everything is cached"


def test_home_extracts_with_the_default_runtime_and_reads_features_any_exact_runtime_made(
    monkeypatch: pytest.MonkeyPatch, assets: dict[str, Path], prepared: dict[str, str], tmp_path: Path
) -> None:
    """A newcomer gets the default runtime (auto, timed inside the job, never on the page); features TensorFlow made
    already count under auto, so the Train page's preset does not extract them again."""
    from lib.jobs import cancel_job, list_jobs

    monkeypatch.delenv("TLX_RUNTIME", raising=False)  # the suite pins tf; users get auto
    at = start(monkeypatch, prepared)
    assert at.metric[1].value == "2/2 splits"  # the prepared cache's tf features
    env = {"source": str(assets["folder"]), "backbone": str(assets["savedmodel"]), "cache": str(tmp_path / "cache")}
    at = start(monkeypatch, env)
    at.button[0].click().run()
    no_errors(at)
    (job,) = list_jobs(CacheLayout(env["cache"]))
    assert "--runtime=auto" in job.argv, job.argv
    cancel_job(CacheLayout(env["cache"]), job.id)
    finish_jobs(at, env["cache"])


def test_home_offline_without_local_data_explains_what_to_do(
    monkeypatch: pytest.MonkeyPatch, assets: dict[str, Path], tmp_path: Path
) -> None:
    """A user without network or local data clicks prepare on official CIFAR-10 and is told how to use local paths."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TLX_CIFAR10_URL", f"http://127.0.0.1:{port}/cifar.tar.gz")
    env = {"source": "cifar10", "backbone": str(assets["savedmodel"]), "cache": str(tmp_path / "cache")}
    at = start(monkeypatch, env)
    at.button[0].click().run()
    no_errors(at)
    finish_jobs(at, env["cache"])
    assert any("Could not download CIFAR-10" in plain(e.value) for e in at.error)
    assert any("No network here?" in i.value for i in at.info)


def test_wrong_backbone_path_is_a_message_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]
) -> None:
    """A user types a backbone path that does not exist and sees a clear error on Home."""
    at = start(monkeypatch, {**prepared, "backbone": "/no/such/model"})
    assert any("Unknown backbone" in plain(e.value) for e in at.error)


def test_dataset_is_memory_mapped_for_pages(prepared: dict[str, str]) -> None:
    ds = load_dataset(prepared["source"], CacheLayout(prepared["cache"]))
    assert isinstance(ds.images("train"), np.memmap)


def test_home_does_not_import_tensorflow(prepared: dict[str, str]) -> None:
    """A user opening the app gets the first page without waiting for TensorFlow to load."""
    import os
    import subprocess
    import sys

    code = (
        f"import sys; from streamlit.testing.v1 import AppTest; at = AppTest.from_file({APP!r}, default_timeout=60); "
        "at.run(); assert not at.exception; print('TF' if 'tensorflow' in sys.modules else 'no TF')"
    )
    env = {
        **os.environ,
        "TLX_SOURCE": prepared["source"],
        "TLX_BACKBONE": prepared["backbone"],
        "TLX_CACHE_DIR": prepared["cache"],
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("no TF")
