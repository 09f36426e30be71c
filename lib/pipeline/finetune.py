"""Opt-in fine-tuning: unfreeze the backbone and train it end to end with a linear head.

Uses ``tf_keras`` with ``hub.KerasLayer(trainable=True)``, the one place that needs a
Keras 2 layer. It first fits the head on frozen features (a warm start, so the random
head does not wreck the pretrained weights), then trains everything at a low learning
rate from the raw images. Slow on CPU; a GPU is used automatically when TensorFlow sees one.

    manifest = finetune_run(RunRequest(source, backbone, limit=100), "cache", epochs=2)
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lib.errors import BackboneError, ConfigError
from lib.models.export import probability_module, save_module
from lib.models.heads import EpochReport, HeadConfig, train_head
from lib.pipeline.training import EpochFn, RunRequest, StageFn, gather_features, run_manifest, stored_predictions
from lib.store.manifest import RunManifest
from lib.store.runs import MODEL_DIR, save_run


def finetune_run(
    req: RunRequest,
    cache_dir: Path | str,
    epochs: int = 1,
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    on_stage: StageFn | None = None,
    on_epoch: EpochFn | None = None,
) -> RunManifest:
    """Fine-tune backbone + linear head on raw images; registers and returns the run's manifest."""
    import tensorflow as tf
    import tensorflow_hub as hub
    import tf_keras

    from lib.analysis.evaluation import evaluate
    from lib.data.sources import load_dataset, subset_indices
    from lib.models.backbones import resolve_backbone
    from lib.models.preprocess import preprocess

    req.validate()
    if req.exclude:
        raise ConfigError("An exclude list is not supported with fine-tuning yet; train a head on features with --exclude instead.")

    stage = on_stage or (lambda _m: None)
    cache_dir = Path(cache_dir)
    ds = load_dataset(req.source, cache_dir)
    spec = resolve_backbone(req.backbone)
    if spec.kind == "tflite":
        raise BackboneError("Fine-tuning needs a SavedModel or TF Hub backbone with trainable variables; a .tflite model has none.")
    size = (req.image_sizes or (spec.default_size(),))[0]

    stage("Warm start: linear head on frozen features")
    train = gather_features(ds, spec, "train", (size,), ("original",), cache_dir, req.limit, req.batch_size)
    frozen_cfg = HeadConfig(head="linear", epochs=30, val_fraction=0.0, patience=None, seed=req.head.seed)
    frozen = train_head(train.view("original", (size,)), train.labels, len(ds.classes), frozen_cfg)

    stage("Fine-tuning backbone and head end to end")
    tf_keras.utils.set_random_seed(req.head.seed)
    backbone_layer = hub.KerasLayer(spec.handle, trainable=True)
    inputs = tf_keras.Input((None, None, 3), dtype=tf.uint8)
    x = tf_keras.layers.Lambda(lambda t: preprocess(t, size))(inputs)
    # BatchNorm stays in inference mode: with small batches, batch statistics would shift the
    # features under the warm-started head (measured: 69.6% -> 62.3% on 100 images per class).
    feats = backbone_layer(x, training=False)
    # The frozen head's standardisation is folded into the dense layer: W' = W/scale, b' = b - (mean/scale) W.
    w, b = frozen.weights
    dense = tf_keras.layers.Dense(len(ds.classes))
    logits = dense(feats)
    model = tf_keras.Model(inputs, logits)
    dense.set_weights([w / frozen.scale[:, None], b - (frozen.mean / frozen.scale) @ w])
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    train_idx = subset_indices(ds.labels("train"), req.limit)
    x_train = np.asarray(ds.images("train")[train_idx])
    y_train = ds.labels("train")[train_idx]
    t0 = time.perf_counter()
    history: list[dict[str, Any]] = []

    class _Report(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            row: dict[str, Any] = {"epoch": epoch + 1, "loss": float(logs["loss"]), "accuracy": float(logs["accuracy"]), "val_loss": None,
                   "val_accuracy": None, "elapsed": time.perf_counter() - t0}  # fmt: skip
            history.append(row)
            if on_epoch:
                on_epoch(EpochReport(epoch + 1, epochs, row["loss"], row["accuracy"], None, None, row["elapsed"]))

    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, shuffle=True, callbacks=[_Report()], verbose=0)
    train_seconds = time.perf_counter() - t0

    stage("Evaluating")
    frozen_test = gather_features(ds, spec, "test", (size,), ("original",), cache_dir, req.limit, req.batch_size)
    test_idx, y_test = frozen_test.indices, frozen_test.labels
    probs = tf.nn.softmax(model.predict(np.asarray(ds.images("test")[test_idx]), batch_size=128, verbose=0)).numpy()
    frozen_acc = float((frozen.predict_proba(frozen_test.view("original", (size,))).argmax(1) == y_test).mean())
    report = evaluate(y_test, probs, ds.classes)
    head = type(frozen)(HeadConfig(head="linear", seed=req.head.seed), np.zeros(w.shape[0], np.float32), np.ones(w.shape[0], np.float32),
                        [np.asarray(a, np.float32) for a in dense.get_weights()], history)  # fmt: skip
    req = replace(req, protocol="finetune", image_sizes=(size,), train_views=("original",), tta=False)
    manifest = run_manifest(
        req, ds, spec, (size,), head.config, history, report,
        timings={"extract_seconds": round(train.extract_seconds + frozen_test.extract_seconds, 3), "train_seconds": round(train_seconds, 3)},
        finetuned=True, best_epoch=len(history),
        finetune={"epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size, "frozen_head_test_accuracy": frozen_acc,
                  "gpu": bool(tf.config.list_physical_devices("GPU"))},
    )  # fmt: skip
    predictions = stored_predictions(y_test, probs, test_idx)
    stage("Saving run")
    module = probability_module(lambda images: tf.nn.softmax(model(images, training=False)), list(ds.classes), [size], model)

    def write_model(folder: Path) -> None:
        # The fine-tuned backbone lives only here, so the run can be exported and classify uploads.
        save_module(module, folder / MODEL_DIR)

    save_run(cache_dir, manifest, head, predictions, write_model)
    return manifest
