"""CLI commands for heads and runs: ``train``, ``evaluate`` and ``runs``; registered by :mod:`lib.cli`.

python -m lib train --source ... --backbone ... --protocol best --json
python -m lib evaluate RUN_ID
python -m lib compare RUN_A RUN_B
python -m lib runs list | show ID | delete ID | label ID TEXT | export ID --out DIR
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib.analysis.compare import compare_runs, verdict
from lib.bounds import backbone_at_sizes, flag, sizes
from lib.cli.common import (
    Bar,
    add_backbone,
    add_common,
    add_engine,
    add_source,
    current_job,
    load_with_progress,
    ray_options,
    say_stage,
)
from lib.config import ORIGINAL, VIEWS
from lib.data.excludes import read_exclude_file
from lib.data.labels import describe_changes, read_label_file, read_label_source
from lib.data.sources import load_dataset
from lib.errors import ConfigError, RunError
from lib.models.heads import HEAD_PARAMS, HeadConfig, head_from_values
from lib.models.metrics import evaluate, percent
from lib.models.protocols import PROTOCOLS
from lib.models.specs import preset_backbone
from lib.pipeline.engines import open_engine
from lib.pipeline.finetune import FinetuneConfig, finetune_run
from lib.pipeline.finetune_budget import FINETUNE_PRESETS, budget_finetune_run
from lib.pipeline.training import RunRequest, train_run
from lib.process import peak_rss_mb
from lib.runs import registry as runs
from lib.runs.export import check_zip_target, export_run, zip_folder
from lib.runs.registry import load_run, set_label


def add_commands(sub: Any) -> None:
    """Register ``train``, ``evaluate`` and ``runs`` on the sub-parser set."""
    p = sub.add_parser("train", help="train a head on cached features, register and evaluate the run")
    add_source(p)
    add_backbone(p, repeatable=True)
    p.add_argument(
        "--protocol",
        choices=[*PROTOCOLS, *FINETUNE_PRESETS],
        default=None,
        help="a preset; flags below override it. finetune: fine-tune MobileNet v1 within --budget-minutes",
    )
    p.add_argument(
        "--budget-minutes",
        type=flag("budget_minutes"),
        default=None,
        help="with --protocol finetune: the whole job's time (the schedule is fitted to it; default 60)",
    )
    p.add_argument(
        "--image-sizes", default=None, help="comma-separated sizes whose features are concatenated, e.g. 128,224"
    )
    for param in HEAD_PARAMS:  # every head hyperparameter, declared once (lib.models.heads.HEAD_PARAMS)
        p.add_argument(
            param.flag,
            dest=param.field,
            choices=list(param.choices) or None,
            type=flag(param.bound) if param.bound else None,
            default=None,
            help=param.help or None,
        )
    p.add_argument(
        "--flip-train", action=argparse.BooleanOptionalAction, default=None, help="also train on mirrored images"
    )
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average original and mirrored test predictions",
    )
    p.add_argument(
        "--finetune",
        action="store_true",
        help="unfreeze the backbone and train end to end from raw images (slow on CPU)",
    )
    p.add_argument("--finetune-epochs", type=flag("finetune_epochs"), default=1)
    p.add_argument(
        "--finetune-image-size",
        type=flag("image_size"),
        default=None,
        help="input side for fine-tuning (default: --image-size)",
    )
    p.add_argument("--finetune-lr", type=flag("finetune_lr"), default=1e-4, help="peak learning rate after the warm-up")
    p.add_argument("--finetune-batch-size", type=flag("finetune_batch_size"), default=32)
    p.add_argument(
        "--finetune-warmup",
        type=flag("finetune_warmup"),
        default=0.5,
        help="epochs of linear learning-rate warm-up (then cosine decay)",
    )
    p.add_argument(
        "--mixed-precision", choices=["auto", "on", "off"], default="auto", help="mixed_float16 (auto: on with a GPU)"
    )
    p.add_argument(
        "--xla", choices=["auto", "on", "off"], default="auto", help="XLA-compiled training step (auto: on with a GPU)"
    )
    p.add_argument("--label", default="", help="a name for the run")
    p.add_argument(
        "--exclude",
        type=Path,
        default=None,
        help="leave these images out of training and scoring: the Data quality page's JSON, or CSV with split,index "
        "columns",
    )
    p.add_argument(
        "--relabel",
        type=Path,
        default=None,
        help="label fixes to train with: CSV with split,index,label (class names) or the app's JSON; test accuracy "
        "is reported against the given and the fixed labels",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="use a label list that changes more than half of the labels it names (made for another dataset?)",
    )
    add_engine(p)
    add_common(p)

    p = sub.add_parser("evaluate", help="overall and per-class metrics of a run, and the top confused pairs")
    p.add_argument("run_id")
    add_common(p)

    p = sub.add_parser(
        "compare",
        help="two runs side by side: accuracy, ECE, per class, and McNemar's test on the images they disagree on",
    )
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--top", type=flag("top"), default=10, help="how many disagreeing images of each kind to print")
    add_common(p)

    p = sub.add_parser("runs", help="list, show, delete, label or export runs")
    rsub = p.add_subparsers(dest="runs_command", required=True)
    q = rsub.add_parser("list")
    add_common(q)
    for name in ("show", "delete"):
        q = rsub.add_parser(name)
        q.add_argument("run_id")
        add_common(q)
    q = rsub.add_parser("label")
    q.add_argument("run_id")
    q.add_argument("text")
    add_common(q)
    q = rsub.add_parser(
        "export", help="write a self-contained SavedModel: raw uint8 images in, class probabilities out"
    )
    q.add_argument("run_id")
    q.add_argument("--out", type=Path, default=None, help="output folder (default: <cache>/exports/<run-id>)")
    q.add_argument("--zip", action="store_true", help="also write a .zip of it")
    q.add_argument(
        "--force",
        action="store_true",
        help="replace a previous export of this project at --out (never any other folder)",
    )
    add_common(q)


def _request(args: argparse.Namespace) -> Any:

    backbone, first_sizes = backbone_at_sizes(args.backbone)
    if args.protocol in FINETUNE_PRESETS:
        if not getattr(args, "backbone_given", True):
            backbone = preset_backbone("mobilenet_v1_100_224")  # the preset's backbone unless the user names one
        return RunRequest(args.source, backbone, HeadConfig(), protocol=args.protocol)
    if args.budget_minutes is not None:
        raise ConfigError("--budget-minutes applies to a fine-tuning preset (--protocol finetune).")
    if args.protocol and PROTOCOLS[args.protocol].backbones and not getattr(args, "backbone_given", True):
        req = RunRequest.from_protocol(args.protocol, args.source, None)  # the preset's own backbones
        backbone, first_sizes = req.backbone, None
    elif args.protocol:
        req = RunRequest.from_protocol(args.protocol, args.source, backbone)
    else:
        req = RunRequest(args.source, backbone, HeadConfig())
    if getattr(args, "more_backbones", None):
        req.more_backbones = tuple(backbone_at_sizes(b) for b in args.more_backbones)
    req.head = head_from_values({p.field: getattr(args, p.field) for p in HEAD_PARAMS}, req.head)
    if args.image_sizes:
        req.image_sizes = sizes("--image-sizes", args.image_sizes)
    elif args.image_size:
        req.image_sizes = (args.image_size,)
    if first_sizes:
        if args.image_sizes or args.image_size:
            raise ConfigError(
                "Give the first backbone's sizes once: as BACKBONE@SIZES or with --image-size(s), not both."
            )
        req.image_sizes = first_sizes
    if args.flip_train is not None:
        req.train_views = VIEWS if args.flip_train else (ORIGINAL,)
    if args.tta is not None:
        req.tta = args.tta
    req.limit = args.limit
    req.batch_size = args.batch_size
    req.runtime = args.runtime
    if args.exclude is not None:
        images = read_exclude_file(args.exclude, load_dataset(args.source, args.layout))
        req.exclude = {split: [int(i) for i in v] for split, v in images.items()}
    if args.relabel is not None:
        ds = load_dataset(args.source, args.layout)
        req.relabel, req.relabel_source = read_label_source(args.relabel, ds, force=args.force)
        say_stage(f"Label fixes: {describe_changes(read_label_file(args.relabel, ds, force=True), ds)}")
    return req


def _budget_finetune(args: argparse.Namespace, req: Any) -> Any:
    """``train --protocol finetune``: fine-tuning fitted to ``--budget-minutes``, reported stage by stage."""
    import sys

    recipe = FINETUNE_PRESETS[req.protocol].with_budget(args.budget_minutes)

    def on_progress(p: Any) -> None:
        eta = f", ETA {p.eta_seconds:,.0f}s" if p.eta_seconds is not None else ""
        rate = f", {p.images_per_second:,.0f} img/s" if p.images_per_second else ""
        print(f"{p.stage}: {p.step:,}/{p.steps:,}{rate}{eta}", file=sys.stderr)
        job = current_job()
        if job is not None:
            job.progress(p.stage, p.step, p.steps, p.images_per_second, p.eta_seconds, "img")

    def on_point(r: Any) -> None:
        print(
            f"epoch {r.epoch:.2f}/{r.epochs:.2f} loss {r.loss:.4f} acc {r.accuracy:.4f} held-out acc "
            f"{r.val_accuracy:.4f} ({r.elapsed:.0f}s)",
            file=sys.stderr,
        )
        job = current_job()
        if job is not None:
            job.point({"epoch": r.epoch, "loss": r.loss, "accuracy": r.accuracy, "val_accuracy": r.val_accuracy})

    return budget_finetune_run(req, args.layout, recipe, say_stage, on_point, on_progress, started=args.started)


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    """``train``: features -> head -> evaluated, registered run."""
    import sys

    if args.finetune and (args.protocol or "") in FINETUNE_PRESETS:
        raise ConfigError("--protocol finetune is a fine-tuning recipe of its own; leave out --finetune.")
    if args.finetune and args.engine == "ray":
        raise ConfigError(
            "--engine ray extracts features; fine-tuning trains from the images on this machine. Leave out one of them."
        )
    req = _request(args).validate()  # a bad setting is refused before any data is read or downloaded
    if args.finetune and req.more_backbones:
        raise ConfigError("Fine-tuning trains one backbone end to end; give --backbone once with --finetune.")
    load_with_progress(args.source, args.layout)  # converted here with a bar (and the job's progress) if it is not yet
    bars: dict[str, Bar] = {}

    def on_extract(label: str, p: Any) -> None:
        bar = bars.setdefault(label, Bar(f"extract {label}"))
        bar.update_to(p.done, p.total)
        if p.done >= p.total:
            bar.close()

    def on_epoch(r: Any) -> None:
        val = f" val_loss {r.val_loss:.4f} val_acc {r.val_accuracy:.4f}" if r.val_loss is not None else ""
        print(
            f"epoch {r.epoch}/{r.epochs} loss {r.loss:.4f} acc {r.accuracy:.4f}{val} ({r.elapsed:.1f}s)",
            file=sys.stderr,
        )
        job = current_job()
        if job is not None:
            eta = r.elapsed / r.epoch * (r.epochs - r.epoch) if r.epoch else None
            job.point(
                {
                    k: v
                    for k, v in (
                        ("epoch", r.epoch),
                        ("loss", r.loss),
                        ("accuracy", r.accuracy),
                        ("val_loss", r.val_loss),
                        ("val_accuracy", r.val_accuracy),
                    )
                    if v is not None
                }
            )
            job.progress(
                f"training the head: epoch {r.epoch}/{r.epochs}, loss {r.loss:.3f}",
                r.epoch,
                r.epochs,
                None,
                eta,
                "epoch",
            )

    if req.protocol in FINETUNE_PRESETS:
        manifest = _budget_finetune(args, req)
    elif args.finetune:
        cfg = FinetuneConfig(
            epochs=args.finetune_epochs,
            learning_rate=args.finetune_lr,
            batch_size=args.finetune_batch_size,
            image_size=args.finetune_image_size,
            warmup_epochs=min(args.finetune_warmup, args.finetune_epochs),
            mixed_precision=args.mixed_precision,
            xla=args.xla,
            seed=req.head.seed,
        )

        def on_progress(p: Any) -> None:
            print(
                f"epoch {p.epoch}/{p.epochs} {p.images_done:,}/{p.images_total:,} images, {p.images_per_second:,.0f} "
                f"img/s, ETA {p.eta_seconds:,.0f}s, loss {p.loss:.4f}",
                file=sys.stderr,
            )
            job = current_job()
            if job is not None:
                job.progress(
                    f"fine-tuning: epoch {p.epoch}/{p.epochs}, loss {p.loss:.3f}",
                    p.images_done,
                    p.images_total,
                    p.images_per_second,
                    p.eta_seconds,
                    "img",
                )

        manifest = finetune_run(req, args.layout, cfg, on_stage=say_stage, on_epoch=on_epoch, on_progress=on_progress)
    else:
        with open_engine(ray_options(args), args.layout) as engine:
            manifest = train_run(
                req, args.layout, on_stage=say_stage, on_extract=on_extract, on_epoch=on_epoch, engine=engine
            )
    if args.label:
        manifest = set_label(args.layout, manifest.run_id, args.label)
    metrics, timings = manifest.metrics, manifest.timings
    return {
        "run_id": manifest.run_id,
        "test_accuracy": metrics.test_accuracy,
        "top5_accuracy": metrics.top5_accuracy,
        "train_seconds": timings["train_seconds"],
        "extract_seconds": timings["extract_seconds"],
        "protocol": manifest.protocol,
        "runtime": manifest.runtime,
        **({"runtime_choice": manifest.runtime_choice} if manifest.runtime_choice else {}),
        "image_sizes": manifest.image_sizes,
        "backbones": manifest.backbone_summary(),
        "ece": metrics.ece,
        "temperature": (manifest.calibration or {}).get("temperature"),
        "head": manifest.head.head,
        "excluded": {split: len(v) for split, v in manifest.excluded.items()},
        **({"relabel": manifest.relabel} if manifest.relabel else {}),
        **({"finetune": manifest.finetune} if manifest.finetune else {}),
        "peak_rss_mb": peak_rss_mb(),
        "_text": f"run {manifest.run_id}: test accuracy {metrics.test_accuracy:.2%} "
        f"(top-5 {percent(metrics.top5_accuracy)})"
        + (f", {manifest.relabel['test_accuracy_fixed']:.2%} against the fixed labels" if manifest.relabel else "")
        + f"; training {timings['train_seconds']:.1f}s, extraction {timings['extract_seconds']:.1f}s",
    }


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """``evaluate``: metrics recomputed from the run's stored predictions."""

    run = load_run(args.layout, args.run_id)
    report = evaluate(run.y_true, run.probs, run.classes)
    lines = [
        f"run {run.run_id}: accuracy {report['accuracy']:.2%}, top-5 {percent(report['top5_accuracy'])}, ECE "
        f"{report['calibration']['ece']:.4f}",
        "",
    ]
    lines.append(f"{'class':<14}{'acc':>8}{'prec':>8}{'recall':>8}{'f1':>8}{'n':>7}")
    for r in report["per_class"]:
        lines.append(
            f"{r['class']:<14}{r['accuracy']:>8.3f}{r['precision']:>8.3f}{r['recall']:>8.3f}"
            f"{r['f1']:>8.3f}{r['support']:>7}"
        )
    lines += ["", "top confused pairs (true -> predicted):"]
    lines += [
        f"  {p['true']:>12} -> {p['predicted']:<12}{p['count']:>5}  ({p['share_of_true']:.1%} of {p['true']})"
        for p in report["top_confused"]
    ]
    report["run_id"] = run.run_id
    report["_text"] = "\n".join(lines)
    return report


