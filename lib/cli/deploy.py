"""Hosting commands: ``bundle`` (pack what a demo reads into one archive) and ``install-bundle`` (unpack one).

python -m lib bundle --out demo.tar [--run RUN_ID ...] [--hosting] [--cache-dir cache]
python -m lib install-bundle demo.tar|https://host/demo.tar [--sha256 HEX] [--thumbs static/thumbs] --cache-dir
/data/cache
"""

from __future__ import annotations

import argparse
from typing import Any

from lib.bundles.install import install_bundle
from lib.bundles.make import make_bundle
from lib.cli.common import add_common
from lib.cli.quality import stage_printer


def add_commands(sub: Any) -> None:
    """Register ``bundle`` and ``install-bundle``."""
    p = sub.add_parser(
        "bundle",
        help="pack runs, their dataset, features (float16), maps, audit and speed results into one archive for a demo",
    )
    p.add_argument("--out", required=True, help="the bundle file to write (.tar)")
    p.add_argument(
        "--run", action="append", default=None, metavar="RUN_ID", help="a run to include (repeat; default: every run)"
    )
    p.add_argument(
        "--hosting",
        action="store_true",
        help="the small form for a free host: images as JPEG sprite sheets, features reduced "
        "(neighbour search only), each run's predictions of every image, LiteRT models and no SavedModel",
    )
    add_common(p)
    p = sub.add_parser(
        "install-bundle", help="unpack a bundle (local path or http(s) URL) into the cache, checking every checksum"
    )
    p.add_argument("bundle", help="a file made by `bundle`, or an http(s) URL")
    p.add_argument(
        "--sha256", default=None, help="the whole file's expected SHA-256 (optional; every member is checked anyway)"
    )
    p.add_argument(
        "--thumbs",
        default=None,
        help="a hosting bundle's sprite sheets go here as the app's hover thumbnails (its static/thumbs)",
    )
    add_common(p)


def _printer() -> Any:

    return stage_printer()


def cmd_bundle(args: argparse.Namespace) -> dict[str, Any]:

    report = make_bundle(args.layout, args.out, args.run, progress=_printer(), hosting=args.hosting)
    checks = "; ".join(
        f"{c['run']}: {c['accuracy']:.2%} stored, {c['accuracy_float16_features']:.2%} from float16 features "
        f"({c['changed_predictions']} predictions changed)"
        for c in report["float16_check"]
    )
    parts = ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in sorted(report["parts_bytes"].items()))
    report["_text"] = (
        f"{report['out']}: {report['bytes'] / 2**20:,.1f} MB, {report['files']} files, runs "
        f"{', '.join(report['runs'])}, {report['float16_features']} feature files "
        f"{'reduced' if args.hosting else 'as float16'}, {report['seconds']}s\n{parts}"
        + (f"\n{checks}" if checks else "")
    )
    return report


def cmd_install_bundle(args: argparse.Namespace) -> dict[str, Any]:
    from pathlib import Path

    info = install_bundle(
        args.bundle,
        args.layout,
        progress=_printer(),
        sha256=args.sha256,
        sprites_root=Path(args.thumbs) if args.thumbs else None,
    )
    if info.get("already_installed"):
        first = f"already installed: {len(info.get('runs', []))} run(s) in {args.layout}, nothing to do"
    else:
        first = (
            f"installed {len(info.get('runs', []))} run(s), {info['artifacts_added']} new artifact(s) into "
            f"{args.layout}"
        )
    info["_text"] = "\n".join([first, *([] if info.get("already_installed") else info.get("notices", []))])
    return info


HANDLERS = {"bundle": cmd_bundle, "install-bundle": cmd_install_bundle}
