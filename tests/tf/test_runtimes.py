"""Extraction runtimes: LiteRT float matches TensorFlow, int8 is calibrated on training images, keys separate them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lib.data.sources import load_dataset
from lib.errors import ConfigError
from lib.pipeline.features import feature_cache_key, list_cached_features
from lib.runtimes import get_runtime, load_for_runtime, runtime_identity
from lib.runtimes.backbones import resolve_backbone
from lib.runtimes.litert import calibration_indices
from lib.store.layout import CacheLayout
from tests.fixtures import get_features


@pytest.fixture
def folder_ds(tmp_path: Path, cache_dir: Path, layout: CacheLayout) -> object:
    """A dataset big enough to calibrate int8 (10 classes x 8 train images)."""
    from PIL import Image

    from tests.fixtures import class_images

    for split, n in (("train", 8), ("test", 3)):
        for c in range(10):
            d = tmp_path / "src" / split / f"class{c}"
            d.mkdir(parents=True)
            for i, img in enumerate(class_images(c, n, seed=0 if split == "train" else 1)):
                Image.fromarray(img).save(d / f"{i}.png")
    return load_dataset(str(tmp_path / "src"), layout)


def test_litert_float_matches_tensorflow(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout, folder_ds: object
) -> None:
    spec = resolve_backbone(str(assets["savedmodel"]))
    tf_feats = get_features(folder_ds, "test", spec, cache_dir, image_size=48)
    lite = get_features(folder_ds, "test", spec, cache_dir, image_size=48, runtime="litert")
    assert lite.path != tf_feats.path and not lite.cache_hit
    rel = (
        np.abs(np.asarray(lite.features) - np.asarray(tf_feats.features)).max()
        / np.abs(np.asarray(tf_feats.features)).max()
    )
    assert rel < 1e-4, rel
    flipped = get_features(folder_ds, "test", spec, cache_dir, image_size=48, view="flip", runtime="litert")
    tf_flipped = get_features(folder_ds, "test", spec, cache_dir, image_size=48, view="flip")
    np.testing.assert_allclose(flipped.features, tf_flipped.features, rtol=1e-4, atol=1e-5)
    assert get_features(folder_ds, "test", spec, cache_dir, image_size=48, runtime="litert").cache_hit
    assert {m.runtime for m in list_cached_features(layout)} == {"tf", "litert:c1"}
    # The converted model is a cache artifact: a second load does not convert again.
    converted = list((cache_dir / "converted").glob("*.tflite"))
    assert len(converted) == 1
    mtime = converted[0].stat().st_mtime_ns
    load_for_runtime(spec, "litert", 48, folder_ds, layout)
    assert converted[0].stat().st_mtime_ns == mtime


def test_litert_int8_is_calibrated_on_training_images_and_keyed_by_them(
    assets: dict[str, Path], cache_dir: Path, folder_ds: object
) -> None:
    spec = resolve_backbone(str(assets["savedmodel"]))
    idx = calibration_indices(folder_ds)
    assert len(idx) == 80  # every training image here (fewer than 30 per class)
    q = get_features(folder_ds, "test", spec, cache_dir, image_size=40, runtime="litert-int8")
    f = get_features(folder_ds, "test", spec, cache_dir, image_size=40)
    a, b = np.asarray(q.features), np.asarray(f.features)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    assert cosine.mean() > 0.9, cosine.mean()  # quantised, so close but not equal
    assert not np.allclose(a, b)
    ident = runtime_identity(spec, "litert-int8", folder_ds)
    assert folder_ds.fingerprint in ident


def test_litert_mixed_keeps_the_worst_layers_float(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout, folder_ds: object
) -> None:
    """litert-mixed converts through TensorFlow's quantization debugger: its features are at least as close to float as
    full int8's, it has integer ops, and it is keyed apart from litert-int8."""
    from ai_edge_litert.interpreter import Interpreter

    from lib.runtimes.litert import LiteRTRuntime

    spec = resolve_backbone(str(assets["savedmodel"]))
    f = np.asarray(get_features(folder_ds, "test", spec, cache_dir, image_size=40).features)
    cos = {}
    for runtime in ("litert-int8", "litert-mixed"):
        a = np.asarray(get_features(folder_ds, "test", spec, cache_dir, image_size=40, runtime=runtime).features)
        cos[runtime] = float(((a * f).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(f, axis=1) + 1e-12)).mean())
    assert cos["litert-mixed"] > 0.9 and cos["litert-mixed"] >= cos["litert-int8"] - 1e-3, cos
    path = LiteRTRuntime(quantized=True, mixed=True).converted(spec, 40, folder_ds, layout)
    types = {t["dtype"] for t in Interpreter(model_path=str(path)).get_tensor_details()}
    assert np.int8 in types  # quantised, not a float model under another name
    assert runtime_identity(spec, "litert-mixed", folder_ds) != runtime_identity(spec, "litert-int8", folder_ds)


def test_float_layers_are_a_prefix_to_the_last_early_suspect() -> None:
    from lib.runtimes.litert import float_layers

    errors = [
        0.3,
        0.4,
        2.5,
        0.5,
        2.2,
        0.2,
        0.9,
        0.3,
        2.4,
        0.2,
    ]  # suspects at 2 and 4 (early), 8 (late: not worth a float tail)
    rows = [
        {"tensor_name": f"t{i}", "scale": "0.1", "mean_squared_error": str((e * 0.1) ** 2)}
        for i, e in enumerate(errors)
    ]
    assert float_layers(rows) == ["t0", "t1", "t2", "t3", "t4"]
    assert float_layers(rows, threshold=3.0) == []
    assert float_layers(rows, within=1.0) == [f"t{i}" for i in range(9)]


