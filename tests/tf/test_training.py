"""lib/pipeline/training.py: a request is checked before any work, and a trained head is never lost to its metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.errors import ConfigError
from lib.models.heads import HeadConfig
from lib.pipeline.training import RunRequest, train_run
from lib.runs.registry import list_runs
from lib.store.layout import CacheLayout


def test_a_request_is_checked_before_any_work(assets: dict[str, Path], cache_dir: Path, layout: CacheLayout) -> None:
    base = (str(assets["cifar_tar"]), str(assets["savedmodel"]))
    for bad in (
        RunRequest(*base, image_sizes=(32, 32)),
        RunRequest(*base, image_sizes=(8,)),
        RunRequest(*base, HeadConfig(learning_rate=float("nan"))),
        RunRequest(*base, runtime="onnx"),
        RunRequest(*base, limit=0),
    ):
        with pytest.raises(ConfigError):
            train_run(bad, layout)
    assert not (cache_dir / "features").exists()  # refused before anything was extracted


def test_a_run_is_saved_even_when_a_metric_fails(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lib.models import metrics as evaluation

    def broken(*_a: object, **_k: object) -> None:
        raise ValueError("a metric library changed its mind")

    monkeypatch.setattr(evaluation, "evaluate", broken)
    stages: list[str] = []
    req = RunRequest(
        str(assets["cifar_tar"]), str(assets["savedmodel"]), HeadConfig(epochs=2, batch_size=16), image_sizes=(32,)
    )
    manifest = train_run(req, layout, on_stage=stages.append)
    assert [m.run_id for m in list_runs(layout)] == [manifest.run_id]
    assert 0.0 <= manifest.metrics.test_accuracy <= 1.0 and manifest.metrics.top5_accuracy is None
    assert any("could not be computed" in s for s in stages)
