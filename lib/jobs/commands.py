"""The kinds of background job, in one table (:data:`JOB_KINDS`), and the CLI command of each kind of long work, from
the same requests the lib takes: what the app submits as a job is a command a user could type
(``python -m lib train ...``), and it makes the same artifacts.

    spec = train_job(request, finetune=None, label="mine", exclude_file=None, ray=None)
    spec.argv          # ["train", "--source=/data/cifar", "--backbone=...", "--image-sizes=128", ...] (one word a flag)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.bounds import BOUNDS
from lib.config import FLIP, ORIGINAL
from lib.jobs.queue import JobSpec
from lib.models.heads import HEAD_PARAMS, head_values


@dataclass(frozen=True)
class JobKind:
    """One kind of background job: the CLI command it runs, where what it made is seen, and the stages its progress
    names. The one declaration of a kind: the panel, the pages and the runner read it from :data:`JOB_KINDS`."""

    name: str  # the CLI command (``python -m lib <name> ...``)
    result_page: str  # the page that shows what it made (a file under views/)
    link: str  # the words of the link to it
    result_field: str | None = None  # the field of the job's JSON result the link carries (a run id), if any
    stages: tuple[str, ...] = ()  # what its progress reports, in order (the panel shows the one running)


JOB_KINDS: dict[str, JobKind] = {
    k.name: k
    for k in (
        JobKind("data", "views/browse.py", "Browse it", stages=("download", "scan", "decode")),
        JobKind("extract", "views/home.py", "Features ready", stages=("data", "runtime auto", "loading", "extract")),
        JobKind("train", "views/evaluate.py", "Evaluate the run", "run_id", ("data", "features", "head", "evaluate")),
        JobKind("audit", "views/quality.py", "See the audit", stages=("data", "features", "folds", "duplicates")),
        JobKind(
            "project", "views/feature_space.py", "See the map", stages=("data", "thumbnails", "features", "projection")
        ),
        JobKind("benchmark", "views/speed.py", "See the figures", stages=("convert", "measure", "accuracy")),
        JobKind("export-dataset", "views/quality.py", "Download it (Data quality, Label fixes)", stages=("export",)),
    )
}


def job_kind(name: str) -> JobKind:
    """The kind called ``name`` (:class:`KeyError` for one that is not declared in :data:`JOB_KINDS`)."""
    return JOB_KINDS[name]


def _spec(kind: str, argv: list[str], title: str) -> JobSpec:
    return JobSpec(job_kind(kind).name, argv, title)


def _path(text: str) -> str:
    """An existing relative path made absolute (the job runs from the project folder, not the caller's)."""
    return os.path.abspath(text) if text and not os.path.isabs(text) and os.path.exists(text) else text


def _opt(flag: str, value: object) -> str:
    """One flag with its value as one word (``--label=-baseline``): a value that starts with ``-`` is never read as a
    flag."""
    return f"{flag}={value}"


def _num(value: float | int) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _short(backbone: str) -> str:
    return backbone.rstrip("/").split("/")[-1]


def _ray(ray: Any) -> list[str]:
    """The Ray engine's flags for :class:`lib.pipeline.ray_connect.RayOptions` (none for this process)."""
    if ray is None:
        return []
    out = [_opt("--engine", "ray"), _opt("--workers", ray.workers)]
    return out + ([_opt("--ray-address", ray.address)] if ray.address else [])


def data_job(source: str) -> JobSpec:
    """A data source converted into the cache (downloaded first, for official CIFAR-10)."""
    return _spec("data", ["data", _opt("--source", _path(source))], f"prepare {_short(source)}")


def extract_job(
    source: str, backbone: str, size: int, runtime: str, splits: str = "all", view: str = ORIGINAL, ray: Any = None
) -> JobSpec:
    """Features of every split (the dataset is converted first where it is not yet)."""
    argv = [
        "extract",
        _opt("--source", _path(source)),
        _opt("--backbone", _path(backbone)),
        _opt("--image-size", size),
        _opt("--split", splits),
        _opt("--view", view),
        _opt("--runtime", runtime),
        *_ray(ray),
    ]
    return _spec("extract", argv, f"features of {_short(backbone)} @ {size}px ({runtime})")


def train_job(
    req: Any,
    finetune: Any = None,
    label: str = "",
    exclude_file: Any = None,
    ray: Any = None,
    relabel_file: Any = None,
    budget_minutes: float | None = None,
) -> JobSpec:
    """A run of :class:`lib.pipeline.training.RunRequest` (fine-tuned with a
    :class:`lib.pipeline.finetune.FinetuneConfig`)."""
    h = req.head
    argv = ["train", _opt("--source", _path(req.source)), _opt("--backbone", _path(req.backbone))]
    if req.protocol:
        argv += [_opt("--protocol", req.protocol)]
    if budget_minutes is not None:  # a fine-tuning preset: the whole job's time
        argv += [_opt("--budget-minutes", _num(budget_minutes))]
    if req.image_sizes:
        argv += [_opt("--image-sizes", ",".join(str(s) for s in req.image_sizes))]
    for backbone, sizes in req.more_backbones:
        argv += [_opt("--backbone", _path(backbone) + ("@" + ",".join(str(s) for s in sizes) if sizes else ""))]
    for param in HEAD_PARAMS:  # every head hyperparameter, as lib.cli.runs declares its flag
        value = head_values(h)[param.field]
        if value is not None and not (
            param.zero_means_off and value == 0 and param.bound and BOUNDS[param.bound].low > 0
        ):
            argv += [_opt(param.flag, _num(value) if isinstance(value, (int, float)) else value)]
    argv += [
        _opt("--runtime", req.runtime),
        _opt("--batch-size", req.batch_size),
        "--flip-train" if FLIP in req.train_views else "--no-flip-train",
        "--tta" if req.tta else "--no-tta",
    ]
    if req.limit:
        argv += [_opt("--limit", req.limit)]
    if exclude_file is not None:
        argv += [_opt("--exclude", _path(str(exclude_file)))]
    if relabel_file is not None:
        argv += [_opt("--relabel", _path(str(relabel_file)))]
    if label:
        argv += [_opt("--label", label)]
    if finetune is not None:
        argv += [
            "--finetune",
            _opt("--finetune-epochs", finetune.epochs),
            _opt("--finetune-lr", _num(finetune.learning_rate)),
            _opt("--finetune-batch-size", finetune.batch_size),
            _opt("--finetune-warmup", _num(finetune.warmup_epochs)),
        ]
        if finetune.image_size:
            argv += [_opt("--finetune-image-size", finetune.image_size)]
    else:
        argv += _ray(ray)
    sizes = ",".join(str(s) for s in req.image_sizes or ())
    what = f"{'fine-tune' if finetune is not None else 'train'} {_short(req.backbone)}" + (
        f" @ {sizes}px" if sizes else ""
    )
    what += "".join(f" + {_short(b)}" for b, _sizes in req.more_backbones)
    return _spec("train", argv, what + (f" ({req.protocol})" if req.protocol else ""))


def audit_job(
    source: str,
    backbone: str,
    size: int,
    runtime: str,
    more: tuple[tuple[str, int], ...] = (),
    labels: str | None = None,
) -> JobSpec:
    """The data-quality audit of every image (its heads on ``backbone`` and the ``more`` (backbone, size) parts; with
    the replacement labels of the saved list at ``labels``)."""
    argv = [
        "audit",
        _opt("--source", _path(source)),
        _opt("--backbone", _path(backbone)),
        _opt("--image-size", size),
        _opt("--runtime", runtime),
    ]
    for b, s in more:
        argv += [_opt("--backbone", f"{_path(b)}@{s}")]
    if labels:
        argv += [_opt("--labels", _path(labels))]
    what = f"audit with {_short(backbone)} @ {size}px" + "".join(f" + {_short(b)} @ {s}px" for b, s in more)
    return _spec("audit", argv, what + (f" and labels {_short(labels)}" if labels else ""))


def export_dataset_job(
    source: str, out: str, exclude: str | None = None, relabel: str | None = None, selection: str | None = None
) -> JobSpec:
    """The curated dataset (less ``exclude``, with the fixes of ``relabel``, only ``selection`` if given) written to
    ``out``."""
    argv = ["export-dataset", _opt("--source", _path(source)), _opt("--out", out)]
    for flag_name, path in (("--exclude", exclude), ("--relabel", relabel), ("--selection", selection)):
        if path:
            argv += [_opt(flag_name, _path(path))]
    return _spec("export-dataset", argv, f"export {_short(out)}")


def map_job(
    source: str,
    backbone: str,
    size: int,
    runtime: str,
    method: str,
    perplexity: float,
    iterations: int,
    thumbs: Path | None = None,
) -> JobSpec:
    """The map of every image (PCA or t-SNE), and the hover thumbnails' sprite sheets under ``thumbs`` if given."""
    argv = [
        "project",
        _opt("--source", _path(source)),
        _opt("--backbone", _path(backbone)),
        _opt("--image-size", size),
        _opt("--runtime", runtime),
        _opt("--method", method),
        _opt("--perplexity", _num(float(perplexity))),
        _opt("--iterations", int(iterations)),
    ]
    if thumbs is not None:
        argv += [_opt("--thumbs", str(Path(thumbs).resolve()))]
    return _spec("project", argv, f"{method} map of {_short(backbone)} @ {size}px")


def benchmark_job(
    source: str, backbones: list[str] | None, sizes: list[int], runtimes: list[str], limit: int | None
) -> JobSpec:
    """The speed/accuracy grid (rows already measured on this machine are kept, so asking again finishes the rest)."""
    argv = [
        "benchmark",
        _opt("--source", _path(source)),
        _opt("--image-sizes", ",".join(map(str, sizes))),
        _opt("--runtimes", ",".join(runtimes)),
    ]
    for b in backbones or []:
        argv += [_opt("--backbone", _path(b))]
    argv += [_opt("--limit", limit)] if limit else ["--full"]
    what = f"{len(backbones)} backbone(s)" if backbones else "every shared backbone"
    return _spec("benchmark", argv, f"speed and accuracy of {what} at {','.join(map(str, sizes))}px")
