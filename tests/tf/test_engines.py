"""lib/pipeline/engines.py: the local engine loads a backbone once for every artifact it makes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lib.data.sources import load_dataset
from lib.models.specs import resolve_backbone
from lib.pipeline.engines import LocalEngine, open_engine
from lib.pipeline.features import ensure_features
from lib.runtimes import backbones
from lib.store.layout import CacheLayout


def test_one_tf_load_serves_every_size_and_every_conversion(
    assets: dict[str, Path], cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = CacheLayout(cache_dir)
    loads: list[str] = []
    real = backbones.load_backbone
    monkeypatch.setattr(backbones, "load_backbone", lambda spec: loads.append(spec.name) or real(spec))
    ds = load_dataset(str(assets["cifar_tar"]), layout)
    spec = resolve_backbone(str(assets["savedmodel"]))
    with open_engine(None, layout) as engine:
        assert isinstance(engine, LocalEngine)
        for size in (32, 48):
            ensure_features(ds, "test", spec, layout, size, engine=engine)
            ensure_features(ds, "test", spec, layout, size, engine=engine, runtime="litert")
    assert len(loads) == 1  # TensorFlow once; both LiteRT conversions started from that load
    tf32 = ensure_features(ds, "test", spec, layout, 32)
    lite32 = ensure_features(ds, "test", spec, layout, 32, runtime="litert")
    assert tf32.cache_hit and lite32.cache_hit and tf32.path != lite32.path
    np.testing.assert_allclose(lite32.features, tf32.features, rtol=1e-3, atol=1e-4)
