"""Is the data right? Label issues (out-of-sample probabilities ranked by cleanlab) and near-duplicates (exact
cosine nearest neighbours), from one backbone's cached features of the whole train and test splits.

    audit = run_audit(source, backbone, 128, layout, progress=print)    # computed once, then read back
    audit.label_issues()[:5]          # [{"split", "index", "given", "suggested", "score"}, ...], worst first
    audit.duplicates(threshold=0.95)  # [{"split_a", "index_a", "split_b", "index_b", "similarity"}, ...]

**Label issues.** Every image gets probabilities from heads that never saw it: the train and test splits are pooled
and cut into stratified folds (default 5), each fold predicted by a head trained on the others (see
:func:`out_of_sample_probabilities`).
``cleanlab.filter.find_label_issues`` flags the images whose given label disagrees with those probabilities
(confident learning sizes the set; :data:`FILTER_BY` picks the images), and the flags are ranked by self-confidence. The
``score`` is
``1 - p(given label)``: higher is worse. The head is chosen by measurement on CIFAR-10N's human label errors (see
:func:`audit_head`).

**Near-duplicates.** Features are L2-normalised and every image's most similar image is found exactly (a full
matrix product in chunks, nothing approximate): test against train (leakage), and within each split. Each
image keeps its nearest neighbour and its cosine similarity, so any threshold can be applied afterwards.

The result is an artifact (``audits/<key>.npz``) keyed by the features' keys, the folds, the seed, the head
and the audit version; written atomically, with a checksum so a damaged or stale one is recomputed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lib.analysis import duplicates as dup
from lib.analysis.duplicates import PAIR_BUDGET, SAME_PHOTO
from lib.config import FLIP, ORIGINAL, SEED, VIEWS
from lib.data.labels import labels_digest, relabelled
from lib.errors import ConfigError
from lib.models.calibration import fit_temperature
from lib.models.heads import softmax, train_head
from lib.models.protocols import PROTOCOLS
from lib.pipeline.whole import whole_dataset
from lib.runtimes import AUTO, DEFAULT_RUNTIME
from lib.store.atomic import load_npz_checked, save_npz_checked
from lib.store.layout import CacheLayout, artifact_key

AUDIT_VERSION = (
    4  # 2: heads on both views, several backbones, calibrated probabilities; 3: near-duplicates checked on the pixels;
)
# 4: folds pooled over the splits, two rounds
DEFAULT_FOLDS = 5
# Whether cleanlab flags and ranks the calibrated probabilities (True) or the heads' own (False). Temperature scaling
# softens over-confident heads (T > 1), and confident learning then counts fewer images as confidently of another
# class: on a synthetic set with 30 flipped training labels it found 25 calibrated and 29 raw. The pages show the
# calibrated probabilities either way.
RANK_CALIBRATED = False  # the heads train on both and average both, as the best preset does
DEFAULT_THRESHOLD = 0.85  # cosine similarity from which two images count as near-duplicates (see the README)
MIN_STEPS = 300  # optimizer steps of each audit head, at least
# A small set's heads take batches of at most a quarter of their rows (never fewer than MIN_BATCH): with the preset's
# 512 a head on 800 rows made 300 steps over 64% of them each, 192 passes, 2.6 times the arithmetic of batches of 200
# for the same steps. Sets of 2,048 rows and more keep the preset's batch (the measured figures are unchanged).
MIN_BATCH = 64
# How cleanlab sizes the flagged set: as many images as its confident joint estimates to be mislabelled, those of lowest
# self-confidence. Measured on CIFAR-10N aggre (README): F1 0.664 against 0.592 for cleanlab's default
# (prune_by_noise_rate), 0.648 prune_by_class, 0.610 both, 0.551 confident_learning or predicted_neq_given.
FILTER_BY = "low_self_confidence"
# features wider than this are reduced to their principal components before the heads (measured: see the README)
DIMS = 256
AUDIT_EPOCHS = 6  # per head and round
# 2: fit the heads again without the images the first round flags (+0.016 at 4,505 on CIFAR-10N, but 55 s more: README)
ROUNDS = 1

ProgressFn = Callable[[str, float], None]  # (stage, fraction of the whole audit done)


def audit_head() -> Any:
    """The head behind the out-of-sample probabilities: the ``best`` preset's MLP, narrower (512) and shorter
    (:data:`AUDIT_EPOCHS` epochs), without label smoothing, on at most :data:`DIMS` principal components of the
    features.

    Measured on CIFAR-10N aggre (5 folds over train + test, mirrored images too; README): on three backbones' features
    (v1 @ 128, Lite0 @ 224, v2 @ 224) this head on 256 components ranks 0.649 of its top 4,505 as real errors in one
    round and 0.665 in two (:data:`ROUNDS`; one is kept for time); a linear head on all 3,584 features 0.643 in one
    round. The full-width MLP does not fit the audit's three minutes on 2 cores with several backbones.

    Confident learning counts an image as confidently of class j when p(j) reaches class j's average
    self-confidence; label smoothing caps every probability near 0.9 and hides about one flipped label in
    five from that count (measured on a synthetic set with flipped labels: 24 of 30 found with smoothing
    0.1, 29 of 30 without)."""

    return dataclasses.replace(
        PROTOCOLS["best"].head, val_fraction=0.0, label_smoothing=0.0, hidden=512, epochs=AUDIT_EPOCHS
    )


def _fitted_steps(cfg: Any, rows: int) -> Any:
    """The preset's epochs, but never fewer than :data:`MIN_STEPS` optimizer steps (a small set would get a handful),
    in batches of at most a quarter of the rows (:data:`MIN_BATCH`)."""
    import math

    batch = min(cfg.batch_size, max(MIN_BATCH, rows // 4))
    return dataclasses.replace(cfg, batch_size=batch, steps=max(MIN_STEPS, cfg.epochs * math.ceil(rows / batch)))


@dataclass
class OutOfSample:
    """Out-of-sample probabilities per split: as the heads give them (``raw``: what cleanlab ranks and flags, see
    :data:`RANK_CALIBRATED`) and calibrated (``calibrated``: what is shown), with the temperature between them."""

    raw: dict[str, np.ndarray]
    calibrated: dict[str, np.ndarray]
    temperature: float


def out_of_sample_probabilities(
    views: dict[str, list[np.ndarray]],
    labels: dict[str, np.ndarray],
    num_classes: int,
    folds: int = DEFAULT_FOLDS,
    seed: int = SEED,
    head: Any = None,
    progress: ProgressFn | None = None,
    rounds: int = ROUNDS,
    dims: int | None = DIMS,
) -> OutOfSample:
    """Probabilities for every image of every split from heads that never trained on it, before and after calibration.

    ``views`` maps a split to its features per view (original first, then for instance the mirrored images; rows
    aligned with ``labels``). The splits are pooled and cut into ``folds`` stratified folds: each fold's images get
    the probabilities of a head trained on the other folds of every split, on every view, and each image's
    probabilities average its views, as the ``best`` preset does. Pooling lets the training images' heads learn from
    the test images too (and the other way round): measured on CIFAR-10N, it ranks more real errors first than
    heads on the training folds only (see the README). With ``rounds`` = 2 the heads are fitted again without the
    images the first round flags (their labels are suspect), which keeps them from learning the errors they are to
    find. Features wider than ``dims`` are first projected onto their ``dims`` principal components (:func:`reduced`),
    which makes a head on several backbones cheap enough for the audit's time budget. One temperature
    (:mod:`lib.models.calibration`) is fitted on the pooled out-of-sample logits against the
    given labels and applied to every split. :class:`ConfigError` if a class has fewer images than folds."""
    from sklearn.model_selection import StratifiedKFold

    splits = list(labels)
    y = np.concatenate([np.asarray(labels[s]) for s in splits]).astype(np.int64)
    counts = np.bincount(y, minlength=num_classes)
    if folds < 2:
        raise ConfigError(f"An audit needs at least 2 folds, got {folds}.")
    if counts.min() < folds:
        small = int(np.argmin(counts))
        raise ConfigError(
            f"Class {small} has {int(counts[small])} images, fewer than the {folds} folds: use fewer folds (--folds) "
            "or more images."
        )
    cfg = head or audit_head()
    n_views = min(len(views[s]) for s in splits)
    x = [
        np.concatenate([views[s][i] for s in splits]) if len(splits) > 1 else views[splits[0]][i]
        for i in range(n_views)
    ]
    if dims and x[0].shape[1] > dims and len(y) > 2 * dims:
        if progress:
            progress(f"label issues: {x[0].shape[1]:,} features reduced to {dims} principal components", 0.0)
        x = reduced(x, dims, seed)
    fold_of = np.zeros(len(y), np.int64)
    for k, (_fit, held) in enumerate(
        StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    ):
        fold_of[held] = k

    def probs_at(stack: np.ndarray, t: float) -> np.ndarray:
        return np.mean([softmax(z / t) for z in stack], axis=0).astype(np.float32)

    keep = np.ones(len(y), bool)
    logits = np.zeros((n_views, len(y), num_classes), np.float32)
    for r in range(rounds):
        for k in range(folds):
            if progress:
                progress(
                    f"label issues: round {r + 1}/{rounds}, fold {k + 1}/{folds}", (r * folds + k) / (rounds * folds)
                )
            rows = np.flatnonzero((fold_of != k) & keep)
            held = np.flatnonzero(fold_of == k)
            xs = np.concatenate([v[rows] for v in x])
            model = train_head(
                xs,
                np.tile(y[rows], n_views),
                num_classes,
                _fitted_steps(dataclasses.replace(cfg, seed=seed + k), len(xs)),
            )
            del xs
            for i, v in enumerate(x):
                logits[i, held] = model.logits(v[held])
        if r + 1 < rounds:
            keep = np.ones(len(y), bool)
            keep[label_issue_order(y, probs_at(logits, 1.0))] = False
    temperature = fit_temperature(lambda t: probs_at(logits, t), y)
    raw, calibrated = probs_at(logits, 1.0), probs_at(logits, temperature)
    bounds = np.cumsum([0] + [len(labels[s]) for s in splits])
    by_split = {s: slice(int(bounds[i]), int(bounds[i + 1])) for i, s in enumerate(splits)}
    return OutOfSample(
        {s: raw[r] for s, r in by_split.items()}, {s: calibrated[r] for s, r in by_split.items()}, temperature
    )


def reduced(views: list[np.ndarray], dims: int, seed: int = SEED) -> list[np.ndarray]:
    """Every view standardised (with the first view's mean and spread) and projected onto the first view's ``dims``
    principal components (scikit-learn's randomized PCA, fitted on at most 20,000 rows), as float32."""
    from sklearn.decomposition import PCA

    first = views[0]
    mean = first.mean(axis=0)
    scale = np.maximum(first.std(axis=0), 1e-3)
    rows = np.random.default_rng(seed).permutation(len(first))[:20000]
    pca = PCA(dims, svd_solver="randomized", random_state=seed).fit((first[rows] - mean) / scale)
    return [np.asarray(pca.transform((v - mean) / scale), np.float32) for v in views]


def label_issue_order(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Indices cleanlab flags as label issues (:data:`FILTER_BY`), worst (lowest self-confidence) first."""
    from cleanlab.filter import find_label_issues

    if len(labels) == 0:
        return np.zeros(0, np.int64)
    found = find_label_issues(
        np.asarray(labels), np.asarray(probs), filter_by=FILTER_BY, return_indices_ranked_by="self_confidence"
    )
    return np.asarray(found, np.int64)


@dataclass
class Audit:
    """One audit's arrays (see the module docs); ``splits`` maps a split to its given labels."""

    classes: list[str]
    labels: dict[str, np.ndarray]
    probs: dict[str, np.ndarray]
    issues: dict[str, np.ndarray]  # split -> indices flagged by cleanlab, worst first
    neighbours: dict[
        str, tuple[np.ndarray, np.ndarray]
    ]  # "test>train", "train>train", "test>test" -> (index, similarity)
    seconds: float
    key: str = ""
    temperature: float = 1.0  # the out-of-sample probabilities' calibration (lib.models.calibration)
    # "test>train", "train>train", "test>test" -> (a, b, feature similarity, same-photo score) of every candidate pair
    # checked on the pixels (lib.analysis.duplicates); empty if the images were not at hand
    photos: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)

    def label_issues(self, split: str | None = None, given: int | None = None) -> list[dict[str, Any]]:
        """Flagged images, worst (highest score) first; optionally of one split or one given class."""
        out = []
        for name in [split] if split else list(self.issues):
            for i in self.issues.get(name, np.zeros(0, np.int64)):
                label = int(self.labels[name][i])
                if given is not None and label != given:
                    continue
                p = self.probs[name][i]
                out.append(
                    {
                        "split": name,
                        "index": int(i),
                        "given": self.classes[label],
                        "suggested": self.classes[int(p.argmax())],
                        "score": round(float(1.0 - p[label]), 4),
                    }
                )
        return sorted(out, key=lambda r: -r["score"])

    def duplicates(self, threshold: float = DEFAULT_THRESHOLD) -> list[dict[str, Any]]:
        """Pairs at or above ``threshold``, most similar first: each test image with its nearest training
        image, and each image with its nearest other image of the same split (a pair listed once)."""
        pairs: dict[tuple[str, int, str, int], float] = {}
        for name, (index, sims) in self.neighbours.items():
            a_split, b_split = name.split(">")
            for i in np.flatnonzero(sims >= threshold):
                a, b = (a_split, int(i)), (b_split, int(index[i]))
                if a_split == b_split and b < a:
                    a, b = b, a
                pairs[(*a, *b)] = float(sims[i])
        rows = [
            {"split_a": k[0], "index_a": k[1], "split_b": k[2], "index_b": k[3], "similarity": round(v, 5)}
            for k, v in pairs.items()
        ]
        return sorted(rows, key=lambda r: (-r["similarity"], r["split_a"], r["index_a"]))

    def same_photos(self, min_score: float | None = None) -> list[dict[str, Any]]:
        """Candidate pairs the pixel check confirmed as one photograph (score at least ``min_score``, default
        :data:`lib.analysis.duplicates.SAME_PHOTO`), the highest score first, with their feature similarity."""

        low = SAME_PHOTO if min_score is None else min_score
        rows = [
            {
                "split_a": name.split(">")[0],
                "index_a": int(a),
                "split_b": name.split(">")[1],
                "index_b": int(b),
                "similarity": round(float(s), 5),
                "photo_score": round(float(p), 4),
            }
            for name, arrays in self.photos.items()
            for a, b, s, p in zip(*arrays)
            if p >= low
        ]
        return sorted(rows, key=lambda r: (-r["photo_score"], -r["similarity"]))

    @property
    def photos_checked(self) -> bool:
        """Whether near-duplicate candidates were checked on the pixels (audits since version 3)."""
        return bool(self.photos)

    def leaked_test_images(self, threshold: float | None = DEFAULT_THRESHOLD) -> np.ndarray:
        """Test indices whose nearest training image is at or above ``threshold`` (feature cosine); with ``threshold``
        None, those with a training image the pixel check confirmed as the same photograph."""
        if threshold is None:
            return np.unique(
                [r["index_a"] for r in self.same_photos() if (r["split_a"], r["split_b"]) == ("test", "train")]
            ).astype(np.int64)
        if "test>train" not in self.neighbours:
            return np.zeros(0, np.int64)
        return np.flatnonzero(self.neighbours["test>train"][1] >= threshold)


PHOTO_PARTS = ("a", "b", "sim", "score")  # the arrays of Audit.photos, as stored


def audit_key(feature_keys: dict[str, str], folds: int, seed: int, head: Any, labels: str = "") -> str:
    """A hash of everything that changes an audit (``labels``: the digest of replacement labels, if any)."""
    parts = {
        "features": feature_keys,
        "folds": folds,
        "seed": seed,
        "head": dataclasses.asdict(head),
        "min_steps": MIN_STEPS,
        "min_batch": MIN_BATCH,
        "rounds": ROUNDS,
        "dims": DIMS,
        "filter_by": FILTER_BY,
        "pairs": PAIR_BUDGET,
        "v": AUDIT_VERSION,
    }
    return artifact_key(parts | ({"labels": labels} if labels else {}))


def _arrays(audit: Audit) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for split in audit.labels:
        out[f"labels.{split}"], out[f"probs.{split}"], out[f"issues.{split}"] = (
            audit.labels[split],
            audit.probs[split],
            audit.issues[split],
        )
    for name, (index, sims) in audit.neighbours.items():
        out[f"nn_index.{name}"], out[f"nn_sim.{name}"] = index, sims
    for name, arrays in audit.photos.items():
        out.update({f"photo_{part}.{name}": arr for part, arr in zip(PHOTO_PARTS, arrays, strict=True)})
    return out


def save_audit(path: Path, audit: Audit, feature_keys: dict[str, str] | None = None) -> None:
    """Write the audit atomically, with a checksum over every array; ``feature_keys`` (split -> the features it was
    computed from) tell a bundle which dataset and backbone it belongs to."""

    meta = {
        "classes": audit.classes,
        "seconds": audit.seconds,
        "version": AUDIT_VERSION,
        "feature_keys": feature_keys or {},
        "temperature": audit.temperature,
    }
    save_npz_checked(path, _arrays(audit), meta)


def load_audit(path: Path, expected: dict[str, int]) -> Audit | None:
    """The stored audit, or None if it is missing, damaged (checksum), stale (version) or of other sizes."""

    loaded = load_npz_checked(path)
    if loaded is None or loaded[0].get("version") != AUDIT_VERSION:
        return None
    meta, arrays = loaded
    splits = sorted(
        {k.split(".", 1)[1] for k in arrays if k.startswith("labels.")}, key=lambda s: (s != "train", s)
    )  # train first
    if {s: len(arrays[f"labels.{s}"]) for s in splits} != expected:
        return None
    neighbours = {
        k.split(".", 1)[1]: (arrays[k], arrays["nn_sim." + k.split(".", 1)[1]])
        for k in arrays
        if k.startswith("nn_index.")
    }
    names = [k.split(".", 1)[1] for k in arrays if k.startswith("photo_a.")]
    photos = {n: tuple(arrays[f"photo_{part}.{n}"] for part in PHOTO_PARTS) for n in names}
    return Audit(
        list(meta["classes"]),
        {s: arrays[f"labels.{s}"] for s in splits},
        {s: arrays[f"probs.{s}"] for s in splits},
        {s: arrays[f"issues.{s}"] for s in splits},
        neighbours,
        float(meta.get("seconds", 0.0)),
        Path(path).stem,
        float(meta.get("temperature", 1.0)),
        photos,
    )


def compute_audit(
    classes: list[str],
    features: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    folds: int = DEFAULT_FOLDS,
    seed: int = SEED,
    progress: ProgressFn | None = None,
    model_features: dict[str, dict[str, np.ndarray]] | None = None,
    images: dict[str, np.ndarray] | None = None,
) -> Audit:
    """Label issues and neighbours of a ``train`` (and optional ``test``) split's features. ``model_features`` (split ->
    view -> features; ``original`` and optionally ``flip``) are what the heads learn from when given (several
    backbones concatenated, say); the neighbour search always uses ``features``. With ``images`` (split -> uint8
    images), candidate near-duplicates are checked on the pixels (:mod:`lib.analysis.duplicates`)."""

    t0 = time.perf_counter()
    report = progress or (lambda _stage, _f: None)
    model = model_features or {s: {ORIGINAL: f} for s, f in features.items()}
    views = {s: [v[ORIGINAL], *([v[FLIP]] if FLIP in v else [])] for s, v in model.items()}
    oos = out_of_sample_probabilities(
        views, {s: labels[s] for s in model}, len(classes), folds, seed, progress=lambda s, f: report(s, 0.7 * f)
    )
    probs = oos.calibrated
    ranked = oos.calibrated if RANK_CALIBRATED else oos.raw
    issues = {split: label_issue_order(labels[split], ranked[split]) for split in probs}
    unit = {split: dup.normalise(features[split]) for split in probs}
    searches = [("test>train", "test", "train"), ("train>train", "train", "train"), ("test>test", "test", "test")]
    searches = [s for s in searches if s[1] in unit and s[2] in unit]
    neighbours, candidates = {}, {}
    for n, (name, a, b) in enumerate(searches):
        report(f"near-duplicates: {a} against {b}", 0.7 + 0.2 * n / len(searches))
        neighbours[name] = dup.nearest_neighbours(unit[a], unit[b], same=a == b)
        top = dup.top_neighbours(unit[a], unit[b]) if a != b else neighbours[name]
        candidates[name] = dup.candidate_pairs(*top, same_split=a == b)
    photos = {}
    if images is not None:
        # The most similar candidates of each search first, up to its budget, checked on the pixels.
        for n, (name, (rows_a, rows_b, sim)) in enumerate(candidates.items()):
            budget = dup.PAIR_BUDGET.get(name, dup.MAX_PAIRS)
            keep = np.zeros(len(sim), bool)
            keep[np.argsort(-sim, kind="stable")[:budget]] = True
            a_split, b_split = name.split(">")
            report(
                f"near-duplicates: {int(keep.sum()):,} {a_split}~{b_split} candidates checked on the pixels",
                0.9 + 0.1 * n / len(candidates),
            )
            photos[name] = (
                rows_a[keep],
                rows_b[keep],
                sim[keep],
                dup.confirm(images[a_split], images[b_split], rows_a[keep], rows_b[keep]),
            )
    report("done", 1.0)
    return Audit(
        list(classes),
        {s: np.asarray(labels[s]) for s in probs},
        probs,
        issues,
        neighbours,
        time.perf_counter() - t0,
        temperature=oos.temperature,
        photos=photos,
    )


Parts = tuple[
    tuple[str, "int | None"], ...
]  # further (backbone, size) whose features the audit's heads also learn from


def _audit_target(
    source: str,
    backbone: str,
    image_size: int | None,
    layout: CacheLayout,
    runtime: str,
    folds: int,
    seed: int,
    labels: Any = None,
    more: Parts = (),
    views: tuple[str, ...] = VIEWS,
) -> tuple[Any, Path]:

    whole = whole_dataset(
        source, backbone, image_size, layout, runtime, "An audit", splits=("train", "test"), more=more, views=views
    )
    digest = labels_digest(labels) if labels else ""
    return whole, layout.audit_file(audit_key(whole.feature_keys, folds, seed, audit_head(), digest))


def cached_audit(
    source: str,
    backbone: str,
    image_size: int | None,
    layout: CacheLayout,
    runtime: str = DEFAULT_RUNTIME,
    folds: int = DEFAULT_FOLDS,
    seed: int = SEED,
    labels: Any = None,
    more: Parts = (),
    views: tuple[str, ...] = VIEWS,
) -> Audit | None:
    """The stored audit if there is a valid one; never computes anything (what a page calls on load). Nothing is stored
    under ``auto``: a job settles it to a runtime first (:func:`lib.analysis.inventory.settled_runtime`)."""
    if runtime == AUTO:
        return None
    whole, path = _audit_target(source, backbone, image_size, layout, runtime, folds, seed, labels, more, views)
    return load_audit(path, whole.sizes)


def run_audit(
    source: str,
    backbone: str,
    image_size: int | None,
    layout: CacheLayout,
    runtime: str = DEFAULT_RUNTIME,
    folds: int = DEFAULT_FOLDS,
    seed: int = SEED,
    progress: ProgressFn | None = None,
    batch_size: int = 256,
    labels: Any = None,
    more: Parts = (),
    views: tuple[str, ...] = VIEWS,
) -> Audit:
    """The audit of every image of the dataset's train and test splits (features extracted if missing), with the
    given labels replaced by ``labels`` (:mod:`lib.data.labels`) where it names images. The heads learn from the
    backbone's features concatenated with those of ``more`` (backbone, size) parts, over ``views``; near-duplicates
    are searched on the first backbone's original images."""
    whole, path = _audit_target(source, backbone, image_size, layout, runtime, folds, seed, labels, more, views)
    found = load_audit(path, whole.sizes)
    if found is not None:
        return found
    whole.ds.require_classes("An audit")
    features, given = whole.features(layout, runtime, batch_size, progress)
    if labels:
        given = {s: relabelled(y, labels.get(s)) for s, y in given.items()}
    model_features = None
    if whole.more or tuple(whole.views) != (ORIGINAL,):
        model_features, _labels = whole.all_views(layout, runtime, batch_size, progress)
    images = {s: whole.ds.images(s) for s in whole.splits}
    audit = compute_audit(list(whole.ds.classes), features, given, folds, seed, progress, model_features, images)
    save_audit(path, audit, whole.feature_keys)
    audit.key = path.stem
    return audit
