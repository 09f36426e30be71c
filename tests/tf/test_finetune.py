"""Fine-tuning on CPU with a tiny model: end to end, progress, resume from a checkpoint, refusals, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lib.errors import BackboneError, ConfigError, UserFacingError
from lib.pipeline.training import RunRequest
from lib.runs.registry import list_runs, load_run
from lib.store.layout import CacheLayout


def request(assets: dict[str, Path], **kw) -> RunRequest:
    return RunRequest(str(assets["cifar_tar"]), str(assets["savedmodel"]), image_sizes=(32,), **kw)


def test_finetune_runs_end_to_end_on_a_tiny_model(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout
) -> None:
    from lib.pipeline.finetune import FinetuneConfig, finetune_run

    reports, progress = [], []
    cfg = FinetuneConfig(epochs=2, learning_rate=1e-3, batch_size=8, image_size=48, warmup_epochs=0.5)
    manifest = finetune_run(request(assets), layout, cfg, on_epoch=reports.append, on_progress=progress.append)
    assert [r.epoch for r in reports] == [1, 2]
    assert (
        progress
        and all(p.images_per_second > 0 and p.eta_seconds >= 0 for p in progress)
        and progress[-1].images_done == progress[-1].images_total
    )
    assert manifest.finetuned is True and manifest.finetune is not None and manifest.image_sizes == [48]
    assert (
        0 <= manifest.finetune["frozen_head_test_accuracy"] <= 1
        and manifest.finetune["gpu"] is False
        and manifest.finetune["xla"] is False
    )
    assert len(manifest.finetune["epoch_seconds"]) == 2 and manifest.finetune["images_per_second"] > 0
    assert [m.run_id for m in list_runs(layout)] == [manifest.run_id]
    assert not (cache_dir / "finetune").exists() or not any(
        (cache_dir / "finetune").iterdir()
    )  # the checkpoint is gone once the run is saved
    run = load_run(layout, manifest.run_id)
    assert run.probs.shape == (30, 10)

    # The fine-tuned backbone is stored with the run, so it exports and predicts like any run.
    import tensorflow as tf

    from lib.data.sources import load_dataset
    from lib.runs.export import export_run

    out = export_run(layout, manifest.run_id, cache_dir / "exported")
    model = tf.saved_model.load(str(out))
    images = np.asarray(load_dataset(str(assets["cifar_tar"]), layout).images("test"))
    probs = model(images).numpy()
    assert [n.decode() for n in model.class_names.numpy()] == run.classes
    np.testing.assert_allclose(probs, run.probs, atol=1e-4)  # the stored test predictions came from this model


def test_an_interrupted_finetune_resumes_after_its_last_epoch(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout
) -> None:
    from lib.pipeline.finetune import FinetuneConfig, finetune_run

    cfg = FinetuneConfig(epochs=3, learning_rate=1e-3, batch_size=8)

    def stop_after_first(report) -> None:
        if report.epoch == 1:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C, or the machine went away

    with pytest.raises(KeyboardInterrupt):
        finetune_run(request(assets), layout, cfg, on_epoch=stop_after_first)
    assert list((cache_dir / "finetune").iterdir()), "epoch 1 is checkpointed"
    stages, epochs = [], []
    manifest = finetune_run(
        request(assets), layout, cfg, on_stage=stages.append, on_epoch=lambda r: epochs.append(r.epoch)
    )
    assert any(s.startswith("Resuming after epoch 1 of 3") for s in stages)
    assert (
        epochs == [2, 3]
        and manifest.finetune["resumed_from_epoch"] == 1
        and [h["epoch"] for h in manifest.history] == [1, 2, 3]
    )


def test_refusals_other_checkpoint_tflite_and_out_of_memory(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from lib.data.sources import load_dataset
    from lib.models.specs import resolve_backbone
    from lib.pipeline import finetune as ft

    cfg = ft.FinetuneConfig(epochs=1, batch_size=8)
    ds = load_dataset(str(assets["cifar_tar"]), layout)

    folder = layout.finetune_checkpoint(
        ft.checkpoint_key(ds, resolve_backbone(str(assets["savedmodel"])), 32, None, cfg)
    )
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"key": "another-configuration"}))
    with pytest.raises(ConfigError, match="another fine-tuning configuration"):
        ft.finetune_run(request(assets), layout, cfg)
    assert (folder / "config.json").exists()  # never deleted or overwritten

    with pytest.raises(BackboneError, match="cannot be fine-tuned"):
        ft.finetune_run(RunRequest(str(assets["cifar_tar"]), str(assets["tflite"])), layout, cfg)

    import tensorflow as tf

    def oom(*_a, **_k):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    monkeypatch.setattr(ft, "_finetune", oom)
    with pytest.raises(UserFacingError, match=r"Out of memory .* batch size 64.*--batch-size 32"):
        ft.finetune_run(request(assets), layout, ft.FinetuneConfig(batch_size=64))
    with pytest.raises(ConfigError):
        ft.FinetuneConfig(epochs=2, warmup_epochs=3).validate()


def test_image_stream_visits_every_image_once_per_epoch_from_the_memory_map(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout
) -> None:
    from lib.data.sources import load_dataset
    from lib.pipeline.finetune import image_stream

    ds = load_dataset(str(assets["cifar_tar"]), layout)
    images, labels = ds.images("train"), ds.labels("train")
    assert isinstance(images, np.memmap)
    idx = np.arange(0, len(labels), 2)
    data = image_stream(images, labels, idx, batch_size=7, seed=0, flip=True)
    for _epoch in range(2):
        xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in data])
        x, y = np.concatenate(xs), np.concatenate(ys)
        assert x.dtype == np.uint8 and x.shape == (len(idx), *images.shape[1:])
        assert sorted(y.tolist()) == sorted(labels[idx].tolist())
        # each image is itself or its mirror
        originals = {images[i].tobytes() for i in idx} | {images[i][:, ::-1].tobytes() for i in idx}
        assert all(im.tobytes() in originals for im in x)
