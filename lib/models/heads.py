"""Classifier heads trained on cached features: a linear softmax layer or a small MLP.

Training uses Keras (imported lazily); prediction is plain numpy over the stored
weights, so pages and evaluation never need TensorFlow to read a run.

    cfg = HeadConfig(head="mlp", hidden=1024, dropout=0.5, epochs=20)
    head = train_head(x_train, y_train, num_classes=10, cfg=cfg, progress=print)
    probs = head.predict_proba(x_test)          # float32 [N, 10]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from lib import bounds
from lib.config import SEED
from lib.errors import ConfigError


@dataclass
class HeadConfig:
    """Every hyperparameter of a head; units in the comments."""

    head: str = "linear"  # "linear" (one dense softmax layer) or "mlp" (one hidden ReLU layer)
    hidden: int = 1024  # units in the MLP's hidden layer
    dropout: float = 0.5  # fraction dropped after the hidden layer (and 1/5 of it on the input)
    weight_decay: float = 0.0  # decoupled decay per step with adamw; L2 coefficient otherwise
    optimizer: str = "adam"  # adam | adamw | sgd (with Nesterov momentum 0.9)
    learning_rate: float = 1e-3  # peak learning rate
    lr_schedule: str = "constant"  # constant | cosine (decays to 0 over the planned steps)
    batch_size: int = 256  # examples per step
    epochs: int = 20  # passes over the training rows (ignored when steps is set)
    steps: int | None = None  # total optimizer steps; overrides epochs
    label_smoothing: float = 0.0  # fraction of target mass spread over all classes
    val_fraction: float = 0.1  # share of training images held out for validation / early stopping
    patience: int | None = 5  # epochs without val-loss improvement before stopping; None disables
    seed: int = SEED  # initialisation, shuffling and the validation split

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def validate(self) -> HeadConfig:
        """Itself, or :class:`ConfigError` naming the first setting out of range (the bounds and choices of
        :data:`HEAD_PARAMS`)."""
        for param in HEAD_PARAMS:
            value = getattr(self, param.field)
            if param.choices and value not in param.choices:
                raise ConfigError(f"{param.field} must be one of {', '.join(param.choices)}, got {value!r}")
            if param.bound is not None and value is not None:
                bounds.check(param.bound, value)
        if self.patience == 0:
            raise ConfigError("patience must be at least 1 epoch (or None: off)")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are refused."""
        return cls(**data).validate()


@dataclass(frozen=True)
class HeadParam:
    """One hyperparameter of :class:`HeadConfig`, declared once: the CLI flag, the job's command, the Train page's form
    widget and its bounds (:data:`lib.bounds.BOUNDS`) are all derived from this row."""

    field: str  # the HeadConfig field
    flag: str  # the CLI flag (``train --lr``), also what a job's command passes
    label: str  # the form's label
    form_key: str  # the form widget's session key
    bound: str | None = None  # its row in lib.bounds.BOUNDS (numbers)
    choices: tuple[str, ...] = ()  # the allowed values (text)
    widget: str = "number"  # number | slider | radio | select
    column: str = "model"  # where the form puts it: model | training | run
    zero_means_off: bool = False  # 0 (in a flag or the form) stands for None
    fmt: str | None = None  # the form's number format
    help: str = ""


HEAD_PARAMS: tuple[HeadParam, ...] = (
    HeadParam("head", "--head", "Head", "t_head", choices=("linear", "mlp"), widget="radio"),
    HeadParam("hidden", "--hidden", "MLP hidden units", "t_hidden", "hidden", help="MLP hidden units"),
    HeadParam("dropout", "--dropout", "Dropout", "t_dropout", "dropout", widget="slider"),
    HeadParam("weight_decay", "--weight-decay", "Weight decay", "t_wd", "weight_decay", fmt="%.4f"),
    HeadParam("optimizer", "--optimizer", "Optimizer", "t_opt", choices=("adam", "adamw", "sgd"), widget="select"),
    HeadParam("learning_rate", "--lr", "Learning rate", "t_lr", "learning_rate", fmt="%.5f", help="learning rate"),
    HeadParam(
        "lr_schedule", "--lr-schedule", "LR schedule", "t_sched", choices=("constant", "cosine"), widget="select"
    ),
    HeadParam(
        "batch_size",
        "--train-batch-size",
        "Batch size",
        "t_bs",
        "train_batch_size",
        column="training",
        help="examples per optimizer step",
    ),
    HeadParam("epochs", "--epochs", "Epochs", "t_epochs", "epochs", column="training"),
    HeadParam(
        "steps",
        "--steps",
        "Steps (0 = use epochs)",
        "t_steps",
        "steps",
        column="training",
        zero_means_off=True,
        help="total steps (overrides --epochs)",
    ),
    HeadParam(
        "label_smoothing",
        "--label-smoothing",
        "Label smoothing",
        "t_ls",
        "label_smoothing",
        widget="slider",
        column="training",
    ),
    HeadParam(
        "val_fraction",
        "--val-fraction",
        "Validation fraction",
        "t_val",
        "val_fraction",
        widget="slider",
        column="training",
    ),
    HeadParam(
        "patience",
        "--patience",
        "Early-stopping patience (0 = off)",
        "t_patience",
        "patience",
        column="training",
        zero_means_off=True,
        help="early-stopping patience in epochs (0 disables)",
    ),
    HeadParam("seed", "--seed", "Seed", "t_seed", "seed", column="run"),
)


