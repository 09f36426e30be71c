"""Command line: ``python -m lib <command>``; the same lib functions the app calls.

    python -m lib data --source ../shared/data/cifar10-jpeg.tar.gz
    python -m lib extract --source ... --backbone ... --image-size 128 --split all --json
    python -m lib backbones
    python -m lib train --source ... --backbone ... --protocol best --json
    python -m lib evaluate RUN_ID
    python -m lib runs list|show|delete|label|export ...

Every command takes ``--cache-dir`` and ``--json`` (one JSON object on stdout);
progress goes to stderr, and errors exit non-zero with a one-line message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib import config
from lib.errors import UserFacingError


class _Bar:
    """A tqdm bar on stderr that is silent when stderr is not wanted."""

    def __init__(self, desc: str, unit: str = "img") -> None:
        from tqdm import tqdm

        self.bar = tqdm(desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 5.0)

    def update_to(self, done: int, total: int) -> None:
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", type=Path, default=None, help=f"artifact folder (default: ${config.ENV_CACHE_DIR} or ./cache)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default=os.environ.get(config.ENV_SOURCE, config.DEFAULT_SOURCE), help="'cifar10' or a local path")


def _add_backbone(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default=os.environ.get(config.ENV_BACKBONE, config.DEFAULT_BACKBONE), help="registry name, handle or path")
    p.add_argument("--image-size", type=int, default=None, help="input side in pixels (default: the module's native size)")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images of each class")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(prog="python -m lib", description="Transfer learning on TF Hub backbones.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="fetch, verify and cache a data source; print a summary")
    _add_source(p)
    _add_common(p)

    p = sub.add_parser("extract", help="compute or load cached features")
    _add_source(p)
    _add_backbone(p)
    p.add_argument("--split", default="all", help="train, test, or all")
    p.add_argument("--view", choices=["original", "flip", "both"], default="original", help="image view(s) to extract")
    _add_common(p)

    p = sub.add_parser("backbones", help="list the backbone registry")
    _add_common(p)

    from lib import cli_runs

    cli_runs.add_commands(sub, _add_common, _add_source, _add_backbone)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    args.cache_dir = args.cache_dir or config.default_cache_dir()
    handlers: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
        "data": cmd_data,
        "extract": cmd_extract,
        "backbones": cmd_backbones,
    }
    from lib import cli_runs

    handlers.update(cli_runs.HANDLERS)
    try:
        result = handlers[args.command](args)
    except UserFacingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; finished chunks are kept and the next run resumes from them", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get("TLX_DEBUG"):
            raise
        print(f"error: unexpected {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} (set TLX_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(result.pop("_text", None) or json.dumps(result, indent=2, default=str))
    return 0


def cmd_data(args: argparse.Namespace) -> dict[str, Any]:
    """``data``: convert a source into the cache and summarise it."""
    from lib.datasets import load_dataset

    bar = _Bar("data", unit="item")
    try:
        ds = load_dataset(args.source, args.cache_dir, progress=lambda d, t, _: bar.update_to(d, t))
    finally:
        bar.close()
    summary = ds.summary()
    lines = [f"{ds.source}  ({ds.kind}, fingerprint {ds.fingerprint}, images {'x'.join(map(str, ds.image_shape))})"]
    header = f"{'class':<14}" + "".join(f"{s:>9}" for s in ds.splits)
    lines.append(header)
    for i, cls in enumerate(ds.classes):
        lines.append(f"{cls:<14}" + "".join(f"{ds.counts[s][i]:>9}" for s in ds.splits))
    lines.append(f"{'total':<14}" + "".join(f"{ds.size(s):>9}" for s in ds.splits))
    if any(ds.skipped.values()):
        lines.append("skipped unreadable files: " + ", ".join(f"{s}={n}" for s, n in ds.skipped.items()))
    summary["_text"] = "\n".join(lines)
    return summary


def splits_for(arg: str, available: tuple[str, ...]) -> list[str]:
    """Expand ``--split all`` into the dataset's splits."""
    return list(available) if arg == "all" else [arg]


def cmd_extract(args: argparse.Namespace) -> dict[str, Any]:
    """``extract``: compute or load features for the requested splits and views."""
    from lib.backbones import resolve_backbone
    from lib.datasets import load_dataset
    from lib.features import ExtractProgress, cached_feature_result, get_features

    t0 = time.perf_counter()
    ds = load_dataset(args.source, args.cache_dir)
    spec = resolve_backbone(args.backbone)
    size = args.image_size or spec.default_size()
    views = ["original", "flip"] if args.view == "both" else [args.view]
    jobs = [(s, v) for s in splits_for(args.split, ds.splits) for v in views]
    loaded = None
    artifacts: list[dict[str, Any]] = []
    for split, view in jobs:
        result = cached_feature_result(ds, split, spec, size, view, args.limit, args.cache_dir)
        if result is None:
            if loaded is None:
                from lib.backbones import load_backbone

                loaded = load_backbone(spec, args.cache_dir)
            bar = _Bar(f"{split}/{view}@{size}")

            def report(p: ExtractProgress, bar: _Bar = bar) -> None:
                bar.update_to(p.done, p.total)

            try:
                result = get_features(ds, split, spec, args.cache_dir, size, view, args.limit, args.batch_size, report, loaded)
            finally:
                bar.close()
        artifacts.append(
            {
                "split": split,
                "view": view,
                "images": int(result.features.shape[0]),
                "cache_hit": result.cache_hit,
                "cache_path": str(result.path),
                "seconds": round(result.seconds, 4),
                "extract_seconds": round(result.extract_seconds, 3),
            }
        )
    seconds = time.perf_counter() - t0
    images = sum(a["images"] for a in artifacts)
    dim = int(get_dim(artifacts))
    return {
        "peak_rss_mb": peak_rss_mb(),
        "source": ds.source,
        "dataset_fingerprint": ds.fingerprint,
        "backbone": spec.handle,
        "image_size": size,
        "splits": [a["split"] for a in artifacts],
        "images": images,
        "feature_dim": dim,
        "seconds": round(seconds, 4),
        "images_per_second": round(images / seconds, 1) if seconds else None,
        "cache_hit": all(a["cache_hit"] for a in artifacts),
        "cache_path": artifacts[0]["cache_path"] if len(artifacts) == 1 else str(Path(artifacts[0]["cache_path"]).parent),
        "artifacts": artifacts,
    }


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (Linux VmHWM, which an exec resets), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def get_dim(artifacts: list[dict[str, Any]]) -> int:
    """Feature dimension read from the first artifact's header (memory-mapped, cheap)."""
    import numpy as np

    return int(np.load(artifacts[0]["cache_path"], mmap_mode="r").shape[1])


def cmd_backbones(args: argparse.Namespace) -> dict[str, Any]:
    """``backbones``: the registry as a table."""
    from lib.backbones import REGISTRY

    rows = [{"name": s.name, "family": s.family, "input_size": s.native_size, "feature_dim": s.feature_dim, "handle": s.handle} for s in REGISTRY.values()]
    text = "\n".join(f"{r['name']:<24}{r['family']:<16}{r['input_size']!s:>5}{r['feature_dim']!s:>6}  {r['handle']}" for r in rows)
    return {"backbones": rows, "default": config.DEFAULT_BACKBONE, "_text": text}
