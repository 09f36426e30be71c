"""Run registry and the train pipeline on tiny fixtures: save, list, load, label, delete, atomicity."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lib import runs
from lib.errors import RunError
from lib.heads import HeadConfig
from lib.pipeline import RunRequest, train_run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_manifest(assets: dict[str, Path], cache_dir: Path) -> dict:
    req = RunRequest(str(assets["cifar_tar"]), str(assets["savedmodel"]), HeadConfig(head="linear", epochs=40, batch_size=16, learning_rate=1e-2, val_fraction=0.2),
                     image_sizes=(32,), train_views=("original", "flip"), tta=True)  # fmt: skip
    return train_run(req, cache_dir)


def test_train_run_registers_a_complete_run(run_manifest: dict, cache_dir: Path) -> None:
    listed = runs.list_runs(cache_dir)
    assert [m["run_id"] for m in listed] == [run_manifest["run_id"]]
    run = runs.load_run(cache_dir, run_manifest["run_id"])
    m = run.manifest
    for key in ("source", "dataset_fingerprint", "backbone", "image_sizes", "head", "seed", "history", "metrics", "timings", "versions", "created"):
        assert key in m, key
    assert m["train_rows"] == 2 * 48 and m["val_rows"] == 12  # both views of the 80% kept for training
    assert run.probs.shape == (30, 10) and run.y_true.shape == (30,)
    np.testing.assert_allclose(run.probs.sum(1), 1, rtol=1e-5)
    assert 0.0 <= m["metrics"]["test_accuracy"] <= 1.0
    assert m["metrics"]["test_accuracy"] == float((run.y_pred == run.y_true).mean())
    # The synthetic classes are easy: a working pipeline beats chance (10%) by far.
    assert m["metrics"]["test_accuracy"] > 0.5


def test_same_request_same_predictions(assets: dict[str, Path], cache_dir: Path, run_manifest: dict) -> None:
    req = RunRequest(str(assets["cifar_tar"]), str(assets["savedmodel"]), HeadConfig(head="linear", epochs=40, batch_size=16, learning_rate=1e-2, val_fraction=0.2),
                     image_sizes=(32,), train_views=("original", "flip"), tta=True)  # fmt: skip
    again = train_run(req, cache_dir)
    a, b = runs.load_run(cache_dir, run_manifest["run_id"]), runs.load_run(cache_dir, again["run_id"])
    np.testing.assert_array_equal(a.probs, b.probs)
    assert again["timings"]["feature_cache_hits"] == again["timings"]["feature_artifacts"]


def test_label_and_delete(run_manifest: dict, cache_dir: Path) -> None:
    rid = run_manifest["run_id"]
    runs.set_label(cache_dir, rid, "first try")
    assert runs.list_runs(cache_dir)[0]["label"] == "first try"
    assert runs.display_name(runs.read_manifest(cache_dir, rid)).startswith("first try (")
    runs.delete_run(cache_dir, rid)
    assert runs.list_runs(cache_dir) == []
    with pytest.raises(RunError, match="not found"):
        runs.load_run(cache_dir, rid)
    with pytest.raises(RunError, match="not a run id"):
        runs.load_run(cache_dir, "../../etc")


def test_damaged_run_is_a_clear_error(run_manifest: dict, cache_dir: Path) -> None:
    path = runs.runs_dir(cache_dir) / run_manifest["run_id"] / "predictions.npz"
    path.write_bytes(b"broken")
    with pytest.raises(RunError, match="damaged"):
        runs.load_run(cache_dir, run_manifest["run_id"])


def test_exception_mid_save_leaves_no_run(run_manifest: dict, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = runs.load_run(cache_dir, run_manifest["run_id"])
    calls = {"n": 0}
    real = np.savez

    def failing(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real(*args, **kwargs)

    monkeypatch.setattr(np, "savez", failing)
    with pytest.raises(Exception, match="Disk full"):
        runs.save_run(cache_dir, run.manifest, run.head, {"y_true": run.y_true, "probs": run.probs, "indices": run.indices})
    assert len(runs.list_runs(cache_dir)) == 1
    assert not [p for p in runs.runs_dir(cache_dir).iterdir() if p.name.startswith(".")]


def test_process_killed_mid_save_leaves_no_listed_run(run_manifest: dict, cache_dir: Path) -> None:
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from lib import runs
        run = runs.load_run({str(cache_dir)!r}, {run_manifest["run_id"]!r})
        real = np.savez
        def dying(path, **arrays):
            if "probs" in arrays:
                real(path, y_true=arrays["y_true"])   # half the file set is on disk
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, **arrays)
        np.savez = dying
        runs.save_run({str(cache_dir)!r}, run.manifest, run.head, {{"y_true": run.y_true, "probs": run.probs, "indices": run.indices}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=120)
    assert proc.returncode == -9
    assert [m["run_id"] for m in runs.list_runs(cache_dir)] == [run_manifest["run_id"]]


def test_multiscale_concatenates_feature_sizes(assets: dict[str, Path], cache_dir: Path) -> None:
    req = RunRequest(str(assets["cifar_tar"]), str(assets["savedmodel"]), HeadConfig(head="mlp", hidden=8, epochs=2, val_fraction=0.1),
                     image_sizes=(32, 48))  # fmt: skip
    manifest = train_run(req, cache_dir)
    run = runs.load_run(cache_dir, manifest["run_id"])
    assert run.head.weights[0].shape == (32, 8)  # 16 features per size, two sizes
    assert manifest["image_sizes"] == [32, 48]


def test_blog_protocol_preset(assets: dict[str, Path], cache_dir: Path) -> None:
    req = RunRequest.from_protocol("blog", str(assets["cifar_tar"]), str(assets["savedmodel"]))
    manifest = train_run(req, cache_dir)
    assert manifest["protocol"] == "blog" and manifest["head"]["head"] == "linear" and manifest["image_sizes"] == [128]
    assert manifest["steps"] >= 1000
