"""The one owner of the on-disk layout: every folder and file name under the cache directory.

Nothing else in the project spells a cache path; every name reaching it from outside is checked first (no path escapes).

    layout = CacheLayout("cache")
    layout.dataset_dir("cifar10-c58f30108f718f92")      # cache/datasets/v1-cifar10-.../
    npy, manifest = layout.feature_files(key)            # cache/features/<key>.npy, .json
    layout.run_dir("20261128-101500-mlp-a1b2c3")         # cache/runs/<id>/
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib import config
from lib.errors import RunError, UserFacingError

RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[a-z0-9_]+-[0-9a-f]{6}$")


@dataclass(frozen=True)
class RunFiles:
    """The files of one run's folder (also inside the temp folder it is assembled in)."""

    manifest: str = "manifest.json"  # written last: a folder without one is not a run
    head: str = "head.npz"
    predictions: str = "predictions.npz"
    model: str = "model"  # a fine-tuned run's full model, in the export format
    split_predictions: str = "split_predictions.npz"  # a hosting bundle's: the class of every image of the other splits


@dataclass(frozen=True)
class DatasetFiles:
    """The files of one converted dataset's folder (and of its staging folder while it converts)."""

    meta: str = "meta.json"  # written last: a folder without one is not a dataset
    plan: str = "plan.json"  # a conversion in progress: what it converts, at which side
    status: str = "status.u8"  # a conversion in progress: one byte per image (to do, stored, unreadable)
    digests: str = "digests.bin"  # a conversion in progress: every image's SHA-256

    def images(self, split: str) -> str:
        """The uint8 ``[N, H, W, 3]`` array of ``split``."""
        return f"{_check(_NAME, split, 'split name')}_images.npy"

    def labels(self, split: str) -> str:
        """The int64 ``[N]`` labels of ``split``."""
        return f"{_check(_NAME, split, 'split name')}_labels.npy"

    def image_arrays(self, folder: Path) -> list[Path]:
        """Every split's image array in ``folder``."""
        return sorted(folder.glob("*_images.npy"))


@dataclass(frozen=True)
class FinetuneFiles:
    """The files of a fine-tuning checkpoint folder (beside TensorFlow's own checkpoint files)."""

    config: str = "config.json"
    history: str = "history.json"


@dataclass(frozen=True)
class JobFiles:
    """The files of one background job's folder (:mod:`lib.jobs`)."""

    record: str = "job.json"  # what was asked, and its state (written under the queue lock)
    progress: str = "progress.json"  # what the job's process is doing now (written by it, often)
    outcome: str = "outcome.json"  # how the job's process ended (written by it, last)
    log: str = "log.txt"  # its stdout and stderr
    cancel: str = "cancel"  # present: a cancel was asked for


RUN_FILES, DATASET_FILES, FINETUNE_FILES, JOB_FILES = RunFiles(), DatasetFiles(), FinetuneFiles(), JobFiles()
JOB_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[a-z]+-[0-9a-f]{6}$")
BUNDLE_MANIFEST = "bundle.json"  # the first member of a bundle; and, in the cache root, what a bundle installed
FLOAT16_SUFFIX = ".f16.npy"  # a feature file as a bundle carries it (halved), restored to float32 on install
STAGING_PREFIX = ".bundle-staging-"  # an install in progress (with its process id, so a dead one is known)
STAGING_DOWNLOAD, STAGING_TREE = (
    "download.tar",
    "tree",
)  # inside a staging folder: the downloaded archive, the unpacked artifacts


@dataclass(frozen=True)
class ArtifactKind:
    """One kind of artifact under the cache: its folder, what one artifact is (a folder or a file), which belong to a
    bundle (``belongs``: a rule :mod:`lib.bundles.make` knows), and in which order a bundle installs them."""

    folder: str
    unit: str  # "dir" (a run, a dataset, a backbone) or "file"
    pattern: str  # the units in the folder
    # "run" | "dataset" | "features" | "computed-from-features" | "dataset-field" | "backbone" | "converted-backbone"
    belongs: str
    install_order: int


