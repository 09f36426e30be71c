"""Run registry and the train pipeline on tiny fixtures: save, list, load, label, delete, atomicity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lib.errors import ConfigError, RunError
from lib.models.heads import HeadConfig
from lib.pipeline.training import RunRequest, train_run
from lib.runs import registry as runs
from lib.runs.manifest import RunManifest
from lib.store.layout import CacheLayout

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def _trained(assets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunManifest]:
    """One run trained once for the module; each test gets its own copy of that cache (the tests damage and delete)."""
    cache = tmp_path_factory.mktemp("trained_run")
    req = RunRequest(
        str(assets["cifar_tar"]),
        str(assets["savedmodel"]),
        HeadConfig(head="linear", epochs=40, batch_size=16, learning_rate=1e-2, val_fraction=0.2),
        image_sizes=(32,),
        train_views=("original", "flip"),
        tta=True,
    )
    return cache, train_run(req, CacheLayout(cache))


@pytest.fixture
def run_manifest(_trained: tuple[Path, RunManifest], cache_dir: Path) -> RunManifest:
    shutil.copytree(_trained[0], cache_dir, dirs_exist_ok=True)
    return _trained[1]


def test_train_run_registers_a_complete_run(
    run_manifest: RunManifest, cache_dir: Path, layout: CacheLayout, assets: dict[str, Path]
) -> None:
    listed = runs.list_runs(layout)
    assert [m.run_id for m in listed] == [run_manifest.run_id]
    run = runs.load_run(layout, run_manifest.run_id)
    m = run.manifest
    assert (
        m.source == str(assets["cifar_tar"])
        and m.image_sizes == [32]
        and m.head.seed == 0
        and m.history
        and m.versions["numpy"]
    )
    assert m.created and m.timings["train_seconds"] > 0 and m.schema == 2
    assert m.train_rows == 2 * 48 and m.val_rows == 12  # both views of the 80% kept for training
    assert run.probs.shape == (30, 10) and run.y_true.shape == (30,)
    np.testing.assert_allclose(run.probs.sum(1), 1, rtol=1e-5)
    assert m.metrics.test_accuracy == float((run.y_pred == run.y_true).mean())
    # The synthetic classes are easy: a working pipeline beats chance (10%) by far.
    assert m.metrics.test_accuracy > 0.5


def test_same_request_same_predictions(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout, run_manifest: RunManifest
) -> None:
    req = RunRequest(
        str(assets["cifar_tar"]),
        str(assets["savedmodel"]),
        HeadConfig(head="linear", epochs=40, batch_size=16, learning_rate=1e-2, val_fraction=0.2),
        image_sizes=(32,),
        train_views=("original", "flip"),
        tta=True,
    )
    again = train_run(req, layout)
    a, b = runs.load_run(layout, run_manifest.run_id), runs.load_run(layout, again.run_id)
    np.testing.assert_array_equal(a.probs, b.probs)
    assert again.timings["feature_cache_hits"] == again.timings["feature_artifacts"]


def test_label_and_delete(run_manifest: RunManifest, cache_dir: Path, layout: CacheLayout) -> None:
    rid = run_manifest.run_id
    runs.set_label(layout, rid, "first try")
    assert runs.list_runs(layout)[0].label == "first try"
    assert runs.display_name(runs.read_manifest(layout, rid)).startswith("first try (")
    runs.delete_run(layout, rid)
    assert runs.list_runs(layout) == []
    with pytest.raises(RunError, match="not found"):
        runs.load_run(layout, rid)
    with pytest.raises(RunError, match="not a run id"):
        runs.load_run(layout, "../../etc")


@pytest.mark.parametrize("name", ["head.npz", "predictions.npz"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_run_files_are_listed_as_damaged(
    run_manifest: RunManifest, cache_dir: Path, layout: CacheLayout, name: str, damage: str
) -> None:
    path = layout.run_dir(run_manifest.run_id) / name
    path.write_bytes(b"broken" if damage == "garbage" else path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(RunError, match="damaged"):
        runs.load_run(layout, run_manifest.run_id)
    assert runs.list_runs(layout) == []
    assert [rid for rid, _ in runs.list_damaged_runs(layout)] == [run_manifest.run_id]
    runs.delete_run(layout, run_manifest.run_id)
    assert runs.list_damaged_runs(layout) == []


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.pop("metrics"),
        lambda m: m.pop("classes"),
        lambda m: m.update(head={"head": "linear", "surprise": 1}),
        lambda m: m.update(image_sizes="128"),
        lambda m: m["metrics"].update(test_accuracy="high"),
    ],
)
def test_manifest_that_parses_but_lacks_keys_is_damaged(
    run_manifest: RunManifest, cache_dir: Path, layout: CacheLayout, edit: Callable[[dict], object]
) -> None:
    path = layout.run_dir(run_manifest.run_id) / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    assert runs.list_runs(layout) == []
    ((rid, reason),) = runs.list_damaged_runs(layout)
    assert rid == run_manifest.run_id and "damaged" in reason
    with pytest.raises(RunError, match="damaged"):
        runs.load_run(layout, rid)


def test_manifest_that_is_not_an_object_is_damaged(
    run_manifest: RunManifest, cache_dir: Path, layout: CacheLayout
) -> None:
    (layout.run_dir(run_manifest.run_id) / "manifest.json").write_text("[1, 2, 3]")
    with pytest.raises(RunError, match="damaged"):
        runs.read_manifest(layout, run_manifest.run_id)


def test_predictions_that_do_not_fit_the_classes_are_damaged(
    run_manifest: RunManifest, cache_dir: Path, layout: CacheLayout
) -> None:
    path = layout.run_dir(run_manifest.run_id) / "predictions.npz"
    with np.load(path) as pred:
        arrays = dict(pred)
    arrays["probs"] = arrays["probs"][:, :3]
    np.savez(path, **arrays)
    with pytest.raises(RunError, match="damaged"):
        runs.load_run(layout, run_manifest.run_id)


def test_exception_mid_save_leaves_no_run(
    run_manifest: RunManifest, cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = runs.load_run(layout, run_manifest.run_id)
    calls = {"n": 0}
    real = np.savez

    def failing(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real(*args, **kwargs)

    monkeypatch.setattr(np, "savez", failing)
    with pytest.raises(Exception, match="Disk full"):
        runs.save_run(
            layout, run.manifest, run.head, {"y_true": run.y_true, "probs": run.probs, "indices": run.indices}
        )
    assert len(runs.list_runs(layout)) == 1
    assert not [p for p in layout.runs.iterdir() if p.name.startswith(".")]


def test_process_killed_mid_save_leaves_no_listed_run(
    run_manifest: RunManifest, cache_dir: Path, layout: CacheLayout
) -> None:
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from lib.runs import registry as runs
        from lib.store.layout import CacheLayout
        layout = CacheLayout({str(cache_dir)!r})
        run = runs.load_run(layout, {run_manifest.run_id!r})
        real = np.savez
        def dying(path, **arrays):
            if "probs" in arrays:
                real(path, y_true=arrays["y_true"])   # half the file set is on disk
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, **arrays)
        np.savez = dying
        runs.save_run(layout, run.manifest, run.head, {{"y_true": run.y_true, "probs": run.probs, "indices":
        run.indices}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=120)
    assert proc.returncode == -9
    assert [m.run_id for m in runs.list_runs(layout)] == [run_manifest.run_id]


def test_multiscale_concatenates_feature_sizes(assets: dict[str, Path], cache_dir: Path, layout: CacheLayout) -> None:
    req = RunRequest(
        str(assets["cifar_tar"]),
        str(assets["savedmodel"]),
        HeadConfig(head="mlp", hidden=8, epochs=2, val_fraction=0.1),
        image_sizes=(32, 48),
    )
    manifest = train_run(req, layout)
    run = runs.load_run(layout, manifest.run_id)
    assert run.head.weights[0].shape == (32, 8)  # 16 features per size, two sizes
    assert manifest.image_sizes == [32, 48]


def test_blog_protocol_preset(assets: dict[str, Path], cache_dir: Path, layout: CacheLayout) -> None:
    req = RunRequest.from_protocol("blog", str(assets["cifar_tar"]), str(assets["savedmodel"]))
    manifest = train_run(req, layout)
    assert manifest.protocol == "blog" and manifest.head.head == "linear" and manifest.image_sizes == [128]
    assert manifest.steps >= 1000


def test_unknown_protocol_and_bad_settings_are_user_errors(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout
) -> None:
    with pytest.raises(ConfigError, match="Unknown protocol"):
        RunRequest.from_protocol("fastest", str(assets["cifar_tar"]), str(assets["savedmodel"]))
    with pytest.raises(ConfigError, match="dropout"):
        train_run(RunRequest(str(assets["cifar_tar"]), str(assets["savedmodel"]), HeadConfig(dropout=1.5)), layout)
    with pytest.raises(ConfigError, match=r"[Ii]nput size"):
        train_run(RunRequest(str(assets["cifar_tar"]), str(assets["savedmodel"]), image_sizes=(0,)), layout)


def test_best_ensemble_preset_names_its_own_backbones(assets: dict[str, Path]) -> None:
    """Without a backbone, the preset resolves its backbones (one part per backbone, each at its sizes, in order); a
    backbone given by the user wins."""
    req = RunRequest.from_protocol("best-ensemble", str(assets["cifar_tar"]), None)
    names = [req.backbone.rstrip("/").split("/")[-1], *(b.rstrip("/").split("/")[-1] for b, _s in req.more_backbones)]
    assert [n.removesuffix("_feature_vector") for n in names] == [
        "mobilenet_v1_100_224",
        "efficientnet_lite0_224",
        "mobilenet_v2_100_224",
    ]
    assert req.image_sizes == (128, 224) and [s for _b, s in req.more_backbones] == [(224,), (224,)]
    assert req.train_views == ("original", "flip") and req.tta
    own = RunRequest.from_protocol("best-ensemble", str(assets["cifar_tar"]), str(assets["savedmodel"]))
    assert own.backbone == str(assets["savedmodel"]) and not own.more_backbones