def test_keys_separate_runtimes_and_tf_keys_are_unchanged() -> None:
    base = feature_cache_key("d", "test", "b", 128, "original", None)
    # TensorFlow keeps the keys it always had
    assert get_runtime("tf").key_part(None, None) is None
    assert (
        len(
            {
                base,
                feature_cache_key("d", "test", "b", 128, "original", None, "litert:c1"),
                feature_cache_key("d", "test", "b", 128, "original", None, "litert-int8:fp/train:c1"),
            }
        )
        == 3
    )


def test_bad_runtimes_and_small_calibration_sets(assets: dict[str, Path], cache_dir: Path, layout: CacheLayout) -> None:
    ds = load_dataset(str(assets["cifar_tar"]), layout)  # 6 training images per class: 60 < 300 but >= 50
    spec = resolve_backbone(str(assets["savedmodel"]))
    with pytest.raises(ConfigError, match="Unknown runtime"):
        get_features(ds, "test", spec, cache_dir, image_size=32, runtime="onnx")
    tiny = load_dataset(str(assets["folder"]), layout)  # 24 training images
    with pytest.raises(ConfigError, match="at least 50"):
        get_features(tiny, "test", spec, cache_dir, image_size=32, runtime="litert-int8")
    assert not list(cache_dir.glob("converted/*"))  # nothing half-written


def test_tflite_backbone_runs_as_it_is_whatever_the_runtime(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout
) -> None:
    ds = load_dataset(str(assets["cifar_tar"]), layout)
    spec = resolve_backbone(str(assets["tflite"]))
    a = get_features(ds, "test", spec, cache_dir, image_size=32)
    b = get_features(ds, "test", spec, cache_dir, image_size=32, runtime="litert")
    assert b.cache_hit and b.path == a.path


class _DoubledTF:
    """A stand-in runtime for the plug-in test: TensorFlow's features, doubled (so they are its own, and keyed
    apart)."""

    name = "doubled-tf"
    description = "TensorFlow's features times two (a test runtime)"
    selectable, exact, quantized, any_size, bench_order, artifact_suffix = True, False, False, True, 5, None

    def identity(self, spec: object, dataset: object) -> str:
        return "doubled-tf:v1"

    def key_part(self, spec: object, dataset: object) -> str:
        return self.identity(spec, dataset)

    def load(self, spec: object, size: int, dataset: object, layout: object, tf_backbone: object = None) -> object:
        from lib.runtimes.backbones import load_backbone

        inner = load_backbone(spec)

        class Doubled:
            feature_dim, fixed_size, runtime = inner.feature_dim, None, self.name

            def check_size(self, s: int) -> None:
                inner.check_size(s)

            def embed(self, images: np.ndarray, s: int, flip: bool = False) -> np.ndarray:
                return 2.0 * inner.embed(images, s, flip)

        return Doubled()

    def converted(self, *args: object) -> None:
        return None

    def convert(self, *args: object) -> None:
        return None


def test_a_registered_runtime_flows_through_every_door(
    assets: dict[str, Path], cache_dir: Path, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One `register(...)` and nothing else: the new runtime is a CLI choice, makes its own keyed features (the manifest
    records it), trains a run that says so, is measured by the benchmark, and is offered on the Train page."""
    from streamlit.testing.v1 import AppTest

    from lib.analysis.benchmark import run_benchmark
    from lib.cli.main import main
    from lib.runs.registry import list_runs
    from lib.runtimes import register, unregister

    register(_DoubledTF())
    try:
        src, bb = str(assets["cifar_tar"]), str(assets["savedmodel"])
        common = ["--source", src, "--backbone", bb, "--image-size", "32", "--cache-dir", str(cache_dir), "--json"]
        assert main(["extract", *common, "--split", "test"]) == 0
        assert main(["extract", *common, "--split", "test", "--runtime", "doubled-tf"]) == 0
        manifests = {m.runtime: m for m in list_cached_features(layout) if m.split == "test"}
        assert set(manifests) == {"tf", "doubled-tf:v1"} and manifests["doubled-tf:v1"].runtime_name == "doubled-tf"
        tf_feats = np.load(cache_dir / "features" / f"{manifests['tf'].key}.npy")
        doubled = np.load(cache_dir / "features" / f"{manifests['doubled-tf:v1'].key}.npy")
        np.testing.assert_allclose(doubled, 2 * tf_feats, rtol=1e-5)
        assert main(["train", *common, "--runtime", "doubled-tf", "--epochs", "2"]) == 0
        assert [m.runtime for m in list_runs(layout)] == ["doubled-tf"]
        rows = run_benchmark(src, [bb], [32], ["doubled-tf"], layout, 3)["rows"]
        assert [r["runtime"] for r in rows] == ["doubled-tf"]
        monkeypatch.setenv("TLX_SOURCE", src)
        monkeypatch.setenv("TLX_BACKBONE", bb)
        monkeypatch.setenv("TLX_CACHE_DIR", str(cache_dir))
        at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=120).run()
        at.switch_page(str(Path(__file__).resolve().parents[2] / "views" / "train.py")).run()
        assert not at.exception and "doubled-tf" in at.selectbox(key="t_runtime").options
    finally:
        unregister("doubled-tf")