def cmd_compare(args: argparse.Namespace) -> dict[str, Any]:
    """``compare``: two runs on the test images they share."""

    result = compare_runs(load_run(args.layout, args.run_a), load_run(args.layout, args.run_b))
    acc, ece = result["accuracy"], result["ece"]
    lines = [
        f"A {result['a']}: accuracy {acc['a']:.2%}, ECE {ece['a']:.4f}",
        f"B {result['b']}: accuracy {acc['b']:.2%}, ECE {ece['b']:.4f}",
        verdict(result),
        "",
        f"{'class':<14}{'A':>8}{'B':>8}{'B-A':>8}",
    ]
    lines += [f"{r['class']:<14}{r['a']:>8.3f}{r['b']:>8.3f}{r['difference']:>+8.3f}" for r in result["per_class"]]
    for key, what in (("only_a", "A right, B wrong"), ("only_b", "B right, A wrong")):
        lines += ["", f"{what} (most confident mistakes first):"]
        lines += [
            f"  test/{r['index']}  {r['label']} (taken for {r['wrong_prediction']}, p {r['wrong_confidence']:.3f})"
            for r in result[key][: args.top]
        ]
    return result | {"verdict": verdict(result), "_text": "\n".join(lines)}


def cmd_runs(args: argparse.Namespace) -> dict[str, Any]:
    """``runs``: list, show, delete, label or export."""

    if args.runs_command == "list":
        manifests = runs.list_runs(args.layout)
        rows = [
            {
                "run_id": m.run_id,
                "label": m.label,
                "protocol": m.protocol,
                "backbone": m.backbone_name,
                "image_sizes": m.image_sizes,
                "backbones": m.backbone_summary(),
                "head": m.head.head,
                "test_accuracy": m.metrics.test_accuracy,
                "train_seconds": m.timings.get("train_seconds"),
                "created": m.created,
            }
            for m in manifests
        ]
        damaged = [{"run_id": rid, "problem": why} for rid, why in runs.list_damaged_runs(args.layout)]
        lines = [
            f"{m.run_id}  {m.metrics.test_accuracy:.2%}  {m.head.head:<6} {m.backbone_summary()}  {m.label}"
            for m in manifests
        ]
        lines += [f"{d['run_id']}  DAMAGED: {d['problem']}" for d in damaged]
        return {"runs": rows, "damaged": damaged, "_text": "\n".join(lines) or "no runs yet"}
    if args.runs_command == "show":
        return runs.read_manifest(args.layout, args.run_id).to_dict()
    if args.runs_command == "delete":
        runs.delete_run(args.layout, args.run_id)
        return {"deleted": args.run_id, "_text": f"deleted {args.run_id}"}
    if args.runs_command == "label":
        manifest = runs.set_label(args.layout, args.run_id, args.text)
        return {
            "run_id": args.run_id,
            "label": manifest.label,
            "_text": f"{args.run_id} is now labelled {manifest.label!r}",
        }
    if args.runs_command == "export":
        layout = args.layout
        # The default folder is this project's own: a previous export there is replaced without --force.
        out, force = (args.out, args.force) if args.out else (layout.export_dir(args.run_id), True)
        if args.zip:
            check_zip_target(out.with_suffix(".zip"), force)
        path = export_run(args.layout, args.run_id, out, force=force)
        result: dict[str, Any] = {"run_id": args.run_id, "export_path": str(path)}
        if args.zip:
            result["zip_path"] = str(zip_folder(path, path.with_suffix(".zip"), force=force))
        result["_text"] = f"exported {args.run_id} to {path}" + (f" and {result['zip_path']}" if args.zip else "")
        return result
    raise RunError(f"unknown runs command {args.runs_command}")


HANDLERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "compare": cmd_compare,
    "runs": cmd_runs,
}
