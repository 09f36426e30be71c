"""The finetune preset (lib/pipeline/finetune_budget.py) on a tiny random MobileNet v1 with Keras layer names: a
schedule fitted to the budget, cached activations, a calibrated run that exports with the same probabilities, a cancel
that keeps a checkpoint and resumes, and clear refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lib.errors import BackboneError
from lib.pipeline.finetune_budget import FINETUNE_PRESETS, BudgetRecipe, budget_finetune_run, cached_activations
from lib.pipeline.training import RunRequest
from lib.runs.registry import list_runs, load_run
from lib.store.layout import CacheLayout
from tests import fixtures
from tests.fixtures import cli


@pytest.fixture(scope="module")
def tiny_mobilenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixtures.make_mobilenet_v1_savedmodel(tmp_path_factory.mktemp("mnv1") / "mobilenet_v1_025_32")


def tiny_recipe(**kw: object) -> BudgetRecipe:
    """The preset at a size and batch the 6-images-a-class fixture fits, a minute's budget and no reserve."""
    base = dict(
        image_size=32,
        batch_size=8,
        budget_minutes=1.0,
        val_images=20,
        warm_images=40,
        warmup_steps=5,
        reserve_seconds=0.0,
    )
    return dataclasses.replace(FINETUNE_PRESETS["finetune"], **{**base, **kw})


def test_the_preset_fits_its_schedule_to_the_budget_and_saves_a_calibrated_run(
    assets: dict[str, Path], tiny_mobilenet: Path, cache_dir: Path, layout: CacheLayout
) -> None:
    import tensorflow as tf

    from lib.data.sources import load_dataset
    from lib.runs.export import export_run

    points, reports, stages = [], [], []
    recipe = tiny_recipe()
    req = RunRequest(str(assets["cifar_tar"]), str(tiny_mobilenet), protocol="finetune")
    manifest = budget_finetune_run(req, layout, recipe, stages.append, points.append, reports.append)
    assert manifest.finetuned and manifest.protocol == "finetune" and manifest.tta and manifest.image_sizes == [32]
    ft = manifest.finetune
    assert ft is not None and ft["steps"] >= 31 and ft["temperature"] > 0 and ft["held_out_images"] == 10
    assert ft["job_minutes"] <= 1.5  # the schedule was fitted to the budget (plus this machine's slack)
    training = [r for r in reports if r.stage.startswith("fine-tuning")]
    assert training and training[-1].steps == ft["steps"] and all(r.images_per_second > 0 for r in training)
    assert any(r.stage.startswith("caching") for r in reports) and points and points[-1].val_accuracy is not None
    assert any(s.startswith("Warm start") for s in stages) and [m.run_id for m in list_runs(layout)] == [
        manifest.run_id
    ]
    assert not (cache_dir / "finetune").exists() or not any((cache_dir / "finetune").iterdir())
    assert len(list((cache_dir / "activations").glob("*.npy"))) == 4  # both views of train and of test
    run = load_run(layout, manifest.run_id)
    assert run.probs.shape == (30, 10) and np.allclose(run.probs.sum(axis=1), 1.0, atol=1e-5)
    # The whole fine-tuned network is stored with the run: it exports and gives the stored (calibrated, TTA)
    # probabilities.
    model = tf.saved_model.load(str(export_run(layout, manifest.run_id, cache_dir / "exported")))
    images = np.asarray(load_dataset(str(assets["cifar_tar"]), layout).images("test"))
    np.testing.assert_allclose(model(images).numpy(), run.probs, atol=2e-3)  # uint8 activations: a 6/255 step


def test_a_cancel_keeps_a_checkpoint_and_the_same_request_resumes(
    assets: dict[str, Path], tiny_mobilenet: Path, cache_dir: Path, layout: CacheLayout
) -> None:
    recipe = tiny_recipe()
    req = RunRequest(str(assets["cifar_tar"]), str(tiny_mobilenet), protocol="finetune")

    def cancel_at_step_40(p: object) -> None:
        if getattr(p, "stage", "").startswith("fine-tuning") and getattr(p, "step", 0) >= 40:
            raise KeyboardInterrupt  # what a job's cancel raises at its next progress report

    with pytest.raises(KeyboardInterrupt):
        budget_finetune_run(req, layout, recipe, on_progress=cancel_at_step_40)
    (folder,) = (cache_dir / "finetune").iterdir()
    assert (folder / "checkpoint").exists() and (folder / "config.json").exists() and not list_runs(layout)
    stages: list[str] = []
    manifest = budget_finetune_run(req, layout, recipe, stages.append)
    assert any(s.startswith("Resuming at step 4") for s in stages), stages
    assert manifest.finetune is not None and manifest.finetune["resumed_from_step"] >= 40


def test_activations_are_cached_once_and_read_back(
    assets: dict[str, Path], tiny_mobilenet: Path, cache_dir: Path
) -> None:
    from lib.data.sources import load_dataset
    from lib.models.specs import resolve_backbone
    from lib.pipeline.finetune_budget import keras_mobilenet_v1, split_model
    from lib.store.layout import CacheLayout

    recipe, layout = tiny_recipe(), CacheLayout(cache_dir)
    ds, spec = load_dataset(str(assets["cifar_tar"]), layout), resolve_backbone(str(tiny_mobilenet))
    prefix, _suffix = split_model(keras_mobilenet_v1(spec, recipe.image_size), recipe.cut)
    first = cached_activations(layout, ds, "test", "original", spec, recipe, prefix)
    assert first.dtype == np.uint8 and first.shape[0] == 30 and not list(layout.activations.glob("*.partial"))
    again = cached_activations(layout, ds, "test", "original", spec, recipe, prefix=None)  # no network: read back
    assert np.array_equal(np.asarray(first), np.asarray(again))


def test_what_cannot_be_fine_tuned_by_the_preset_is_refused_in_one_line(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout
) -> None:
    for backbone, message in ((assets["savedmodel"], "fine-tunes MobileNet v1"), (assets["tflite"], "no trainable")):
        req = RunRequest(str(assets["cifar_tar"]), str(backbone), protocol="finetune")
        with pytest.raises(BackboneError, match=message):
            budget_finetune_run(req, layout, tiny_recipe())
    assert not list_runs(layout)
    proc = cli(
        "train",
        "--source",
        str(assets["cifar_tar"]),
        "--backbone",
        str(assets["tflite"]),
        "--protocol",
        "finetune",
        "--budget-minutes",
        "1",
        cache=cache_dir,
        ok=False,
    )
    assert proc.returncode == 2 and "no trainable variables" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(
        "train",
        "--source",
        str(assets["cifar_tar"]),
        "--backbone",
        str(assets["savedmodel"]),
        "--budget-minutes",
        "5",
        cache=cache_dir,
        ok=False,
    )
    assert proc.returncode == 2 and "--budget-minutes applies to a fine-tuning preset" in proc.stderr
