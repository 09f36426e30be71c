"""What recovers the accuracy full-integer quantisation loses? One backbone and size, several recipes.

    python bench/int8_recovery.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --size 128 --train-limit 500

Every recipe is calibrated on the same 300 training images (the first 30 per class, as ``litert-int8``),
then extracts the train subset and the whole test split (original and flipped), and trains the ``best``
preset on them. The float reference is the ``litert`` runtime (equal to ``tf`` within 1e-4). Recipes:

- ``int8``: the project's ``litert-int8`` recipe: per-channel weights, int8 activations;
- ``int8-per-tensor``: one scale per weight tensor (what per-channel improves on);
- ``int8-float-suspects``: selective quantisation: the layers whose quantisation error is largest
  (RMSE over the scale above 0.7, the TFLite quantisation debugger's rule of thumb) stay in float;
- ``int8-float-last``: the last two quantised layers (the final pointwise conv and the pool) stay in float;
- ``int16x8``: 16-bit activations, 8-bit weights (runs on TFLite's reference kernels, not XNNPACK).

It prints, per recipe: conversion time, model size, images/s at batch 64, mean cosine of its test features
to the float ones, best-preset test accuracy and the loss in points. CPU model and core count come first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import data_args  # (puts the project on sys.path)

RECIPES = ("int8", "int8-per-tensor", "int8-float-suspects", "int8-float-last", "int16x8")


def convert(recipe: str, loaded: Any, size: int, shape: tuple[int, ...], calibration: np.ndarray) -> bytes:
    """The flatbuffer of one recipe."""
    import tensorflow as tf

    from lib.runtimes.litert import float_converter, representative_data, set_full_integer

    converter = set_full_integer(float_converter(loaded, size, shape), calibration)
    if recipe == "int8-per-tensor":
        converter._experimental_disable_per_channel = True
    if recipe == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    if recipe in ("int8-float-suspects", "int8-float-last"):
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative_data(calibration)
        )
        debugger.run()
        stats = debugger.layer_statistics  # tensor name -> metrics, in graph order
        if recipe == "int8-float-suspects":
            keep = [
                name
                for name, m in stats.items()
                if np.sqrt(m["mean_squared_error"]) / max(m.get("scale", 1e-12), 1e-12) > 0.7
            ]
        else:
            keep = list(stats)[-2:]
        print(
            f"    {recipe}: {len(keep)} of {len(stats)} quantised layers kept in float: "
            f"{', '.join(k.split('/')[-1][:40] for k in keep[:6])}{' ...' if len(keep) > 6 else ''}",
            flush=True,
        )
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep)
        selective = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative_data(calibration), debug_options=options
        )
        return bytes(selective.get_nondebug_quantized_model())
    return bytes(converter.convert())


def main() -> int:
    """Print one line per recipe."""
    from lib.data.sources import load_dataset, subset_indices
    from lib.models.protocols import PROTOCOLS
    from lib.models.specs import resolve_backbone
    from lib.pipeline.features import extract_features
    from lib.pipeline.training import FeatureBlock, fit_head
    from lib.process import machine_info
    from lib.runtimes import registry
    from lib.runtimes.backbones import load_backbone
    from lib.runtimes.litert import CALIBRATION_PER_CLASS, LiteRTBackbone, calibration_indices
    from lib.store.layout import CacheLayout

    parser = data_args(argparse.ArgumentParser(), size_flag="--size")
    parser.add_argument(
        "--train-limit", type=int, default=500, help="training images per class (the whole test split is always used)"
    )
    parser.add_argument("--recipes", default=",".join(RECIPES))
    args = parser.parse_args()
    m = machine_info()
    print(
        f"machine: {m['cpu']}, {m['cores']} cores; calibration: first {CALIBRATION_PER_CLASS} training images per "
        f"class; train: first {args.train_limit} per class; test: every image",
        flush=True,
    )
    ds = load_dataset(args.source, args.cache_dir)
    spec = resolve_backbone(args.backbone)
    shape = tuple(ds.image_shape)
    calibration = ds.images("train")[calibration_indices(ds)]
    rows = {"train": subset_indices(ds.labels("train"), args.train_limit), "test": np.arange(ds.size("test"))}

    def evaluate(model: Any) -> tuple[float, np.ndarray, float]:
        blocks, t_extract, n = {}, 0.0, 0
        for split, idx in rows.items():
            images, labels = ds.images(split)[idx], ds.labels(split)[idx]
            t0 = time.perf_counter()
            parts = {
                (args.size, view): extract_features(model, images, args.size, view == "flip", batch_size=64)
                for view in ("original", "flip")
            }
            t_extract += time.perf_counter() - t0
            n += 2 * len(idx)
            blocks[split] = FeatureBlock(parts, labels, idx, 0.0, 0)
        best = PROTOCOLS["best"]
        fit = fit_head(
            blocks["train"], blocks["test"], (args.size,), best.train_views, best.tta, best.head, len(ds.classes)
        )
        acc = float((fit.probs.argmax(1) == blocks["test"].labels).mean())
        return acc, blocks["test"].parts[(args.size, "original")], n / t_extract

    floats = next(rt for rt in registry().values() if rt.artifact_suffix and rt.exact)  # the float LiteRT runtime
    converted = floats.convert(spec, args.size, ds, CacheLayout(args.cache_dir))
    reference = LiteRTBackbone(spec, converted, floats.name, args.size, shape)  # type: ignore[arg-type]
    float_acc, float_feats, float_ips = evaluate(reference)
    print(f"{'float (litert)':<22} accuracy {float_acc:.2%}  {float_ips:7.1f} img/s", flush=True)
    loaded = load_backbone(spec)
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes.split(","):
            t0 = time.perf_counter()
            try:
                flatbuffer = convert(recipe, loaded, args.size, shape, calibration)
            except Exception as err:  # noqa: BLE001 - a recipe that does not convert is a result too
                print(f"{recipe:<22} does not convert: {str(err).strip().splitlines()[0][:200]}", flush=True)
                continue
            seconds = time.perf_counter() - t0
            path = Path(tmp) / f"{recipe}.tflite"
            path.write_bytes(flatbuffer)
            model = LiteRTBackbone(spec, path, recipe, args.size, shape)  # type: ignore[arg-type]
            probe = np.ascontiguousarray(ds.images("test")[:256])
            t0 = time.perf_counter()
            extract_features(model, probe, args.size, False, batch_size=64)
            print(
                f"    {recipe}: converted in {seconds:.0f}s; {256 / (time.perf_counter() - t0):.1f} img/s on 256 "
                "test images",
                flush=True,
            )
            acc, feats, ips = evaluate(model)
            a, b = feats.astype(np.float64), float_feats.astype(np.float64)
            cos = float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)).mean())
            print(
                f"{recipe:<22} accuracy {acc:.2%}  loss {100 * (float_acc - acc):+.2f} pts  {ips:7.1f} img/s "
                f"({ips / float_ips:.2f}x float)  cosine {cos:.4f}  {len(flatbuffer) / 1e6:.1f} MB  converted in "
                f"{seconds:.0f}s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
