"""The official CIFAR-10 release: download with an MD5 check, and read its pickle batches.

archive = download_cifar10(layout.cifar_download())      # needs network; fails fast without
classes, splits, skipped = read_cifar_tar(archive)
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lib import config
from lib.errors import DataSourceError
from lib.store.atomic import atomic_path
from lib.store.fingerprints import file_digest

DOWNLOAD_TIMEOUT_S = 15.0
Splits = dict[str, tuple[np.ndarray, np.ndarray]]
ReadResult = tuple[tuple[str, ...], Splits, dict[str, int]]
ProgressFn = Callable[[int, int, str], None]


def download_cifar10(target: Path, url: str | None = None, progress: ProgressFn | None = None) -> Path:
    """Download and MD5-verify ``cifar-10-python.tar.gz`` to ``target`` (kept if already valid)."""

    url = url or os.environ.get("TLX_CIFAR10_URL", config.CIFAR10_URL)
    if target.exists():
        if file_digest(target, "md5") == config.CIFAR10_MD5:
            return target
        target.unlink()  # a corrupt or truncated earlier download
    hint = (
        "No network? Download it elsewhere and pass --source /path/to/cifar-10-python.tar.gz (or its extracted "
        "cifar-10-batches-py/ folder, or an image-folder dataset such as ../shared/data/cifar10-jpeg.tar.gz)."
    )
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, atomic_path(target) as tmp:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            with open(tmp, "wb") as fh:
                while chunk := response.read(1 << 20):
                    fh.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total, "download")
            if digest.hexdigest() != config.CIFAR10_MD5:
                raise DataSourceError(
                    f"Downloaded CIFAR-10 from {url} failed its MD5 check (got {digest.hexdigest()}); nothing was "
                    "kept. Try again."
                )
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        raise DataSourceError(f"Could not download CIFAR-10 from {url}: {reason}. {hint}") from err
    return target


def _batch_to_arrays(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = pickle.loads(raw, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return data, np.asarray(batch[b"labels"], dtype=np.int64)


def assemble_cifar(files: dict[str, bytes]) -> ReadResult:
    """Class names and train/test arrays from the raw batch files."""
    try:
        train = [_batch_to_arrays(files[f"data_batch_{i}"]) for i in range(1, 6) if f"data_batch_{i}" in files]
        test = _batch_to_arrays(files["test_batch"])
    except (KeyError, pickle.UnpicklingError, ValueError, EOFError) as err:
        raise DataSourceError(f"CIFAR-10 pickle data is incomplete or corrupt ({err}).") from err
    if not train:
        raise DataSourceError("CIFAR-10 pickle data has no data_batch_* files.")
    classes = config.CIFAR10_CLASSES
    if "batches.meta" in files:
        meta = pickle.loads(files["batches.meta"], encoding="bytes")
        classes = tuple(n.decode() for n in meta[b"label_names"])
    splits = {
        "train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
        "test": test,
    }
    return classes, splits, {"train": 0, "test": 0}


def read_cifar_tar(archive: Path) -> ReadResult:
    """Read the batches from ``cifar-10-python.tar.gz`` (or any tar holding them)."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = Path(member.name).name
                if member.isfile() and (name.startswith(("data_batch_", "test_batch")) or name == "batches.meta"):
                    fh = tar.extractfile(member)
                    if fh is not None:
                        files[name] = fh.read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataSourceError(
            f"{archive} is not a readable archive ({err}); it may be truncated. Download it again."
        ) from err
    return assemble_cifar(files)


def read_cifar_dir(folder: Path) -> ReadResult:
    """Read the batches from an extracted ``cifar-10-batches-py/`` folder."""
    return assemble_cifar({p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})


def tar_has_cifar_batches(path: Path) -> bool:
    """Whether a tar archive holds CIFAR pickle batches (looks at its first entries only)."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for i, member in enumerate(tar):
                if Path(member.name).name == "data_batch_1":
                    return True
                if i > 50:
                    return False
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataSourceError(f"{path} is not a readable archive ({err}); it may be truncated.") from err
    return False
