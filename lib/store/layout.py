"""The one owner of the on-disk layout: every folder and file name under the cache directory.

Nothing else in the project spells a cache path. Every name that reaches this module from
outside (a run id, a feature key) is checked first, so no input can name a path outside it.

    layout = CacheLayout("cache")
    layout.dataset_dir("cifar10-c58f30108f718f92")      # cache/datasets/v1-cifar10-.../
    npy, manifest = layout.feature_files(key)            # cache/features/<key>.npy, .json
    layout.run_dir("20261128-101500-mlp-a1b2c3")         # cache/runs/<id>/
"""

from __future__ import annotations

import re
from pathlib import Path

from lib import config
from lib.errors import RunError, UserFacingError

RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[a-z0-9_]+-[0-9a-f]{6}$")
_KEY = re.compile(r"^[0-9a-f]{8,64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_run_id(run_id: str) -> str:
    """``run_id`` if it is a well-formed run id, else :class:`RunError` (never a path)."""
    text = str(run_id).strip()
    if not RUN_ID.match(text):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise RunError(f"{shown!r} is not a run id (expected something like 20261128-101500-mlp-a1b2c3; see `python -m lib runs list`).")
    return text


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.match(value) or ".." in value:
        raise UserFacingError(f"Invalid {what} {value[:80]!r}.")
    return value


def check_name(value: str, what: str) -> str:
    """``value`` if it is a plain file-name part (letters, digits, ``_.-``, no ``..``), else :class:`UserFacingError`."""
    return _check(_NAME, str(value), what)


class CacheLayout:
    """Paths of every artifact under one cache directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @classmethod
    def at(cls, where: CacheLayout | Path | str) -> CacheLayout:
        """``where`` itself if it is a layout (what entry points build once and pass down), else the layout of that folder."""
        return where if isinstance(where, CacheLayout) else cls(where)

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
        """Keys of every feature artifact with a manifest, sorted (the manifest may still be damaged: read it to know)."""
        return sorted(p.stem for p in self.features.glob("*.json") if _KEY.match(p.stem)) if self.features.is_dir() else []

    def converted_model(self, key: str) -> Path:
        """A backbone converted to LiteRT (see :mod:`lib.runtimes`)."""
        return self.root / "converted" / f"{_check(_KEY, key, 'converted-model key')}.tflite"

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

    def finetune_checkpoint(self, key: str) -> Path:
        """Checkpoints of a fine-tuning run in progress (removed once the run is saved)."""
        return self.root / "finetune" / _check(_KEY, key, "fine-tuning key")

    @property
    def audits(self) -> Path:
        """Folder of data-quality audits."""
        return self.root / "audits"

    def audit_file(self, key: str) -> Path:
        """One audit's arrays (label-issue probabilities and nearest neighbours)."""
        return self.audits / f"{_check(_KEY, key, 'audit key')}.npz"

    @property
    def excludes(self) -> Path:
        """Folder of saved exclude lists (images a user marked to leave out of training)."""
        return self.root / "excludes"

    def exclude_file(self, name: str) -> Path:
        """One saved exclude list."""
        return self.excludes / f"{_check(_NAME, name, 'exclude list name')}.json"


CacheLike = CacheLayout | Path | str  # what a lib function accepts: the layout an entry point built (or, from a test, its folder)
