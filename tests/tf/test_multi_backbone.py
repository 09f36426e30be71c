"""Several backbones in one run: features concatenated (each at its own sizes and views), one prediction path for the
run's stored probabilities, the map's head, the upload classifier and the export; the bundle carries every backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lib.errors import ConfigError
from lib.store.layout import CacheLayout
from tests import fixtures
from tests.fixtures import cli


@pytest.fixture(scope="module")
def second_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixtures.make_feature_savedmodel(tmp_path_factory.mktemp("second") / "tiny_fv_8", dim=8, seed=3)


@pytest.fixture(scope="module")
def two_backbone_run(assets: dict[str, Path], second_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("multi")
    out = cli(
        "train",
        "--source",
        str(assets["cifar_tar"]),
        "--backbone",
        str(assets["savedmodel"]),
        "--backbone",
        f"{second_backbone}@40,48",
        "--image-sizes",
        "32",
        "--head",
        "mlp",
        "--hidden",
        "16",
        "--epochs",
        "4",
        "--flip-train",
        "--tta",
        "--json",
        cache=cache,
    )
    return {"cache": cache, "result": out}


def test_two_backbones_concatenate_and_every_prediction_path_agrees(
    two_backbone_run: dict, assets: dict[str, Path], second_backbone: Path, tmp_path: Path
) -> None:
    import tensorflow as tf

    from lib.data.sources import load_dataset
    from lib.models.predict import predict_images
    from lib.pipeline.predictions import head_probabilities
    from lib.runs.export import export_run
    from lib.runs.registry import load_run
    from lib.runtimes.backbones import load_backbone, resolve_backbone

    cache, result = two_backbone_run["cache"], two_backbone_run["result"]
    assert result["backbones"] == "tiny_fv_32 @ 32 + tiny_fv_8 @ 40,48", result["backbones"]
    cache_layout = CacheLayout(cache)
    run = load_run(cache_layout, result["run_id"])
    m = run.manifest
    assert [b["image_sizes"] for b in m.extra_backbones] == [[40, 48]] and m.extra_backbones[0][
        "backbone_name"
    ] == "tiny_fv_8"
    assert m.part_keys() == [32, (1, 40), (1, 48)]
    assert run.head.mean.shape[-1] == 16 + 8 + 8  # every part's features reached the head
    # The map's head on cached features reproduces the stored test probabilities (sizes, backbones and views the same
    # way).
    ds = load_dataset(str(assets["cifar_tar"]), cache_layout)
    again = head_probabilities(run, ds, resolve_backbone(m.backbone), cache_layout, m.test_split)
    assert again is not None
    np.testing.assert_allclose(again, run.probs, atol=1e-5)
    # The upload classifier and the export run the same path from raw images.
    images = ds.images("test")[:12]
    bbs = [load_backbone(resolve_backbone(h)) for h, _i, _s in m.backbones()]
    direct = predict_images(bbs, run.head, images, m.part_keys(), m.tta)
    np.testing.assert_allclose(direct, run.probs[:12], atol=1e-4)
    exported = tf.saved_model.load(str(export_run(cache_layout, run.run_id, tmp_path / "exported")))
    np.testing.assert_allclose(exported(images).numpy(), direct, atol=1e-4)


def test_a_bundle_carries_every_backbone_of_a_run(
    two_backbone_run: dict, second_backbone: Path, tmp_path: Path
) -> None:
    from lib.bundles.install import install_bundle
    from lib.bundles.make import make_bundle
    from lib.store.installed import backbone_aliases

    report = make_bundle(CacheLayout(two_backbone_run["cache"]), tmp_path / "demo.tar")
    # train and test, original and flipped: 2 x 2 at 32 for the first backbone, 2 x 2 x 2 at 40 and 48 for the second.
    assert report["float16_features"] == 12, report
    (check,) = report["float16_check"]
    assert abs(check["accuracy"] - check["accuracy_float16_features"]) <= 2 / check["test_images"]
    install_bundle(str(tmp_path / "demo.tar"), CacheLayout(tmp_path / "target"))
    assert str(second_backbone) in backbone_aliases(CacheLayout(tmp_path / "target"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backbone", "@128"], "names sizes but no backbone"),
        (["--backbone", "{sm}@40,40"], "names the size 40 twice"),
        (["--backbone", "{sm}@9999"], "input size"),
        (["--backbone", "/nowhere/model@224"], "/nowhere/model"),
        (["--backbone", "{sm}", "--finetune"], "Fine-tuning trains one backbone"),
    ],
)
def test_bad_further_backbones_get_one_line_errors(
    assets: dict[str, Path], cache_dir: Path, extra: list[str], message: str
) -> None:
    extra = [a.replace("{sm}", str(assets["savedmodel"])) for a in extra]
    proc = cli(
        "train",
        "--source",
        str(assets["cifar_tar"]),
        "--backbone",
        str(assets["savedmodel"]),
        *extra,
        cache=cache_dir,
        ok=False,
    )
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not list((cache_dir / "runs").glob("*/manifest.json")) if (cache_dir / "runs").exists() else True


def test_backbone_at_sizes_parsing() -> None:
    from lib.bounds import backbone_at_sizes

    assert backbone_at_sizes("a/b") == ("a/b", None)
    assert backbone_at_sizes("a/b@160,224") == ("a/b", (160, 224))
    assert backbone_at_sizes("https://x/y@v2") == ("https://x/y@v2", None)  # not sizes: part of the handle
    with pytest.raises(ConfigError):
        backbone_at_sizes("@224")