# What a demo bundle carries, in install order (a feature file lands before the manifest that makes it valid: see
# lib.bundles.make). Adding an artifact kind to bundles is a row here (and its rule there, if it needs a new one).
ARTIFACTS: tuple[ArtifactKind, ...] = (
    ArtifactKind("runs", "dir", "*", "run", 0),
    ArtifactKind("datasets", "dir", "*", "dataset", 1),
    ArtifactKind("features", "file", "*", "features", 2),
    ArtifactKind("projections", "file", "full-*.npz", "computed-from-features", 3),
    ArtifactKind("audits", "file", "*.npz", "computed-from-features", 4),
    ArtifactKind("benchmarks", "file", "*.json", "dataset-field", 5),
    ArtifactKind("backbones", "dir", "*", "backbone", 6),
    ArtifactKind("converted", "file", "*.tflite", "converted-backbone", 7),
)
_KEY = re.compile(r"^[0-9a-f]{8,64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def artifact_key(parts: dict[str, Any]) -> str:
    """The key of a cached artifact: a hash of everything that changes it (``parts``: JSON values, with the
    format version of its kind). Every artifact kind derives its key here, so two artifacts of different inputs never
    share a file, and the same inputs always find it."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def check_run_id(run_id: str) -> str:
    """``run_id`` if it is a well-formed run id, else :class:`RunError` (never a path)."""
    text = str(run_id).strip()
    if not RUN_ID.match(text):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise RunError(
            f"{shown!r} is not a run id (expected something like 20261128-101500-mlp-a1b2c3; see `python -m lib runs "
            "list`)."
        )
    return text


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.match(value) or ".." in value:
        raise UserFacingError(f"Invalid {what} {value[:80]!r}.")
    return value


def check_name(value: str, what: str) -> str:
    """``value`` if it is a plain file-name part (letters, digits, ``_.-``, no ``..``), else
    :class:`UserFacingError`."""
    return _check(_NAME, str(value), what)


def safe_name(text: str, fallback: str = "list") -> str:
    """A name :func:`check_name` accepts, made from free text such as an upload's file name (its extension dropped)."""
    stem = str(text).rsplit(".", 1)[0] if "." in str(text) else str(text)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.").replace("..", ".")[:80]
    return name or fallback


class CacheLayout:
    """Paths of every artifact under one cache directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CacheLayout) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __reduce__(self) -> tuple[Any, ...]:
        # What pickling (a worker process's arguments) and Streamlit's cache keys see: the folder, nothing else.
        return (CacheLayout, (str(self.root),))

    def __repr__(self) -> str:
        return f"CacheLayout({str(self.root)!r})"

    def __str__(self) -> str:
        return str(self.root)

    def __fspath__(self) -> str:
        return str(self.root)

    # ---------------------------------------------------------------- datasets
    @property
    def datasets(self) -> Path:
        """Folder of converted datasets."""
        return self.root / "datasets"

    def dataset_dir(self, fingerprint: str) -> Path:
        """Converted arrays of one dataset version."""
        return self.datasets / f"v{config.DATASET_FORMAT_VERSION}-{_check(_NAME, fingerprint, 'dataset fingerprint')}"

    def dataset_meta(self, fingerprint: str) -> Path:
        """The typed metadata of a converted dataset (:class:`lib.data.sources.DatasetMeta`)."""
        return self.dataset_dir(fingerprint) / DATASET_FILES.meta

    def dataset_lock(self, fingerprint: str) -> Path:
        """The lock a converter of this dataset holds (a second one waits)."""
        folder = self.dataset_dir(fingerprint)
        return folder.with_name(f".{folder.name}.lock")

    def dataset_staging(self, fingerprint: str) -> Path:
        """A conversion in progress: staging arrays and checkpoints, resumed after an interruption."""
        folder = self.dataset_dir(fingerprint)
        return folder.with_name(f".{folder.name}.partial")

    def discarded(self, path: Path, why: str) -> Path:
        """A hidden sibling a damaged or deleted artifact is renamed to before it is removed (out of every listing at
        once)."""
        import os
        import time

        return path.with_name(f".{path.name}.{_check(_NAME, why, 'reason')}-{os.getpid()}-{time.time_ns()}")

    def cifar_download(self) -> Path:
        """Where the official CIFAR-10 archive is downloaded to."""
        return self.root / "downloads" / "cifar-10-python.tar.gz"

    def tfhub_cache(self) -> Path:
        """Default ``TFHUB_CACHE_DIR``."""
        return self.root / "tfhub"

    # ---------------------------------------------------------------- features
    @property
    def features(self) -> Path:
        """Folder of feature artifacts."""
        return self.root / "features"

    def feature_files(self, key: str) -> tuple[Path, Path]:
        """The ``.npy`` and manifest ``.json`` of a feature key."""
        key = _check(_KEY, key, "feature key")
        return self.features / f"{key}.npy", self.features / f"{key}.json"

    def feature_partial(self, key: str) -> Path:
        """Checkpoint chunks of an extraction in progress."""
        return self.features / f"{_check(_KEY, key, 'feature key')}.partial"

    def feature_chunk(self, key: str, start: int) -> Path:
        """One checkpoint chunk (rows from ``start``) of an extraction in progress."""
        return self.feature_partial(key) / f"chunk_{int(start):08d}.npy"

    def feature_keys(self) -> list[str]:
        """Keys of every feature artifact with a manifest, sorted (the manifest may still be damaged: read it to
        know)."""
        return (
            sorted(p.stem for p in self.features.glob("*.json") if _KEY.match(p.stem)) if self.features.is_dir() else []
        )

    @property
    def converted_models(self) -> Path:
        """Folder of backbones converted to LiteRT."""
        return self.root / "converted"

    def converted_model(self, key: str) -> Path:
        """A backbone converted to LiteRT (see :mod:`lib.runtimes`)."""
        return self.converted_models / f"{_check(_KEY, key, 'converted-model key')}.tflite"

    @property
    def benchmarks(self) -> Path:
        """Folder of benchmark results."""
        return self.root / "benchmarks"

    def benchmark_file(self, key: str) -> Path:
        """Results of one speed-versus-accuracy benchmark grid."""
        return self.benchmarks / f"{_check(_KEY, key, 'benchmark key')}.json"

    def benchmark_files(self) -> list[Path]:
        """Every stored benchmark result, sorted."""
        return sorted(self.benchmarks.glob("*.json")) if self.benchmarks.is_dir() else []

    # ---------------------------------------------------------------- runs
    @property
    def runs(self) -> Path:
        """Folder of runs."""
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        """One run's folder (the id is validated first)."""
        return self.runs / check_run_id(run_id)

    def run_file(self, run_id: str, name: str) -> Path:
        """A file of one run (a name from :data:`RUN_FILES`)."""
        return self.run_dir(run_id) / name

    def run_folders(self) -> list[Path]:
        """Every folder under ``runs/`` whose name is a run id (complete or damaged)."""
        return [p for p in self.runs.iterdir() if p.is_dir() and RUN_ID.match(p.name)] if self.runs.is_dir() else []

    # ---------------------------------------------------------------- exports and projections
    @property
    def exports(self) -> Path:
        """Folder of exported models."""
        return self.root / "exports"

    def export_dir(self, run_id: str) -> Path:
        """Default export folder of a run."""
        return self.exports / check_run_id(run_id)

    def export_zip(self, run_id: str) -> Path:
        """The downloadable zip of a run's export."""
        return self.exports / f"{check_run_id(run_id)}.zip"

    @property
    def runtime_choices(self) -> Path:
        """Folder of what ``--runtime auto`` timed on this machine."""
        return self.root / "runtimes"

    def runtime_choice_file(self, key: str) -> Path:
        """What ``--runtime auto`` timed on this machine for one backbone and size (:mod:`lib.runtimes.auto`)."""
        return self.runtime_choices / f"auto-{_check(_KEY, key, 'runtime choice key')}.json"

    def dataset_export(self, name: str) -> Path:
        """A curated dataset exported from the app (``export-dataset``), as a zip."""
        return self.exports / "datasets" / f"{_check(_NAME, name, 'export name')}.zip"

    @property
    def projections(self) -> Path:
        """Folder of cached projections."""
        return self.root / "projections"

    def projection_file(self, method: str, key: str) -> Path:
        """A cached projection's coordinates."""
        return self.projections / f"{_check(_NAME, method, 'method')}-{_check(_KEY, key, 'projection key')}.npy"

    def full_map_file(self, method: str, key: str) -> Path:
        """A map of every image of a dataset (coordinates per split)."""
        return self.projections / f"full-{_check(_NAME, method, 'method')}-{_check(_KEY, key, 'map key')}.npz"

    def ray_temp(self) -> Path:
        """Session files of a Ray instance started for this cache (``--ray-temp-dir`` overrides)."""
        return self.root / "ray"

    def bundled_backbone(self, name: str) -> Path:
        """A local backbone that a demo bundle brought."""
        return self.root / "backbones" / _check(_NAME, name, "backbone folder name")

    @property
    def activations(self) -> Path:
        """Folder of cached intermediate activations (a frozen backbone prefix's outputs, for fine-tuning the rest)."""
        return self.root / "activations"

    def activation_files(self, key: str) -> tuple[Path, Path]:
        """The ``.npy`` (uint8) and manifest ``.json`` of an activation key."""
        key = _check(_KEY, key, "activation key")
        return self.activations / f"{key}.npy", self.activations / f"{key}.json"

    def activation_partial(self, key: str) -> Path:
        """Checkpoint chunks of an activation cache in progress."""
        return self.activations / f"{_check(_KEY, key, 'activation key')}.partial"

    def finetune_checkpoint(self, key: str) -> Path:
        """Checkpoints of a fine-tuning run in progress (removed once the run is saved)."""
        return self.root / "finetune" / _check(_KEY, key, "fine-tuning key")

    @property
    def jobs(self) -> Path:
        """Folder of background jobs: one folder each, and the queue's and the runner's locks."""
        return self.root / "jobs"

    def job_dir(self, job_id: str) -> Path:
        """One job's folder (the id is validated first)."""
        if not JOB_ID.match(str(job_id)):
            raise UserFacingError(f"{str(job_id)[:80]!r} is not a job id (see `python -m lib jobs list`).")
        return self.jobs / job_id

    def job_file(self, job_id: str, name: str) -> Path:
        """A file of one job (a name from :data:`JOB_FILES`)."""
        return self.job_dir(job_id) / name

    def job_ids(self) -> list[str]:
        """Every job's id, oldest first."""
        return (
            sorted(p.name for p in self.jobs.iterdir() if p.is_dir() and JOB_ID.match(p.name))
            if self.jobs.is_dir()
            else []
        )

    def jobs_lock(self) -> Path:
        """Held while the queue is read and changed (submitting, starting, settling, cancelling)."""
        return self.jobs / ".queue.lock"

    def runner_lock(self) -> Path:
        """Held by the one runner process of this cache for its whole life."""
        return self.jobs / ".runner.lock"

    def runner_log(self) -> Path:
        """What the runner itself printed (its jobs have their own logs)."""
        return self.jobs / "runner.log"

    def installed_bundle(self) -> Path:
        """What a demo bundle installed here: its defaults, backbone aliases and content digest."""
        return self.root / BUNDLE_MANIFEST

    def bundle_staging_folders(self) -> list[Path]:
        """Staging folders of bundle installs (in progress, or left by one that was killed)."""
        return sorted(self.root.glob(f"{STAGING_PREFIX}*")) if self.root.is_dir() else []

    def new_bundle_staging(self) -> Path:
        """A fresh staging folder for a bundle install by this process."""
        import os
        import tempfile

        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=self.root))

    def artifact_folder(self, kind: ArtifactKind) -> Path:
        """The folder of one artifact kind."""
        return self.root / kind.folder

    def artifact_units(self, kind: ArtifactKind) -> list[Path]:
        """Every artifact of one kind (folders or files, as the kind says), sorted."""
        folder = self.artifact_folder(kind)
        if not folder.is_dir():
            return []
        return sorted(
            p
            for p in folder.glob(kind.pattern)
            if (p.is_dir() if kind.unit == "dir" else p.is_file()) and not p.name.startswith(".")
        )

    @property
    def audits(self) -> Path:
        """Folder of data-quality audits."""
        return self.root / "audits"

    def audit_file(self, key: str) -> Path:
        """One audit's arrays (label-issue probabilities and nearest neighbours)."""
        return self.audits / f"{_check(_KEY, key, 'audit key')}.npz"

    def audit_files(self) -> list[Path]:
        """Every stored audit, sorted."""
        return sorted(self.audits.glob("*.npz")) if self.audits.is_dir() else []

    @property
    def excludes(self) -> Path:
        """Folder of saved exclude lists (images a user marked to leave out of training)."""
        return self.root / "excludes"

    def exclude_file(self, name: str) -> Path:
        """One saved exclude list."""
        return self.excludes / f"{_check(_NAME, name, 'exclude list name')}.json"

    def exclude_files(self) -> list[Path]:
        """Every saved exclude list."""
        return sorted(self.excludes.glob("*.json")) if self.excludes.is_dir() else []

    @property
    def label_lists(self) -> Path:
        """Folder of saved label lists (replacement labels: uploaded for an audit, or a user's fixes)."""
        return self.root / "labels"

    def label_file(self, name: str) -> Path:
        """One saved label list."""
        return self.label_lists / f"{_check(_NAME, name, 'label list name')}.json"

    def label_files(self) -> list[Path]:
        """Every saved label list."""
        return sorted(self.label_lists.glob("*.json")) if self.label_lists.is_dir() else []