def head_values(config: HeadConfig) -> dict[str, Any]:
    """Each parameter's value as a flag or a form carries it (None as 0 where 0 means off)."""
    out = {}
    for p in HEAD_PARAMS:
        value = getattr(config, p.field)
        out[p.field] = 0 if value is None and p.zero_means_off else value
    return out


def head_from_values(values: dict[str, Any], base: HeadConfig | None = None) -> HeadConfig:
    """A :class:`HeadConfig` from flag or form values (a missing or None value keeps ``base``'s; 0 is None where 0
    means off), validated."""
    config = base or HeadConfig()
    changes: dict[str, Any] = {}
    for p in HEAD_PARAMS:
        value = values.get(p.field)
        if value is None:
            continue
        if p.bound is not None:
            value = (int if bounds.BOUNDS[p.bound].integer else float)(value)
        changes[p.field] = None if (p.zero_means_off and value == 0) else value
    return replace(config, **changes).validate()


@dataclass
class EpochReport:
    """Metrics after one epoch, passed to the progress callback."""

    epoch: float  # whole epochs for a head; a fraction where a budget ends mid-epoch (fine-tuning)
    epochs: float
    loss: float
    accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    elapsed: float


@dataclass
class TrainedHead:
    """Weights of a trained head (numpy), its input standardisation and its history."""

    config: HeadConfig
    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]
    history: list[dict[str, float | None]] = field(default_factory=list)
    best_epoch: int = 0
    steps: int = 0
    seconds: float = 0.0
    temperature: float = (
        1.0  # the logits are divided by it before the softmax (lib.models.calibration; 1: uncalibrated)
    )

    def logits(self, x: np.ndarray, batch: int = 8192) -> np.ndarray:
        """Raw scores ``[N, C]`` for features ``x``."""
        out = [
            head_logits(np.asarray(x[s : s + batch], np.float32), self.mean, self.scale, self.weights, np.matmul, _relu)
            for s in range(0, len(x), batch)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.weights[-1].shape[0]), np.float32)

    def predict_proba(self, x: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """Class probabilities ``[N, C]``: the softmax of the logits over the head's temperature (or
        ``temperature``)."""
        return softmax(self.logits(x) / (self.temperature if temperature is None else temperature))

    def arrays(self) -> dict[str, np.ndarray]:
        """Arrays to store in an ``.npz``."""
        out = {"mean": self.mean, "scale": self.scale, "temperature": np.asarray(self.temperature, np.float32)}
        out.update({f"w{i}": w for i, w in enumerate(self.weights)})
        return out

    @classmethod
    def from_arrays(cls, config: HeadConfig, arrays: Any, history: list[dict[str, Any]] | None = None) -> TrainedHead:
        """Rebuild a head from :meth:`arrays` output."""
        n = len([k for k in arrays.keys() if k.startswith("w")])
        weights = [np.asarray(arrays[f"w{i}"], np.float32) for i in range(n)]
        temperature = (
            float(arrays["temperature"]) if "temperature" in arrays else 1.0
        )  # runs made before calibration: 1
        head = cls(
            config,
            np.asarray(arrays["mean"], np.float32),
            np.asarray(arrays["scale"], np.float32),
            weights,
            history or [],
        )
        head.temperature = temperature
        return head


def head_logits(
    x: Any, mean: Any, scale: Any, weights: list[Any], matmul: Callable[[Any, Any], Any], relu: Callable[[Any], Any]
) -> Any:
    """The head's forward pass, written once for numpy and TensorFlow alike (pass their matmul and relu)."""
    h = (x - mean) / scale
    for i in range(0, len(weights) - 2, 2):
        h = relu(matmul(h, weights[i]) + weights[i + 1])
    return matmul(h, weights[-2]) + weights[-1]


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation row indices, stratified by class, reproducible by seed."""
    if val_fraction <= 0:
        return np.arange(len(labels)), np.zeros(0, dtype=np.int64)
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    classes = len(np.unique(labels))
    # Stratifying needs at least one row per class on each side; tiny subsets get one each.
    n_val = max(round(val_fraction * len(labels)), classes)
    if n_val > len(labels) - classes:
        return idx, np.zeros(0, dtype=np.int64)
    train, val = train_test_split(idx, test_size=n_val, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(val)


def _schedule(cfg: HeadConfig, rows: int) -> tuple[int, int]:
    """Steps per epoch and epochs: ``cfg.steps`` (the dataset repeats, so an "epoch" is just a reporting interval, at
    most ~50 of them), else ``cfg.epochs`` passes over ``rows``."""
    steps_per_epoch = max(1, math.ceil(rows / cfg.batch_size))
    if cfg.steps:
        steps_per_epoch = min(cfg.steps, max(steps_per_epoch, math.ceil(cfg.steps / 50)))
        return steps_per_epoch, math.ceil(cfg.steps / steps_per_epoch)
    return steps_per_epoch, cfg.epochs


def _model(cfg: HeadConfig, dim: int, num_classes: int, total_steps: int) -> Any:
    """The compiled Keras head: linear, or an MLP with input and hidden dropout; the optimizer and its schedule."""
    import keras

    reg = keras.regularizers.L2(cfg.weight_decay) if cfg.weight_decay and cfg.optimizer != "adamw" else None
    # Every layer is named: Keras's automatic names come from a process-wide counter that two threads building heads
    # at once (jobs run in-process) can read alike, and a model with two layers of one name is refused.
    layers: list[Any] = [keras.Input((dim,))]
    if cfg.head == "mlp":
        if cfg.dropout:
            layers.append(keras.layers.Dropout(cfg.dropout / 5, seed=cfg.seed, name="input_dropout"))
        layers.append(keras.layers.Dense(cfg.hidden, activation="relu", kernel_regularizer=reg, name="hidden"))
        if cfg.dropout:
            layers.append(keras.layers.Dropout(cfg.dropout, seed=cfg.seed + 1, name="hidden_dropout"))
    layers.append(keras.layers.Dense(num_classes, kernel_regularizer=reg, name="logits"))
    model = keras.Sequential(layers, name="head")
    lr: Any = cfg.learning_rate
    if cfg.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=total_steps)
    if cfg.optimizer == "adamw":
        opt = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay or 0.0)
    elif cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    elif cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(lr)
    else:
        raise ConfigError(f"optimizer must be adam, adamw or sgd, got {cfg.optimizer!r}")
    model.compile(
        optimizer=opt,
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=False,
    )
    return model


def _reporter(
    history: list[dict[str, float | None]],
    epochs: int,
    t0: float,
    progress: Callable[[EpochReport], None] | None,
    should_stop: Callable[[], bool] | None,
) -> Any:
    """A Keras callback that records each epoch in ``history``, reports it, and stops when ``should_stop`` says so."""
    import keras

    class _Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            report = EpochReport(
                epoch + 1,
                epochs,
                float(logs.get("loss", float("nan"))),
                float(logs.get("accuracy", float("nan"))),
                float(logs["val_loss"]) if "val_loss" in logs else None,
                float(logs["val_accuracy"]) if "val_accuracy" in logs else None,
                time.perf_counter() - t0,
            )
            row: dict[str, float | None] = {
                "epoch": report.epoch,
                "loss": report.loss,
                "accuracy": report.accuracy,
                "val_loss": report.val_loss,
                "val_accuracy": report.val_accuracy,
                "elapsed": report.elapsed,
            }
            history.append(row)
            if progress:
                progress(report)
            if should_stop and should_stop():
                self.model.stop_training = True

    return _Report()


def train_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    num_classes: int,
    cfg: HeadConfig,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    progress: Callable[[EpochReport], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainedHead:
    """Train a head on features; validation rows (if any) drive early stopping."""
    import keras
    import tensorflow as tf

    cfg.validate()
    keras.utils.set_random_seed(cfg.seed)
    x_train = np.asarray(x_train, np.float32)
    mean = x_train.mean(axis=0)
    # Features are post-ReLU averages; a floor on the scale keeps dead units from exploding.
    scale = np.maximum(x_train.std(axis=0), 1e-3).astype(np.float32)
    xt = (x_train - mean) / scale
    has_val = x_val is not None and y_val is not None and len(x_val) > 0
    steps_per_epoch, epochs = _schedule(cfg, len(xt))
    model = _model(cfg, xt.shape[1], num_classes, steps_per_epoch * epochs)
    yt = keras.utils.to_categorical(np.asarray(y_train), num_classes).astype(np.float32)
    train_ds = tf.data.Dataset.from_tensor_slices((xt, yt)).shuffle(
        len(xt), seed=cfg.seed, reshuffle_each_iteration=True
    )
    train_ds = train_ds.repeat().batch(cfg.batch_size).prefetch(2)
    val_data = None
    if has_val:
        xv = (np.asarray(x_val, np.float32) - mean) / scale
        val_data = (xv, keras.utils.to_categorical(np.asarray(y_val), num_classes).astype(np.float32))
    history: list[dict[str, float | None]] = []
    t0 = time.perf_counter()
    callbacks: list[Any] = [_reporter(history, epochs, t0, progress, should_stop)]
    stopper = None
    if has_val and cfg.patience is not None:
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
        callbacks.append(stopper)
    model.fit(
        train_ds,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_data,
        callbacks=callbacks,
        shuffle=False,
        verbose=0,
    )
    best_epoch = len(history)
    if stopper is not None and stopper.stopped_epoch > 0:
        best_epoch = int(stopper.best_epoch) + 1
    weights = [np.asarray(w, np.float32) for layer in model.layers for w in layer.get_weights()]
    return TrainedHead(
        cfg,
        mean.astype(np.float32),
        scale,
        weights,
        history,
        best_epoch,
        steps_per_epoch * len(history),
        time.perf_counter() - t0,
    )
