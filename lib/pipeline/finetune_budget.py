"""Fine-tuning within a time budget, at full scale on a CPU: the ``finetune`` preset (``train --protocol finetune``).

    recipe = FINETUNE_PRESETS["finetune"].with_budget(60)
    manifest = budget_finetune_run(RunRequest(source, backbone), layout, recipe, on_stage=print)

How an hour of two CPU cores is spent (measured on CIFAR-10, see docs/finetuning.md):

- **The backbone is rebuilt in Keras** from the SavedModel's own variables (MobileNet v1's TF Hub modules carry Keras
  layer names), so it can be cut: the first blocks stay frozen, the rest trains. The rebuilt network gives the
  module's features within 1e-4.
- **The frozen prefix runs once.** Its outputs for every training image (and both views of the test images) are cached
  as uint8 (ReLU6 outputs in [0, 6], 6/255 a step) under the cache's ``activations/``, keyed by everything that
  changes them and written in checkpointed chunks, then atomically. Training then costs only the trainable blocks.
- **Augmentation on the cached maps**: each image's maps come from its original or its mirrored view (both cached: a
  mirrored map is not the map of the mirrored image), then a random shift of up to ``shift`` cells (zero padding),
  the feature-map form of CIFAR's crop.
- **Schedule fitted to the budget**: SGD with Nesterov momentum, a short warm-up, then cosine decay to zero over the
  steps the remaining budget holds at the speed measured on this machine (a run asked for 15 minutes trains less,
  never longer). Label smoothing; decoupled weight decay. BatchNorm keeps its ImageNet moving statistics (its scale
  and offset train): in training mode, batch statistics of upsampled CIFAR maps gave features that correlate 0.44
  with the pretrained ones, and accuracy fell below the warm start.
- **Checkpoints** at most every ``CHECKPOINT_S`` seconds under ``finetune/<key>/`` (TensorFlow's checkpoint files,
  the last one kept; the key covers the dataset, backbone, recipe and budget). A cancel saves one first; the same
  request resumes from it, with the same schedule; ``kill -9`` loses at most ``CHECKPOINT_S`` seconds of training.
- **Calibration and test**: a temperature fitted on held-out training images (never the test split), then the test
  split with flip test-time augmentation. The run stores the whole network (uint8 images in, probabilities out).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lib.config import FLIP, ORIGINAL
from lib.data.sources import Dataset, load_dataset, subset_indices
from lib.errors import BackboneError, ConfigError, UserFacingError
from lib.models.calibration import fit_temperature
from lib.models.heads import EpochReport, HeadConfig, TrainedHead
from lib.models.metrics import evaluate_for_run
from lib.models.preprocess import PREPROCESSING_ID
from lib.models.specs import BackboneSpec
from lib.pipeline.training import EpochFn, RunRequest, StageFn, run_manifest, stored_predictions
from lib.runs.export import probability_module, save_module
from lib.runs.manifest import RunManifest
from lib.runs.registry import MODEL_DIR, save_run
from lib.runtimes.backbones import resolve_backbone
from lib.store.atomic import check_free_space, check_writable, read_json, save_npy_atomic, write_json_atomic
from lib.store.layout import FINETUNE_FILES, CacheLayout, artifact_key

BUDGET_VERSION = 2  # 1: MobileNet v1 rebuilt in Keras, uint8 activations of the frozen prefix; 2: true flips
ACTIVATION_SCALE = 6.0 / 255.0  # ReLU6 outputs in [0, 6] stored as uint8
CHECKPOINT_S = 240.0  # seconds of training between checkpoints (a kill -9 loses at most this)
CHUNK = 2048  # images per activation chunk (a resumable unit of caching)
PROGRESS_EVERY = 20  # steps between progress reports


@dataclass(frozen=True)
class BudgetRecipe:
    """How the budget is spent; every field changes the run (and keys its checkpoint)."""

    name: str = "finetune"
    image_size: int = 112  # px the 32x32 images are resized to
    cut: str = "conv_pw_5_relu"  # the last frozen layer: its outputs are cached
    batch_size: int = 64  # images per step
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum 0.9) or "adam"
    learning_rate: float = 0.01  # peak, after warmup_steps (docs/finetuning.md: 0.02 and 0.005 did worse)
    batchnorm: str = "moving"  # "moving": ImageNet's moving statistics kept; "batch": batch statistics while training
    weight_decay: float = 5e-5  # decoupled, per step, times the learning rate
    label_smoothing: float = 0.1
    shift: int = 2  # cells of random translation of the cached maps (2 of 14 at 112 px: a 4-pixel crop at 32)
    warmup_steps: int = 200
    budget_minutes: float = 60.0  # the whole job: caching, training, evaluation and saving
    val_images: int = 2000  # held out of training to fit the temperature (and to show a validation accuracy)
    warm_images: int = 5000  # images the warm-start linear head is fitted on (frozen features)
    reserve_seconds: float = 120.0  # what evaluation, calibration and saving take after training, kept out of budget
    seed: int = 0

    def with_budget(self, minutes: float | None) -> BudgetRecipe:
        """The recipe with another budget (None keeps its own)."""
        return self if minutes is None else replace(self, budget_minutes=float(minutes))

    def validate(self) -> BudgetRecipe:
        """Itself, or :class:`ConfigError` naming what is out of range."""
        if not 1 <= self.budget_minutes <= 24 * 60:
            raise ConfigError(f"--budget-minutes must be from 1 to 1440, got {self.budget_minutes:g}.")
        if not 32 <= self.image_size <= 512 or self.batch_size < 1 or not 0 < self.learning_rate < 1:
            raise ConfigError("The fine-tuning recipe's image size, batch size or learning rate is out of range.")
        if self.optimizer not in ("sgd", "adam") or self.batchnorm not in ("moving", "batch"):
            raise ConfigError("The fine-tuning recipe's optimizer must be sgd or adam, its batchnorm moving or batch.")
        return self


FINETUNE_PRESETS: dict[str, BudgetRecipe] = {"finetune": BudgetRecipe()}


# ------------------------------------------------------------------------------------------ the rebuilt backbone


def keras_mobilenet_v1(spec: BackboneSpec, size: int) -> Any:
    """MobileNet v1 in Keras (``tf_keras.applications``) at ``size`` px with ``spec``'s weights, copied by layer name
    from its SavedModel; input in [-1, 1], output the pooled features. :class:`BackboneError` for any other module."""
    import tensorflow as tf
    import tf_keras as keras

    try:
        module = tf.saved_model.load(spec.handle)
    except Exception as err:
        raise BackboneError(f"Could not load {spec.name} to fine-tune it: {str(err).splitlines()[0][:200]}") from err
    weights = {v.name: v for v in module.variables}
    first = weights.get("conv1/kernel:0")
    if first is None or "conv_pw_13/kernel:0" not in weights:
        raise BackboneError(
            f"The {FINETUNE_PRESETS['finetune'].name} preset fine-tunes MobileNet v1 (a TF Hub module whose variables "
            f"carry Keras layer names, as ../shared/models/mobilenet_v1_*_feature_vector do); {spec.name} is not one. "
            "Use train --finetune for other backbones."
        )
    alpha = int(first.shape[-1]) / 32.0
    model = keras.applications.MobileNet(
        input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None, pooling="avg"
    )
    for w in model.weights:  # a depthwise kernel is "depthwise_kernel" or "kernel", by the Keras that exported it
        found = weights.get(w.name)
        found = found if found is not None else weights.get(w.name.replace("depthwise_kernel", "kernel"))
        if found is None or tuple(found.shape) != tuple(w.shape):
            raise BackboneError(f"{spec.name} has no variable {w.name} of shape {tuple(w.shape)}: not a MobileNet v1.")
        w.assign(found)
    return model


def split_model(full: Any, cut: str) -> tuple[Any, Any]:
    """``full`` as (the layers up to ``cut``, the layers after it as a model on ``cut``'s output)."""
    import tf_keras as keras

    names = [layer.name for layer in full.layers]
    if cut not in names:
        raise ConfigError(f"The backbone has no layer {cut!r} to cut at.")
    prefix = keras.Model(full.input, full.get_layer(cut).output)
    inputs = keras.Input(prefix.output.shape[1:])
    x = inputs
    for layer in full.layers[names.index(cut) + 1 :]:
        x = layer(x)
    return prefix, keras.Model(inputs, x)


def to_model_input(images: Any, size: int) -> Any:
    """uint8 images -> the rebuilt network's input: resized to ``size``, in [-1, 1]."""
    import tensorflow as tf

    x = tf.image.resize(tf.cast(images, tf.float32) / 255.0, (size, size))
    return x * 2.0 - 1.0


# ------------------------------------------------------------------------------------------ cached activations


def activation_key(ds: Dataset, split: str, view: str, spec: BackboneSpec, recipe: BudgetRecipe) -> str:
    """Everything that changes the cached prefix outputs of one split and view."""
    return artifact_key(
        {
            "dataset": ds.fingerprint,
            "split": split,
            "view": view,
            "backbone": spec.identity(),
            "size": recipe.image_size,
            "cut": recipe.cut,
            "scale": ACTIVATION_SCALE,
            "preprocessing": PREPROCESSING_ID,
            "v": BUDGET_VERSION,
        }
    )


def cached_activations(
    layout: CacheLayout,
    ds: Dataset,
    split: str,
    view: str,
    spec: BackboneSpec,
    recipe: BudgetRecipe,
    prefix: Any,
    progress: Callable[[int, int, float | None], None] | None = None,
) -> np.ndarray:
    """The prefix's uint8 outputs for every image of ``split`` (mirrored for ``flip``), memory-mapped: read back if
    cached, else computed in chunks (an interrupted caching resumes from its last whole chunk), written atomically."""
    import tensorflow as tf

    key = activation_key(ds, split, view, spec, recipe)
    npy, manifest = layout.activation_files(key)
    found = read_json(manifest)
    if isinstance(found, dict) and npy.is_file():
        try:
            arr = np.load(npy, mmap_mode="r")
            if list(arr.shape) == found.get("shape") and arr.dtype == np.uint8:
                return arr
        except (OSError, ValueError):
            pass
    check_writable(layout.activations)
    images = ds.images(split)
    n = len(images)
    shape = tuple(int(d) for d in prefix.output.shape[1:])
    per_image = int(np.prod(shape))
    partial = layout.activation_partial(key)
    partial.mkdir(parents=True, exist_ok=True)
    chunks = [(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]
    done = {s for s, e in chunks if _chunk_ok(partial / f"{s:08d}.npy", e - s, shape)}
    check_free_space(layout.activations, per_image * (n + sum(e - s for s, e in chunks if s not in done)), "caching")

    @tf.function(reduce_retracing=True)
    def run(batch: Any) -> Any:
        x = to_model_input(batch, recipe.image_size)
        if view == FLIP:
            x = tf.reverse(x, axis=[2])
        return tf.cast(tf.clip_by_value(tf.round(prefix(x, training=False) / ACTIVATION_SCALE), 0, 255), tf.uint8)

    finished, t0, fresh = sum(e - s for s, e in chunks if s in done), time.perf_counter(), 0
    for s, e in chunks:
        if s in done:
            continue
        block = np.concatenate([run(np.asarray(images[b : min(b + 256, e)])).numpy() for b in range(s, e, 256)])
        save_npy_atomic(partial / f"{s:08d}.npy", block)
        finished, fresh = finished + e - s, fresh + e - s
        if progress:
            progress(finished, n, fresh / max(time.perf_counter() - t0, 1e-9))
    with open(partial / "all.tmp", "wb") as fh:  # plain writes (a full disk is an error, never SIGBUS)
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": (n, *shape)})
        for s, _e in chunks:
            fh.write(np.ascontiguousarray(np.load(partial / f"{s:08d}.npy")).tobytes())
    save_npy_atomic(npy, np.load(partial / "all.tmp", mmap_mode="r"))
    write_json_atomic(manifest, {"key": key, "split": split, "view": view, "shape": [n, *shape], "cut": recipe.cut})
    shutil.rmtree(partial, ignore_errors=True)
    return np.load(npy, mmap_mode="r")


def _chunk_ok(path: Path, rows: int, shape: tuple[int, ...]) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
        return arr.shape == (rows, *shape) and arr.dtype == np.uint8
    except (OSError, ValueError, EOFError):
        return False


# ------------------------------------------------------------------------------------------ training


@dataclass
class BudgetProgress:
    """Where the run is: the stage, the step and epoch, speed, the whole job's ETA and the last loss."""

    stage: str
    step: int
    steps: int
    epoch: float
    images_per_second: float | None
    eta_seconds: float | None
    loss: float | None


ProgressFn = Callable[[BudgetProgress], None]


def checkpoint_key(ds: Dataset, spec: BackboneSpec, limit: int | None, recipe: BudgetRecipe) -> str:
    """A hash of everything that changes training (a checkpoint is only ever resumed by the same request)."""
    return artifact_key(
        {
            "dataset": ds.fingerprint,
            "backbone": spec.identity(),
            "limit": limit,
            "recipe": dataclasses.asdict(recipe),
            "v": BUDGET_VERSION,
        }
    )


def _split_rows(labels: np.ndarray, limit: int | None, val_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows): a stratified ``val_images`` of the (limited) training split held out, at most
    a fifth of each class (at least one image)."""
    rows = subset_indices(labels, limit)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels[rows])
    wanted = max(1, val_images // len(classes))
    held = np.concatenate(
        [
            rng.permutation(rows[labels[rows] == c])[: min(wanted, max(1, int((labels[rows] == c).sum()) // 5))]
            for c in classes
        ]
    )
    return np.setdiff1d(rows, held), np.sort(held)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def budget_finetune_run(
    req: RunRequest,
    layout: CacheLayout,
    recipe: BudgetRecipe,
    on_stage: StageFn | None = None,
    on_epoch: EpochFn | None = None,
    on_progress: ProgressFn | None = None,
    started: float | None = None,
) -> RunManifest:
    """Fine-tune within ``recipe.budget_minutes`` (see the module docs); registers and returns the run's manifest.
    ``started`` (``time.time()`` when the job began) counts what ran before this call against the budget."""
    import tensorflow as tf

    t_job = started if started is not None else time.time()
    recipe = recipe.validate()
    req.validate()
    if req.exclude or req.relabel or req.more_backbones:
        raise ConfigError("The finetune preset trains one backbone on the dataset's own labels and images.")
    stage = on_stage or (lambda _m: None)
    report = on_progress or (lambda _p: None)
    ds = load_dataset(req.source, layout)
    ds.require_classes("Fine-tuning a classifier")
    spec = resolve_backbone(req.backbone)
    if not spec.trainable:
        raise BackboneError(
            f"{spec.name} ({spec.family}) has no trainable variables here, so it cannot be fine-tuned. Use a "
            "SavedModel or TF Hub MobileNet v1 (../shared/models/mobilenet_v1_100_224_feature_vector)."
        )
    tf.keras.utils.set_random_seed(recipe.seed)
    stage(f"Loading {spec.name} as a Keras network ({recipe.image_size} px, trained from {recipe.cut})")
    full = keras_mobilenet_v1(spec, recipe.image_size)
    prefix, suffix = split_model(full, recipe.cut)

    def cache(split: str, view: str) -> np.ndarray:
        label = f"caching the frozen blocks' outputs: {split}/{view}"
        stage(label)

        def progress(done: int, total: int, rate: float | None) -> None:
            left = (total - done) / rate if rate else None
            report(BudgetProgress(label, done, total, 0.0, rate, left, None))

        return cached_activations(layout, ds, split, view, spec, recipe, prefix, progress)

    # Both views of the training images: a mirrored feature map is not the map of the mirrored image (the filters are
    # not symmetric), so the flip augmentation picks between the two cached views instead
    train_views = (cache("train", ORIGINAL), cache("train", FLIP))
    test_acts = {v: cache("test", v) for v in (ORIGINAL, FLIP)}
    labels = ds.labels("train").astype(np.int64)
    train_rows, held_rows = _split_rows(labels, req.limit, recipe.val_images, recipe.seed)
    test_rows = subset_indices(ds.labels("test"), req.limit)
    key = checkpoint_key(ds, spec, req.limit, recipe)
    folder = layout.finetune_checkpoint(key)
    check_writable(folder)
    try:
        trained = _train(
            recipe,
            suffix,
            len(ds.classes),
            train_views,
            labels,
            (train_rows, held_rows),
            folder,
            t_job,
            stage,
            report,
            on_epoch,
        )
    except tf.errors.ResourceExhaustedError as err:
        raise UserFacingError(
            f"Out of memory fine-tuning at batch size {recipe.batch_size}; finished steps are kept in {folder} and "
            "resume when the same request runs again."
        ) from err
    manifest = _evaluate_and_save(
        req, layout, recipe, ds, spec, full, trained, (train_views[0], test_acts), (held_rows, test_rows), t_job, stage
    )
    shutil.rmtree(folder, ignore_errors=True)  # the run holds the model now; the checkpoint is this project's own
    return manifest


@dataclass
class _Trained:
    """What training produced, for evaluation and saving."""

    model: Any  # cached maps (uint8) -> logits
    head: Any  # its Dense layer
    history: list[dict[str, Any]]
    steps: int
    train_seconds: float
    images_per_second: float
    resumed_from_step: int


def _augment(tf: Any, x: Any, shift: int) -> Any:
    """A batch of maps, each shifted by up to ``shift`` cells (zero fill): CIFAR's crop on the cached maps, in one
    vectorised op (no per-image pipeline). The flip is chosen when the batch is read (see :func:`_batches`)."""
    n = tf.shape(x)[0]
    if not shift:
        return x
    d = tf.cast(tf.random.uniform((n, 2), -shift, shift + 1, dtype=tf.int32), tf.float32)
    ones, zeros = tf.ones((n, 1)), tf.zeros((n, 1))
    transforms = tf.concat([ones, zeros, d[:, :1], zeros, ones, d[:, 1:], zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x,
        transforms=transforms,
        output_shape=tf.shape(x)[1:3],
        interpolation="NEAREST",
        fill_mode="CONSTANT",
        fill_value=0.0,
    )


def make_optimizer(keras: Any, recipe: BudgetRecipe, lr: Any) -> Any:
    """The recipe's optimizer at learning rate ``lr`` (a number or a schedule callable)."""
    if recipe.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)


def _batches(views: tuple[np.ndarray, np.ndarray], labels: np.ndarray, rows: np.ndarray, batch: int, seed: int) -> Any:
    """Endless shuffled batches of cached maps (uint8) and labels, read from the memory maps in sorted order; each
    image's maps come from its original or its mirrored view at random (the flip augmentation)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(rows)
        for s in range(0, len(order) - batch + 1, batch):
            idx = np.sort(order[s : s + batch])
            mirrored = rng.random(len(idx)) < 0.5
            maps = np.empty((len(idx), *views[0].shape[1:]), np.uint8)
            maps[~mirrored] = views[0][idx[~mirrored]]
            maps[mirrored] = views[1][idx[mirrored]]
            yield maps, labels[idx]


def _logits(model: Any, acts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [np.asarray(model(np.asarray(acts[rows[s : s + 500]]), training=False)) for s in range(0, len(rows), 500)]
    )


def _train(
    recipe: BudgetRecipe,
    suffix: Any,
    num_classes: int,
    views: tuple[np.ndarray, np.ndarray],
    labels: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray],
    folder: Path,
    t_job: float,
    stage: StageFn,
    report: ProgressFn,
    on_epoch: EpochFn | None,
) -> _Trained:
    """Train the suffix and a head on the cached maps for the steps the budget holds (see the module docs)."""
    import tensorflow as tf
    import tf_keras as keras
    from sklearn.linear_model import LogisticRegression

    train_rows, held_rows = rows
    acts = views[0]
    shape = tuple(int(d) for d in acts.shape[1:])
    inputs = keras.Input(shape, dtype=tf.uint8)
    head = keras.layers.Dense(num_classes, name="classes")
    model = keras.Model(inputs, head(suffix(tf.cast(inputs, tf.float32) * ACTIVATION_SCALE)))
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    total_var = tf.Variable(0, dtype=tf.int64, trainable=False)  # planned steps (0: not planned yet)
    warm = recipe.warmup_steps

    def lr() -> Any:
        step, total = tf.cast(step_var, tf.float32), tf.cast(tf.maximum(total_var, warm + 1), tf.float32)
        progress = tf.clip_by_value((step - warm) / (total - warm), 0.0, 1.0)
        cosine = recipe.learning_rate * 0.5 * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < warm, recipe.learning_rate * (step + 1.0) / warm, cosine)

    optimizer = make_optimizer(keras, recipe, lr)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var, total=total_var)
    manager = tf.train.CheckpointManager(checkpoint, str(folder), max_to_keep=1)
    history_json = folder / FINETUNE_FILES.history
    history: list[dict[str, Any]] = []
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        history = json.loads(history_json.read_text()) if history_json.exists() else []
        stage(f"Resuming at step {int(step_var.numpy()):,} of {int(total_var.numpy()):,} from {folder}")
    else:
        stage("Warm start: a linear head on the frozen network's features")
        warm_rows = np.random.default_rng(recipe.seed).permutation(train_rows)[: recipe.warm_images]
        feats = np.concatenate(
            [
                np.asarray(suffix(np.asarray(acts[np.sort(warm_rows[s : s + 500])], np.float32) * ACTIVATION_SCALE))
                for s in range(0, len(warm_rows), 500)
            ]
        )
        ys = labels[np.concatenate([np.sort(warm_rows[s : s + 500]) for s in range(0, len(warm_rows), 500)])]
        mu, sd = feats.mean(axis=0), feats.std(axis=0) + 1e-6
        clf = LogisticRegression(max_iter=300).fit((feats - mu) / sd, ys)
        w = (clf.coef_ / sd).T.astype(np.float32)
        head.set_weights([w, (clf.intercept_ - (mu / sd) @ clf.coef_.T).astype(np.float32)])
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / FINETUNE_FILES.config, {"key": folder.name, "recipe": dataclasses.asdict(recipe)})
    start_step = int(step_var.numpy())
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing)
    decayed = [v for v in model.trainable_variables if "kernel" in v.name]

    @tf.function
    def train_step(maps: Any, y: Any) -> tuple[Any, Any]:
        x = _augment(tf, tf.cast(maps, tf.float32) * ACTIVATION_SCALE, recipe.shift)
        with tf.GradientTape() as tape:
            # "moving": BatchNorm keeps its moving statistics (its scale and offset train); "batch": batch
            # statistics, the moving ones follow them (see docs/finetuning.md for what each gave)
            logits = head(suffix(x, training=recipe.batchnorm == "batch"))
            loss = loss_fn(tf.one_hot(y, num_classes), logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        rate = lr()
        for v in decayed:
            v.assign_sub(rate * recipe.weight_decay * v)
        step_var.assign_add(1)
        return loss, tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))

    steps_per_epoch = max(1, len(train_rows) // recipe.batch_size)
    data = _batches(views, labels, train_rows, recipe.batch_size, recipe.seed + start_step)
    t0 = last_save = time.perf_counter()
    losses: list[float] = []
    accs: list[float] = []
    rate_steps: float | None = None

    def save() -> None:
        manager.save()
        write_json_atomic(history_json, history)

    def point() -> None:
        held = _logits(model, acts, held_rows)
        val = float((held.argmax(1) == labels[held_rows]).mean())
        step = int(step_var.numpy())
        row = {
            "epoch": round(step / steps_per_epoch, 3),
            "loss": float(np.mean(losses[-200:])),
            "accuracy": float(np.mean(accs[-200:])),
            "val_accuracy": val,
            "elapsed": round(time.perf_counter() - t0, 1),
            "step": step,
        }
        history.append(row)
        if on_epoch:
            planned = int(total_var.numpy()) / steps_per_epoch
            on_epoch(EpochReport(row["epoch"], planned, row["loss"], row["accuracy"], None, val, row["elapsed"]))

    stage(f"Fine-tuning from {recipe.cut} ({recipe.image_size} px, batch {recipe.batch_size})")
    try:
        while True:
            x, y = next(data)
            loss, acc = train_step(x, y)
            losses.append(float(loss))
            accs.append(float(acc))
            done = int(step_var.numpy()) - start_step
            if int(total_var.numpy()) == 0 and done == 30:  # plan the schedule from the measured speed
                rate = done / (time.perf_counter() - t0)
                left = recipe.budget_minutes * 60 - (time.time() - t_job) - recipe.reserve_seconds
                total_var.assign(max(int(step_var.numpy()) + 1, int(step_var.numpy() + rate * left)))
            step, total = int(step_var.numpy()), int(total_var.numpy())
            if done and done % PROGRESS_EVERY == 0:
                rate_steps = done / (time.perf_counter() - t0)
                eta = (max(total - step, 0) / rate_steps + recipe.reserve_seconds) if total else None
                epochs = total / steps_per_epoch if total else 0.0
                report(
                    BudgetProgress(
                        f"fine-tuning: epoch {step / steps_per_epoch:.2f} of {epochs:.2f}, loss "
                        f"{np.mean(losses[-PROGRESS_EVERY:]):.3f}",
                        step,
                        total,
                        step / steps_per_epoch,
                        rate_steps * recipe.batch_size,
                        eta,
                        float(loss),
                    )
                )
            if total and step >= total:
                break
            if time.perf_counter() - last_save > CHECKPOINT_S:
                point()
                save()
                last_save = time.perf_counter()
    except KeyboardInterrupt:  # a cancel (JobCancelled) or Ctrl-C: what is done is kept, and resumes
        save()
        raise
    point()
    save()
    seconds = time.perf_counter() - t0
    done = int(step_var.numpy()) - start_step
    return _Trained(
        model, head, history, int(step_var.numpy()), seconds, done * recipe.batch_size / max(seconds, 1e-9), start_step
    )


def _evaluate_and_save(
    req: RunRequest,
    layout: CacheLayout,
    recipe: BudgetRecipe,
    ds: Dataset,
    spec: BackboneSpec,
    full: Any,
    trained: _Trained,
    acts: tuple[np.ndarray, dict[str, np.ndarray]],
    rows: tuple[np.ndarray, np.ndarray],
    t_job: float,
    stage: StageFn,
) -> RunManifest:
    """Calibrate on the held-out rows, score the test split with flip TTA, and save the run with its whole network."""
    import tensorflow as tf

    stage("Calibrating and evaluating")
    train_acts, test_acts = acts
    held_rows, test_rows = rows
    y_held = ds.labels("train")[held_rows]
    held_logits = _logits(trained.model, train_acts, held_rows)
    temperature = fit_temperature(lambda t: _softmax(held_logits / t), y_held)
    test_logits = [_logits(trained.model, test_acts[v], test_rows) for v in (ORIGINAL, FLIP)]
    probs = np.mean([_softmax(lg / temperature) for lg in test_logits], axis=0)
    raw = np.mean([_softmax(lg) for lg in test_logits], axis=0)
    y_test = ds.labels("test")[test_rows]
    report = evaluate_for_run(y_test, probs, ds.classes, stage)
    val_accuracy = float((held_logits.argmax(1) == y_held).mean())
    dense = [np.asarray(a, np.float32) for a in trained.head.get_weights()]
    head = TrainedHead(
        HeadConfig(head="linear", seed=recipe.seed),
        np.zeros(dense[0].shape[0], np.float32),
        np.ones(dense[0].shape[0], np.float32),
        dense,
        trained.history,
    )
    head.temperature = temperature
    minutes = (time.time() - t_job) / 60
    req = replace(req, protocol=recipe.name, image_sizes=(recipe.image_size,), train_views=(ORIGINAL, FLIP), tta=True)
    manifest = run_manifest(
        req,
        ds,
        spec,
        (recipe.image_size,),
        head.config,
        trained.history,
        report,
        timings={
            "extract_seconds": 0.0,
            "train_seconds": round(trained.train_seconds, 3),
            "job_minutes": round(minutes, 2),
        },
        val_accuracy=val_accuracy,
        finetuned=True,
        best_epoch=len(trained.history),
        finetune={
            **dataclasses.asdict(recipe),
            "steps": trained.steps,
            "epochs": round(trained.steps * recipe.batch_size / max(len(ds.labels("train")) - len(held_rows), 1), 2),
            "images_per_second": round(trained.images_per_second, 1),
            "temperature": round(temperature, 4),
            "resumed_from_step": trained.resumed_from_step,
            "ece_uncalibrated": evaluate_for_run(y_test, raw, ds.classes)["calibration"]["ece"],
            "held_out_images": len(held_rows),
            "job_minutes": round(minutes, 2),
        },
    )
    predictions = stored_predictions(y_test, probs, test_rows, raw)
    stage("Saving the run (the whole fine-tuned network)")
    size, weights, bias = recipe.image_size, dense[0], dense[1]

    def probabilities(images: Any) -> Any:
        x = to_model_input(images, size)
        views = [full(x, training=False), full(tf.reverse(x, axis=[2]), training=False)]
        return tf.add_n([tf.nn.softmax((tf.matmul(f, weights) + bias) / temperature) for f in views]) / 2.0

    module = probability_module(probabilities, list(ds.classes), [size], full)
    save_run(layout, manifest, head, predictions, lambda folder: save_module(module, folder / MODEL_DIR))
    return manifest
