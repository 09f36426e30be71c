"""CLI commands for heads and runs: ``train``, ``evaluate`` and ``runs``; registered by :mod:`lib.cli`.

    python -m lib train --source ... --backbone ... --protocol best --json
    python -m lib evaluate RUN_ID
    python -m lib runs list | show ID | delete ID | label ID TEXT | export ID --out DIR
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib.errors import RunError

HANDLERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {}


def add_commands(sub: Any, add_common: Callable[..., None], add_source: Callable[..., None], add_backbone: Callable[..., None]) -> None:
    """Register ``train``, ``evaluate`` and ``runs`` on the sub-parser set."""
    p = sub.add_parser("train", help="train a head on cached features, register and evaluate the run")
    add_source(p)
    add_backbone(p)
    p.add_argument("--protocol", choices=["blog", "best", "best-multiscale"], default=None, help="a preset; flags below override it")
    p.add_argument("--image-sizes", default=None, help="comma-separated sizes whose features are concatenated, e.g. 128,224")
    p.add_argument("--head", choices=["linear", "mlp"], default=None)
    p.add_argument("--hidden", type=int, default=None, help="MLP hidden units")
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], default=None)
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default=None)
    p.add_argument("--train-batch-size", type=int, default=None, help="examples per optimizer step")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="total steps (overrides --epochs)")
    p.add_argument("--label-smoothing", type=float, default=None)
    p.add_argument("--val-fraction", type=float, default=None)
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs (0 disables)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--flip-train", action=argparse.BooleanOptionalAction, default=None, help="also train on mirrored images")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help="average original and mirrored test predictions")
    p.add_argument("--finetune", action="store_true", help="unfreeze the backbone and train end to end from raw images (slow on CPU)")
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--label", default="", help="a name for the run")
    add_common(p)

    p = sub.add_parser("evaluate", help="overall and per-class metrics of a run, and the top confused pairs")
    p.add_argument("run_id")
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
    q = rsub.add_parser("export", help="write a self-contained SavedModel: raw uint8 images in, class probabilities out")
    q.add_argument("run_id")
    q.add_argument("--out", type=Path, default=None, help="output folder (default: <cache>/exports/<run-id>)")
    q.add_argument("--zip", action="store_true", help="also write a .zip of it")
    add_common(q)


def _request(args: argparse.Namespace) -> Any:
    from lib.heads import HeadConfig
    from lib.pipeline import RunRequest
    from lib.protocols import with_overrides

    if args.protocol:
        req = RunRequest.from_protocol(args.protocol, args.source, args.backbone)
    else:
        req = RunRequest(args.source, args.backbone, HeadConfig())
    req.head = with_overrides(
        req.head,
        head=args.head, hidden=args.hidden, dropout=args.dropout, weight_decay=args.weight_decay, optimizer=args.optimizer,
        learning_rate=args.lr, lr_schedule=args.lr_schedule, batch_size=args.train_batch_size, epochs=args.epochs,
        steps=args.steps, label_smoothing=args.label_smoothing, val_fraction=args.val_fraction, seed=args.seed,
    )  # fmt: skip
    if args.patience is not None:
        req.head.patience = args.patience or None
    if args.image_sizes:
        req.image_sizes = tuple(int(s) for s in args.image_sizes.split(","))
    elif args.image_size:
        req.image_sizes = (args.image_size,)
    if args.flip_train is not None:
        req.train_views = ("original", "flip") if args.flip_train else ("original",)
    if args.tta is not None:
        req.tta = args.tta
    req.limit = args.limit
    req.batch_size = args.batch_size
    return req


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    """``train``: features -> head -> evaluated, registered run."""
    import sys

    from lib.cli import _Bar
    from lib.runs import set_label

    req = _request(args)
    bars: dict[str, _Bar] = {}

    def on_extract(label: str, p: Any) -> None:
        bar = bars.setdefault(label, _Bar(f"extract {label}"))
        bar.update_to(p.done, p.total)
        if p.done >= p.total:
            bar.close()

    def on_epoch(r: Any) -> None:
        val = f" val_loss {r.val_loss:.4f} val_acc {r.val_accuracy:.4f}" if r.val_loss is not None else ""
        print(f"epoch {r.epoch}/{r.epochs} loss {r.loss:.4f} acc {r.accuracy:.4f}{val} ({r.elapsed:.1f}s)", file=sys.stderr)

    if args.finetune:
        from lib.finetune import finetune_run

        manifest = finetune_run(req, args.cache_dir, epochs=args.finetune_epochs, on_stage=lambda m: print(m, file=sys.stderr), on_epoch=on_epoch)
    else:
        from lib.pipeline import train_run

        manifest = train_run(req, args.cache_dir, on_stage=lambda m: print(m, file=sys.stderr), on_extract=on_extract, on_epoch=on_epoch)
    if args.label:
        manifest = set_label(args.cache_dir, manifest["run_id"], args.label)
    metrics, timings = manifest["metrics"], manifest["timings"]
    return {
        "run_id": manifest["run_id"],
        "test_accuracy": metrics["test_accuracy"],
        "top5_accuracy": metrics["top5_accuracy"],
        "train_seconds": timings["train_seconds"],
        "extract_seconds": timings["extract_seconds"],
        "protocol": manifest.get("protocol"),
        "image_sizes": manifest["image_sizes"],
        "head": manifest["head"]["head"],
        **({"finetune": manifest["finetune"]} if "finetune" in manifest else {}),
        "_text": f"run {manifest['run_id']}: test accuracy {metrics['test_accuracy']:.2%} "
        f"(top-5 {metrics['top5_accuracy']:.2%}); training {timings['train_seconds']:.1f}s, extraction {timings['extract_seconds']:.1f}s",
    }


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """``evaluate``: metrics recomputed from the run's stored predictions."""
    from lib.evaluation import evaluate
    from lib.runs import load_run

    run = load_run(args.cache_dir, args.run_id)
    report = evaluate(run.y_true, run.probs, run.classes)
    lines = [f"run {run.run_id}: accuracy {report['accuracy']:.2%}, top-5 {report['top5_accuracy']:.2%}, ECE {report['calibration']['ece']:.4f}", ""]
    lines.append(f"{'class':<14}{'acc':>8}{'prec':>8}{'recall':>8}{'f1':>8}{'n':>7}")
    for r in report["per_class"]:
        lines.append(f"{r['class']:<14}{r['accuracy']:>8.3f}{r['precision']:>8.3f}{r['recall']:>8.3f}{r['f1']:>8.3f}{r['support']:>7}")
    lines += ["", "top confused pairs (true -> predicted):"]
    lines += [f"  {p['true']:>12} -> {p['predicted']:<12}{p['count']:>5}  ({p['share_of_true']:.1%} of {p['true']})" for p in report["top_confused"]]
    report["run_id"] = run.run_id
    report["_text"] = "\n".join(lines)
    return report


