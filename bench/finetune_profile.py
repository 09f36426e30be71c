"""Where the finetune preset's time goes: one training step split into reading the batch (the memory-mapped cached
maps, the flip chosen per image), the forward pass, the backward pass and the optimizer, at the preset's image size,
cut and batch; the achieved GFLOP/s (forward and backward multiply-adds counted, 2 FLOPs each) against this machine's
float32 matrix-multiply peak (``lib.analysis.flops.matmul_gflops``), and what an epoch of the training split costs.

    python bench/finetune_profile.py --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --steps 40

The maps are random uint8 of the cached shape unless ``--cache-dir`` holds the preset's cached training activations
(then the real memory maps are read, with the page cache as warm as the job's). Prints the CPU and core count.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from _common import ROOT  # the project root on sys.path

from lib.analysis.flops import matmul_gflops
from lib.pipeline.finetune_budget import (
    ACTIVATION_SCALE,
    FINETUNE_PRESETS,
    _augment,
    _batches,
    keras_mobilenet_v1,
    make_optimizer,
    split_model,
)
from lib.process import configure_process, machine_info
from lib.runtimes.backbones import resolve_backbone
from lib.store.layout import CacheLayout


def layer_macs(model: Any) -> int:
    """Multiply-adds of one image through ``model``'s convolutions, depthwise convolutions and dense layers."""
    import tf_keras as keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += layer_macs(layer)
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            h, w, c = layer.output_shape[1:]
            total += h * w * c * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Conv2D):
            h, w, co = layer.output_shape[1:]
            total += h * w * co * layer.input_shape[-1] * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def cached_views(layout: CacheLayout | None, shape: tuple[int, ...], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The preset's cached training maps (both views) when ``layout`` holds them, else random maps of ``shape``."""
    if layout:
        found = sorted(layout.activations.glob("*.json"))
        train = [json.loads(p.read_text()) for p in found]
        train = [(m["view"], p.with_suffix(".npy")) for m, p in zip(train, found) if m.get("split") == "train"]
        if len(train) == 2:
            by_view = dict(train)
            return np.load(by_view["original"], mmap_mode="r"), np.load(by_view["flip"], mmap_mode="r")
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 120, size=(n, *shape), dtype=np.uint8)
    return maps, maps[:, :, ::-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", required=True)
    p.add_argument("--preset", default="finetune", choices=sorted(FINETUNE_PRESETS))
    p.add_argument("--steps", type=int, default=40, help="timed steps per phase (after 5 warm-up steps)")
    p.add_argument(
        "--cache-dir", type=CacheLayout, default=None, help="a cache holding the preset's cached training maps"
    )
    p.add_argument("--epoch-images", type=int, default=48_000, help="training images in an epoch")
    args = p.parse_args()
    configure_process((args.cache_dir or CacheLayout(ROOT / "cache")).tfhub_cache())
    import tensorflow as tf
    import tf_keras as keras

    recipe = FINETUNE_PRESETS[args.preset]
    keras.utils.set_random_seed(recipe.seed)  # the process is deterministic (configure_process): random ops need one
    full = keras_mobilenet_v1(resolve_backbone(args.backbone), recipe.image_size)
    prefix, suffix = split_model(full, recipe.cut)
    shape = tuple(int(d) for d in prefix.output.shape[1:])
    head = keras.layers.Dense(10)
    inputs = keras.Input(shape, dtype=tf.uint8)
    model = keras.Model(inputs, head(suffix(tf.cast(inputs, tf.float32) * ACTIVATION_SCALE)))
    optimizer = make_optimizer(keras, recipe, recipe.learning_rate)  # the preset's own optimizer
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing)
    bn_training = recipe.batchnorm == "batch"

    def forward(maps: Any, y: Any) -> Any:
        x = _augment(tf, tf.cast(maps, tf.float32) * ACTIVATION_SCALE, recipe.shift)
        return loss_fn(tf.one_hot(y, 10), head(suffix(x, training=bn_training)))

    @tf.function
    def fwd(maps: Any, y: Any) -> Any:
        return forward(maps, y)

    @tf.function
    def fwd_bwd(maps: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = forward(maps, y)
        return tape.gradient(loss, model.trainable_variables)

    @tf.function
    def step(maps: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = forward(maps, y)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    views = cached_views(args.cache_dir, shape, max(4096, recipe.batch_size * 8))
    labels = np.random.default_rng(1).integers(0, 10, len(views[0])).astype(np.int64)
    data = _batches(views, labels, np.arange(len(labels)), recipe.batch_size, 0)

    def timed(fn: Any) -> float:
        for _ in range(5):
            out = fn(*next(data))
        t0 = time.perf_counter()
        for _ in range(args.steps):
            out = fn(*next(data))
        tf.nest.map_structure(lambda t: t.numpy(), out)
        return (time.perf_counter() - t0) / args.steps

    t0 = time.perf_counter()
    for _ in range(args.steps):
        next(data)
    read = (time.perf_counter() - t0) / args.steps
    t_fwd, t_fb, t_step = timed(fwd) - read, timed(fwd_bwd) - read, timed(step) - read
    phases = {"read": read, "forward": t_fwd, "backward": t_fb - t_fwd, "optimizer": t_step - t_fb}
    total = read + t_step
    macs = layer_macs(suffix) + int(np.prod(head.kernel.shape))
    images_per_s = recipe.batch_size / total
    achieved = 2 * 3 * macs * images_per_s / 1e9  # backward ~ twice the forward's multiply-adds
    peak = matmul_gflops()
    m = machine_info()
    print(
        f"CPU: {m['cpu']}, {m['cores']} cores; preset {args.preset}: {recipe.image_size} px from {recipe.cut}, batch "
        f"{recipe.batch_size}, maps {shape} ({'cached' if args.cache_dir else 'random'})"
    )
    for name, seconds in phases.items():
        print(f"  {name:<10} {1000 * seconds:8.1f} ms/step  {100 * seconds / total:5.1f}%")
    print(
        f"  step       {1000 * total:8.1f} ms  -> {images_per_s:.1f} images/s, an epoch of {args.epoch_images:,} "
        f"images in {args.epoch_images / images_per_s / 60:.1f} min"
    )
    print(
        f"  trainable blocks: {macs / 1e6:.1f} M multiply-adds per image forward; achieved {achieved:.1f} GFLOP/s "
        f"(forward + backward) of a {peak:.1f} GFLOP/s matmul peak = {100 * achieved / peak:.0f}%"
    )


if __name__ == "__main__":
    main()
