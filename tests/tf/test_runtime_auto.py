"""``--runtime auto``: timed once per backbone, size and machine, then kept; each outcome forced through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib.runtimes.auto import choose
from lib.store.layout import CacheLayout
from tests.fixtures import cli


def test_choose_counts_the_conversion_for_small_extractions() -> None:
    figures = {
        "tf": {"load_seconds": 1.0, "images_per_second": 100.0},
        "litert": {"load_seconds": 0.1, "convert_seconds": 20.0, "images_per_second": 200.0},
    }
    assert choose(figures, 100_000, converted=False)[0] == "litert"  # 20 s of conversion is repaid by 500 s saved
    assert (
        choose(figures, 500, converted=False)[0] == "tf"
    )  # 6 s on tf against 23.6 s with the conversion (and the TF load it needs)
    assert choose(figures, 500, converted=True)[0] == "litert"  # converted already: only the rates count
    assert choose({**figures, "litert": {"excluded": "it could not convert: no"}}, 10**6, converted=True)[0] == "tf"


def _record(cache: Path, backbone: str, size: int, figures: dict) -> None:
    from lib.models.specs import resolve_backbone
    from lib.runtimes.auto import machine_key
    from lib.store.layout import CacheLayout

    path = CacheLayout(cache).runtime_choice_file(machine_key(resolve_backbone(backbone), size))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures))


def test_extract_auto_measures_once_then_reads_the_record(assets: dict[str, Path], cache_dir: Path) -> None:
    src, bb = str(assets["cifar_tar"]), str(assets["savedmodel"])
    first = cli(
        "extract",
        "--source",
        src,
        "--backbone",
        bb,
        "--image-size",
        "32",
        "--split",
        "test",
        "--runtime",
        "auto",
        "--json",
        cache=cache_dir,
    )
    choice = first["runtime_choice"]
    assert (
        first["runtime"] == choice["choice"] in ("tf", "litert")
        and choice["measured"] == "now"
        and choice["images"] == 30
    )
    assert (
        choice["tf"]["images_per_second"] > 0
        and choice["litert"]["images_per_second"] > 0
        and choice["litert"]["max_rel_diff"] <= 1e-4
    )
    again = cli(
        "extract",
        "--source",
        src,
        "--backbone",
        bb,
        "--image-size",
        "32",
        "--split",
        "train",
        "--runtime",
        "auto",
        "--json",
        cache=cache_dir,
    )
    assert (
        again["runtime_choice"]["measured"].startswith("earlier")
        and again["runtime"] == again["runtime_choice"]["choice"]
    )


@pytest.mark.parametrize(
    "case, expected", [("litert faster", "litert"), ("tf faster", "tf"), ("litert cannot convert", "tf")]
)
def test_each_outcome_forced(assets: dict[str, Path], cache_dir: Path, case: str, expected: str) -> None:
    src, bb = str(assets["cifar_tar"]), str(assets["savedmodel"])
    tf = {"load_seconds": 0.1, "images_per_second": 10.0 if case == "litert faster" else 1000.0}
    lite = {
        "load_seconds": 0.1,
        "convert_seconds": 0.5,
        "images_per_second": 10_000.0 if case == "litert faster" else 10.0,
    }
    if case == "litert cannot convert":
        lite = {"excluded": "it could not convert: an op LiteRT lacks"}
    _record(cache_dir, bb, 32, {"tf": tf, "litert": lite})
    out = cli(
        "extract",
        "--source",
        src,
        "--backbone",
        bb,
        "--image-size",
        "32",
        "--split",
        "test",
        "--runtime",
        "auto",
        "--json",
        cache=cache_dir,
    )
    assert out["runtime"] == expected and out["runtime_choice"]["measured"].startswith("earlier")
    assert (
        Path(out["cache_path"]).with_suffix(".json").exists()
        and json.loads(Path(out["cache_path"]).with_suffix(".json").read_text())["runtime"].split(":")[0] == expected
    )
    if case == "litert cannot convert":
        assert "could not convert" in out["runtime_choice"]["litert"]["excluded"]


def test_train_auto_records_the_choice(assets: dict[str, Path], cache_dir: Path, layout: CacheLayout) -> None:
    from lib.runs.registry import load_run

    src, bb = str(assets["cifar_tar"]), str(assets["savedmodel"])
    _record(
        cache_dir,
        bb,
        32,
        {
            "tf": {"load_seconds": 0.1, "images_per_second": 10.0},
            "litert": {"load_seconds": 0.1, "convert_seconds": 0.5, "images_per_second": 5000.0},
        },
    )
    out = cli(
        "train",
        "--source",
        src,
        "--backbone",
        bb,
        "--image-size",
        "32",
        "--head",
        "linear",
        "--epochs",
        "1",
        "--runtime",
        "auto",
        "--json",
        cache=cache_dir,
    )
    m = load_run(layout, out["run_id"]).manifest
    assert m.runtime == "litert" == out["runtime"] and m.runtime_choice is not None and m.runtime_choice["images"] == 90