def cmd_runs(args: argparse.Namespace) -> dict[str, Any]:
    """``runs``: list, show, delete, label or export."""
    from lib import runs

    if args.runs_command == "list":
        rows = [
            {
                "run_id": m["run_id"], "label": m.get("label", ""), "protocol": m.get("protocol"), "backbone": m.get("backbone_name"),
                "image_sizes": m.get("image_sizes"), "head": m["head"]["head"], "test_accuracy": m["metrics"]["test_accuracy"],
                "train_seconds": m["timings"]["train_seconds"], "created": m.get("created"),
            }
            for m in runs.list_runs(args.cache_dir)
        ]  # fmt: skip
        text = "\n".join(
            f"{r['run_id']}  {r['test_accuracy']:.2%}  {r['head']:<6} {r['backbone']}@{','.join(map(str, r['image_sizes']))}  {r['label'] or ''}" for r in rows
        )
        return {"runs": rows, "_text": text or "no runs yet"}
    if args.runs_command == "show":
        return runs.read_manifest(args.cache_dir, args.run_id)
    if args.runs_command == "delete":
        runs.delete_run(args.cache_dir, args.run_id)
        return {"deleted": args.run_id, "_text": f"deleted {args.run_id}"}
    if args.runs_command == "label":
        manifest = runs.set_label(args.cache_dir, args.run_id, args.text)
        return {"run_id": args.run_id, "label": manifest["label"], "_text": f"{args.run_id} is now labelled {manifest['label']!r}"}
    if args.runs_command == "export":
        from lib.export import export_run, zip_folder

        out = args.out or Path(args.cache_dir) / "exports" / args.run_id
        path = export_run(args.cache_dir, args.run_id, out)
        result: dict[str, Any] = {"run_id": args.run_id, "export_path": str(path)}
        if args.zip:
            result["zip_path"] = str(zip_folder(path, path.with_suffix(".zip")))
        result["_text"] = f"exported {args.run_id} to {path}" + (f" and {result['zip_path']}" if args.zip else "")
        return result
    raise RunError(f"unknown runs command {args.runs_command}")


HANDLERS.update({"train": cmd_train, "evaluate": cmd_evaluate, "runs": cmd_runs})
