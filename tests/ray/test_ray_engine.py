"""The Ray engine: the same features as the local engine, resumable, surviving a dead worker, failing fast on a bad
address, and on a real two-node cluster (head and worker started with `ray start`, as an operator would)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "ray", reason="the Ray engine's tests need `pip install -r requirements-scale.txt` (CI installs it)"
)

from lib.data.sources import load_dataset
from lib.errors import BackboneError
from lib.pipeline import feature_store
from lib.pipeline.features import ensure_features, load_cached_features
from lib.pipeline.ray_engine import RayEngine, RayOptions
from lib.runtimes.backbones import resolve_backbone
from lib.store.atomic import read_json
from lib.store.layout import CacheLayout
from tests.conftest import SHARED_DATA, SHARED_SMALL_MODEL
from tests.fixtures import cli, get_features
from tests.streamlit_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def ray_get_features(ds: object, split: str, spec: object, cache: Path, size: int, options: RayOptions) -> tuple:
    """One artifact through the one door on a Ray engine of its own; the features and what Ray did."""
    with RayEngine(options, CacheLayout(cache)) as engine:
        return ensure_features(ds, split, spec, CacheLayout(cache), size, engine=engine), engine.last_stats


TOL = 1e-5


class StopError(Exception):
    """Raised from a progress callback: the extraction is interrupted there."""


@pytest.fixture(autouse=True)
def own_ray_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Each test starts from no Ray token settings, with a HOME of its own (to see that Ray writes nothing there)."""
    for name in (
        "RAY_AUTH_TOKEN_PATH",
        "RAY_AUTH_TOKEN",
        "RAY_AUTH_MODE",
        "TLX_RAY_LOCAL_TOKEN",
        "TLX_RAY_TEST_DIE_AT",
        "TLX_RAY_TEST_DIE_MARKER",
    ):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoint chunks of 32 rows (the driver's), so the 60 training images span two chunks."""
    monkeypatch.setattr(feature_store, "CHUNK", 32)


def _local(assets: dict[str, Path], cache: Path, split: str = "train") -> np.ndarray:
    ds = load_dataset(str(assets["cifar_tar"]), CacheLayout(cache))
    return np.asarray(
        get_features(ds, split, resolve_backbone(str(assets["savedmodel"])), cache, image_size=32).features
    )


def _manifest(cache: Path, key: str) -> dict:
    """What two engines' manifests must share: everything but timings and the checksum of the bytes. The engines run
    other batch compositions, and float results differ in the last bits between batch shapes on some CPUs (an AMD
    EPYC Zen 3 gave another crc32 with features within 1e-6), so the features are compared within a tolerance."""
    raw = read_json(CacheLayout(cache).feature_files(key)[1])
    return {k: v for k, v in raw.items() if k not in ("extract_seconds", "created", "key", "crc32")}


def test_ray_features_equal_the_local_engines(
    assets: dict[str, Path], tmp_path: Path, small_chunks: None, own_ray_env: Path
) -> None:
    """Two local Ray workers make the same artifact, key and manifest as the local engine (features within 1e-5)."""
    local_cache, ray_cache = tmp_path / "local", tmp_path / "ray"
    expected = _local(assets, local_cache)
    ds = load_dataset(str(assets["cifar_tar"]), CacheLayout(ray_cache))
    spec = resolve_backbone(str(assets["savedmodel"]))
    result, stats = ray_get_features(
        ds, "train", spec, ray_cache, 32, options=RayOptions(workers=2, shard=8, object_store_mb=128)
    )
    np.testing.assert_allclose(np.asarray(result.features), expected, atol=TOL, rtol=0)
    assert stats.workers == 2 and stats.images == 60 and sum(stats.images_per_node.values()) == 60
    key = result.path.stem
    assert (local_cache / "features" / f"{key}.npy").exists()  # the same cache key on both engines
    assert _manifest(ray_cache, key) == _manifest(local_cache, key)  # all but the checksum (see _manifest)
    assert load_cached_features(CacheLayout(ray_cache), key) is not None and not list(
        (ray_cache / "features").glob("*.partial")
    )
    # Ray's session files and token go to <cache>/ray (or, for a path too long for its sockets, a short one under /tmp),
    # never ~/.ray.
    assert (Path(stats.temp_dir) / "auth_token").exists() and not (own_ray_env / ".ray").exists()
    again, stats = ray_get_features(ds, "train", spec, ray_cache, 32, options=RayOptions(workers=2))
    assert again.cache_hit and stats.workers == 0  # a cache hit never starts Ray


def test_one_engine_serves_two_runtimes_in_turn(assets: dict[str, Path], tmp_path: Path) -> None:
    """One RayEngine makes LiteRT features (the driver converts the model once and sends it to the workers as bytes),
    then TensorFlow features: the second set of workers starts after the first stops (both would not fit the 2 CPUs)."""
    local_cache, ray_cache = tmp_path / "local", tmp_path / "ray"
    spec = resolve_backbone(str(assets["savedmodel"]))
    local_ds = load_dataset(str(assets["cifar_tar"]), CacheLayout(local_cache))
    expected = {
        rt: np.asarray(get_features(local_ds, "test", spec, local_cache, 32, runtime=rt).features)
        for rt in ("litert", "tf")
    }
    ray_layout = CacheLayout(ray_cache)
    ds = load_dataset(str(assets["cifar_tar"]), ray_layout)
    with RayEngine(RayOptions(workers=2, shard=8, object_store_mb=128), ray_layout) as engine:
        for runtime in ("litert", "tf"):
            result = ensure_features(ds, "test", spec, ray_layout, 32, runtime=runtime, engine=engine)
            stats = engine.last_stats
            assert stats.workers == 2 and stats.images == 30, runtime
            np.testing.assert_allclose(np.asarray(result.features), expected[runtime], atol=TOL, rtol=0)
            assert (local_cache / "features" / result.path.name).exists(), runtime  # the same key as the local engine's


def test_dead_workers_stop_cleanly_then_resume_on_the_survivors(
    assets: dict[str, Path], tmp_path: Path, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The only worker dies mid-job: a clear error, only whole chunks kept, no feature file. The next run resumes from
    the
    saved chunk, one of its two workers dies too, and the other finishes the job with the same features as the local
    engine."""
    expected = _local(assets, tmp_path / "local")
    cache = tmp_path / "ray"
    ds = load_dataset(str(assets["cifar_tar"]), CacheLayout(cache))
    spec = resolve_backbone(str(assets["savedmodel"]))
    monkeypatch.setenv("TLX_RAY_TEST_DIE_AT", "40")  # the second chunk's second shard
    with pytest.raises(BackboneError, match=r"Every Ray worker died.*resume"):
        ray_get_features(ds, "train", spec, cache, 32, options=RayOptions(workers=1, shard=8, object_store_mb=128))
    (partial,) = (cache / "features").glob("*.partial")
    assert sorted(p.name for p in partial.glob("chunk_*.npy")) == ["chunk_00000000.npy"]
    assert not list((cache / "features").glob("*.npy")) and not list((cache / "features").glob("*.json"))

    monkeypatch.setenv(
        "TLX_RAY_TEST_DIE_MARKER", str(tmp_path / "one-death")
    )  # now only the first worker handed row 40 dies
    result, stats = ray_get_features(
        ds, "train", spec, cache, 32, options=RayOptions(workers=2, shard=8, object_store_mb=128)
    )
    assert stats.workers_lost == 1 and (tmp_path / "one-death").exists()
    assert stats.images >= 28 and stats.images < 60  # resumed: the saved chunk's 32 rows were not sent again
    np.testing.assert_allclose(np.asarray(result.features), expected, atol=TOL, rtol=0)


def test_an_address_that_does_not_answer_fails_fast(assets: dict[str, Path], cache_dir: Path) -> None:
    port = free_port()  # a port on this machine that nothing listens on
    t0 = time.perf_counter()
    proc = cli(
        "extract",
        "--source",
        str(assets["cifar_tar"]),
        "--backbone",
        str(assets["savedmodel"]),
        "--image-size",
        "32",
        "--engine",
        "ray",
        "--ray-address",
        f"127.0.0.1:{port}",
        cache=cache_dir,
        ok=False,
    )
    assert time.perf_counter() - t0 < 30
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"No Ray cluster answers at 127.0.0.1:{port}" in proc.stderr and "ray start --head" in proc.stderr
    assert not list((cache_dir / "features").glob("*.npy")) if (cache_dir / "features").exists() else True


def _ray(*args: str, env: dict[str, str], check: bool = True) -> None:
    """Run Ray's own CLI (beside this interpreter, else on PATH)."""
    ray_cli = Path(sys.executable).with_name("ray")
    proc = subprocess.run(
        [str(ray_cli) if ray_cli.exists() else "ray", *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0 or not check, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.shared
def test_two_node_cluster_extracts_on_both_nodes(tmp_path: Path, shared_cifar: Any) -> None:
    """A real two-node Ray cluster on this machine (head with 1 CPU, a second node with 1 CPU, token auth on): `extract
    --engine ray --ray-address` on 1,000 CIFAR-10 test images runs on both nodes and equals the local engine."""
    short = Path("/tmp") / f"tlx-ray-ci-{secrets.token_hex(3)}"  # Ray's socket paths need a short temp dir
    short.mkdir()
    token = short / "token"
    token.write_text(secrets.token_hex(32))
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    port = free_port()
    address = f"127.0.0.1:{port}"
    node = ["--num-cpus", "1", "--object-store-memory", str(100 << 20), "--disable-usage-stats"]
    try:
        _ray("start", "--head", f"--port={port}", "--temp-dir", str(short), "--include-dashboard=false", *node, env=env)
        _ray("start", f"--address={address}", *node, env=env)
        cache = shared_cifar(tmp_path / "cache")  # the archive converted once per test run
        args = [
            "extract",
            "--source",
            str(SHARED_DATA),
            "--backbone",
            str(SHARED_SMALL_MODEL),
            "--image-size",
            "128",
            "--split",
            "test",
            "--limit",
            "100",
            "--engine",
            "ray",
            "--ray-address",
            address,
            "--workers",
            "2",
            "--ray-shard-size",
            "100",
            "--json",
            "--cache-dir",
            str(cache),
        ]
        proc = subprocess.run(
            [sys.executable, "-m", "lib", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout)
        ray_stats = out["artifacts"][0]["ray"]
        assert out["engine"] == "ray" and ray_stats["workers"] == 2 and ray_stats["address"] == address
        assert ray_stats["nodes"] == 2, ray_stats  # both nodes did work
        assert all(n >= 100 for n in ray_stats["images_per_node"].values()) and ray_stats["images"] == 1000
    finally:
        _ray("stop", "--force", env=env, check=False)
    ds = load_dataset(str(SHARED_DATA), CacheLayout(cache))
    local = get_features(ds, "test", resolve_backbone(str(SHARED_SMALL_MODEL)), tmp_path / "local", 128, limit=100)
    ray_feats = np.load(out["cache_path"], mmap_mode="r")
    np.testing.assert_allclose(np.asarray(ray_feats), np.asarray(local.features), atol=TOL, rtol=0)


def test_home_page_extracts_on_ray(assets: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Home, a user picks Ray in "Extraction engine" and prepares what is missing: the background job starts Ray,
    one worker extracts both splits (the job's result says so), and the page then says everything is cached."""
    from streamlit.testing.v1 import AppTest

    from lib.jobs import list_jobs
    from lib.pipeline.features import list_cached_features
    from tests.app.helpers import finish_jobs

    cache = tmp_path / "cache"
    for name, value in (
        ("TLX_SOURCE", str(assets["cifar_tar"])),
        ("TLX_BACKBONE", str(assets["savedmodel"])),
        ("TLX_CACHE_DIR", str(cache)),
        ("TLX_IMAGE_SIZE", "32"),
    ):
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    at.radio(key="home_engine").set_value("Ray").run()
    at.number_input(key="home_ray_workers").set_value(1).run()
    assert at.text_input(key="home_ray_address").value == ""
    (prepare,) = [b for b in at.button if b.label.startswith("Prepare dataset")]
    at = prepare.click().run()
    assert not at.exception, [e.value for e in at.exception]
    finish_jobs(at, cache)
    (job,) = list_jobs(CacheLayout(cache))
    assert job.state == "done" and "--engine=ray" in job.command and job.result["engine"] == "ray", (
        job.state,
        job.error,
    )
    assert all(a["ray"]["workers"] == 1 for a in job.result["artifacts"])
    assert {(m.split, m.view) for m in list_cached_features(CacheLayout(cache))} == {
        ("train", "original"),
        ("test", "original"),
    }
    assert any("Everything for the active data source" in s.value for s in at.success)
