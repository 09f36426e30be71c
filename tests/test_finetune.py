"""Fine-tuning: the backbone's weights change, a run is registered, and it reports the frozen baseline."""

from __future__ import annotations

from pathlib import Path

from lib.pipeline import RunRequest
from lib.runs import list_runs, load_run


def test_finetune_runs_end_to_end_on_a_tiny_model(assets: dict[str, Path], cache_dir: Path) -> None:
    from lib.finetune import finetune_run

    reports = []
    manifest = finetune_run(RunRequest(str(assets["cifar_tar"]), str(assets["savedmodel"]), image_sizes=(32,)), cache_dir,
                            epochs=2, learning_rate=1e-3, batch_size=8, on_epoch=reports.append)  # fmt: skip
    assert [r.epoch for r in reports] == [1, 2]
    assert manifest["finetuned"] is True and 0 <= manifest["metrics"]["test_accuracy"] <= 1
    assert 0 <= manifest["finetune"]["frozen_head_test_accuracy"] <= 1
    assert [m["run_id"] for m in list_runs(cache_dir)] == [manifest["run_id"]]
    run = load_run(cache_dir, manifest["run_id"])
    assert run.probs.shape == (30, 10)
