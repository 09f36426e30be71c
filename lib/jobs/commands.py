"""The CLI command of each kind of long work, from the same requests the lib takes: what the app submits as a job is a
command a user could type (``python -m lib train ...``), and it makes the same artifacts.

    spec = train_job(request, finetune=None, label="mine", exclude_file=None, ray=None)
    spec.argv          # ["train", "--source", "/data/cifar", "--backbone", "...", "--image-sizes", "128", ...]
"""

from __future__ import annotations

import os
from typing import Any

from lib.jobs.queue import JobSpec


def _path(text: str) -> str:
    """An existing relative path made absolute (the job runs from the project folder, not the caller's)."""
    return os.path.abspath(text) if text and not os.path.isabs(text) and os.path.exists(text) else text


def _num(value: float | int) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _short(backbone: str) -> str:
    return backbone.rstrip("/").split("/")[-1]


def _ray(ray: Any) -> list[str]:
    """The Ray engine's flags for :class:`lib.pipeline.ray_connect.RayOptions` (none for this process)."""
    if ray is None:
        return []
    out = ["--engine", "ray", "--workers", str(ray.workers)]
    return out + (["--ray-address", ray.address] if ray.address else [])


def data_job(source: str) -> JobSpec:
    """A data source converted into the cache (downloaded first, for official CIFAR-10)."""
    return JobSpec("data", ["data", "--source", _path(source)], f"prepare {_short(source)}")


def extract_job(source: str, backbone: str, size: int, runtime: str, splits: str = "all", view: str = "original", ray: Any = None) -> JobSpec:
    """Features of every split (the dataset is converted first where it is not yet)."""
    argv = ["extract", "--source", _path(source), "--backbone", _path(backbone), "--image-size", str(size), "--split", splits, "--view", view,
            "--runtime", runtime, *_ray(ray)]  # fmt: skip
    return JobSpec("extract", argv, f"features of {_short(backbone)} @ {size}px ({runtime})")


def train_job(req: Any, finetune: Any = None, label: str = "", exclude_file: Any = None, ray: Any = None, relabel_file: Any = None) -> JobSpec:
    """A run of :class:`lib.pipeline.training.RunRequest` (fine-tuned with a :class:`lib.pipeline.finetune.FinetuneConfig`)."""
    h = req.head
    argv = ["train", "--source", _path(req.source), "--backbone", _path(req.backbone)]
    if req.protocol:
        argv += ["--protocol", req.protocol]
    if req.image_sizes:
        argv += ["--image-sizes", ",".join(str(s) for s in req.image_sizes)]
    for backbone, sizes in req.more_backbones:
        argv += ["--backbone", _path(backbone) + ("@" + ",".join(str(s) for s in sizes) if sizes else "")]
    argv += ["--head", h.head, "--hidden", str(h.hidden), "--dropout", _num(h.dropout), "--weight-decay", _num(h.weight_decay),
             "--optimizer", h.optimizer, "--lr", _num(h.learning_rate), "--lr-schedule", h.lr_schedule, "--train-batch-size", str(h.batch_size),
             "--epochs", str(h.epochs), "--label-smoothing", _num(h.label_smoothing), "--val-fraction", _num(h.val_fraction),
             "--patience", str(h.patience or 0), "--seed", str(h.seed), "--runtime", req.runtime, "--batch-size", str(req.batch_size),
             "--flip-train" if "flip" in req.train_views else "--no-flip-train", "--tta" if req.tta else "--no-tta"]  # fmt: skip
    if h.steps:
        argv += ["--steps", str(h.steps)]
    if req.limit:
        argv += ["--limit", str(req.limit)]
    if exclude_file is not None:
        argv += ["--exclude", _path(str(exclude_file))]
    if relabel_file is not None:
        argv += ["--relabel", _path(str(relabel_file))]
    if label:
        argv += ["--label", label]
    if finetune is not None:
        argv += ["--finetune", "--finetune-epochs", str(finetune.epochs), "--finetune-lr", _num(finetune.learning_rate),
                 "--finetune-batch-size", str(finetune.batch_size), "--finetune-warmup", _num(finetune.warmup_epochs)]  # fmt: skip
        if finetune.image_size:
            argv += ["--finetune-image-size", str(finetune.image_size)]
    else:
        argv += _ray(ray)
    sizes = ",".join(str(s) for s in req.image_sizes or ())
    what = f"{'fine-tune' if finetune is not None else 'train'} {_short(req.backbone)}" + (f" @ {sizes}px" if sizes else "")
    what += "".join(f" + {_short(b)}" for b, _sizes in req.more_backbones)
    return JobSpec("train", argv, what + (f" ({req.protocol})" if req.protocol else ""))


def audit_job(source: str, backbone: str, size: int, runtime: str, more: tuple[tuple[str, int], ...] = (), labels: str | None = None) -> JobSpec:
    """The data-quality audit of every image (its heads on ``backbone`` and the ``more`` (backbone, size) parts; with
    the replacement labels of the saved list at ``labels``)."""
    argv = ["audit", "--source", _path(source), "--backbone", _path(backbone), "--image-size", str(size), "--runtime", runtime]
    for b, s in more:
        argv += ["--backbone", f"{_path(b)}@{s}"]
    if labels:
        argv += ["--labels", _path(labels)]
    what = f"audit with {_short(backbone)} @ {size}px" + "".join(f" + {_short(b)} @ {s}px" for b, s in more)
    return JobSpec("audit", argv, what + (f" and labels {_short(labels)}" if labels else ""))


def export_dataset_job(source: str, out: str, exclude: str | None = None, relabel: str | None = None, selection: str | None = None) -> JobSpec:
    """The curated dataset (less ``exclude``, with the fixes of ``relabel``, only ``selection`` if given) written to ``out``."""
    argv = ["export-dataset", "--source", _path(source), "--out", out]
    for flag_name, path in (("--exclude", exclude), ("--relabel", relabel), ("--selection", selection)):
        if path:
            argv += [flag_name, _path(path)]
    return JobSpec("export-dataset", argv, f"export {_short(out)}")


def map_job(source: str, backbone: str, size: int, runtime: str, method: str, perplexity: float, iterations: int) -> JobSpec:
    """The map of every image (PCA or t-SNE)."""
    argv = ["project", "--source", _path(source), "--backbone", _path(backbone), "--image-size", str(size), "--runtime", runtime,
            "--method", method, "--perplexity", _num(float(perplexity)), "--iterations", str(int(iterations))]  # fmt: skip
    return JobSpec("project", argv, f"{method} map of {_short(backbone)} @ {size}px")


def benchmark_job(source: str, backbones: list[str] | None, sizes: list[int], runtimes: list[str], limit: int | None) -> JobSpec:
    """The speed/accuracy grid (rows already measured on this machine are kept, so asking again finishes the rest)."""
    argv = ["benchmark", "--source", _path(source), "--image-sizes", ",".join(map(str, sizes)), "--runtimes", ",".join(runtimes)]
    for b in backbones or []:
        argv += ["--backbone", _path(b)]
    argv += ["--limit", str(limit)] if limit else ["--full"]
    what = f"{len(backbones)} backbone(s)" if backbones else "every shared backbone"
    return JobSpec("benchmark", argv, f"speed and accuracy of {what} at {','.join(map(str, sizes))}px")
