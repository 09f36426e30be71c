"""Fine-tuning: the backbone's weights change, a run is registered, and it reports the frozen baseline."""

from __future__ import annotations

from pathlib import Path

from lib.pipeline.training import RunRequest
from lib.store.runs import list_runs, load_run


def test_finetune_runs_end_to_end_on_a_tiny_model(assets: dict[str, Path], cache_dir: Path) -> None:
    from lib.pipeline.finetune import finetune_run

    reports = []
    manifest = finetune_run(RunRequest(str(assets["cifar_tar"]), str(assets["savedmodel"]), image_sizes=(32,)), cache_dir,
                            epochs=2, learning_rate=1e-3, batch_size=8, on_epoch=reports.append)  # fmt: skip
    assert [r.epoch for r in reports] == [1, 2]
    assert manifest.finetuned is True and manifest.finetune is not None
    assert 0 <= manifest.finetune["frozen_head_test_accuracy"] <= 1
    assert [m.run_id for m in list_runs(cache_dir)] == [manifest.run_id]
    run = load_run(cache_dir, manifest.run_id)
    assert run.probs.shape == (30, 10)

    # The fine-tuned backbone is stored with the run, so it exports and predicts like any run.
    import numpy as np
    import tensorflow as tf

    from lib.data.sources import load_dataset
    from lib.models.export import export_run

    out = export_run(cache_dir, manifest.run_id, cache_dir / "exported")
    model = tf.saved_model.load(str(out))
    images = np.asarray(load_dataset(str(assets["cifar_tar"]), cache_dir).images("test"))
    probs = model(images).numpy()
    assert [n.decode() for n in model.class_names.numpy()] == run.classes
    np.testing.assert_allclose(probs, run.probs, atol=1e-4)  # the stored test predictions came from this model
