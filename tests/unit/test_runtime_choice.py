"""lib/runtimes/auto.py without TensorFlow: a stored record is used only if it is one ``measure`` could have written,
a .tflite backbone is described without a KeyError, and features cached by one exact runtime decide the choice."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lib.runtimes.auto import choose, describe, resolve, valid_figures

GOOD = {
    "tf": {"load_seconds": 1.0, "images_per_second": 100.0},
    "litert": {"convert_seconds": 20.0, "load_seconds": 0.1, "images_per_second": 300.0, "max_rel_diff": 1e-6},
}


@pytest.mark.parametrize(
    "record",
    [
        None,
        [],
        {"tf": "x"},
        {**GOOD, "tf": {"load_seconds": 1.0, "images_per_second": "fast"}},
        {**GOOD, "tf": {"load_seconds": 1.0, "images_per_second": -5.0}},
        {**GOOD, "litert": {"images_per_second": 1.0}},
        {**GOOD, "litert": {"excluded": 3}},
        {"tf": GOOD["tf"]},
        {**GOOD, "tf": {"load_seconds": True, "images_per_second": 1.0}},
    ],
)
def test_a_damaged_or_wrong_typed_record_is_measured_again(record: object) -> None:
    assert not valid_figures(record)


def test_good_records_are_used() -> None:
    assert valid_figures(GOOD) and valid_figures({**GOOD, "litert": {"excluded": "it could not convert: no"}})


def test_a_tflite_backbone_is_described_without_estimates() -> None:
    spec = SimpleNamespace(fixed_runtime="tflite")
    name, choice = resolve("auto", spec, 224, None, None, images=30)
    assert name == "tf" and choice is not None
    assert describe(name, choice, 30) == "Runtime auto: tf (a .tflite backbone runs as itself)"


def test_features_one_runtime_has_cached_decide_without_timing() -> None:
    spec = SimpleNamespace(fixed_runtime=None)  # no identity: timing it would fail, so nothing may be timed
    name, choice = resolve("auto", spec, 128, None, None, images=60, cached=lambda rt: 60 if rt == "tf" else 0)
    assert name == "tf" and choice is not None and "cached already" in describe(name, choice, 60)
    # partly cached: only the rest counts (TF has 50,000 of 60,000 images: 100 s left against LiteRT's 20 s + 200 s)
    assert choose(GOOD, 60_000, converted=False, cached={"tf": 50_000})[0] == "tf"
    assert choose(GOOD, 60_000, converted=False)[0] == "litert"
