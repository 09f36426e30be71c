"""What the bench scripts share: the project root on ``sys.path`` (so ``lib`` and ``tests`` import), and the
data and backbone arguments.

    from _common import ROOT, data_args      # bench/ is on sys.path while a bench script runs
    process_cpu_seconds(pid)                 # user + system seconds of a process, from /proc
    args = data_args(argparse.ArgumentParser()).parse_args()    # --source --backbone --image-size --cache-dir
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lib.store.layout import CacheLayout  # noqa: E402  (light: no TensorFlow; needs ROOT on sys.path)


def data_args(
    parser: argparse.ArgumentParser,
    size_flag: str = "--image-size",
    cache_dir: bool = True,
    cache_help: str | None = None,
) -> argparse.ArgumentParser:
    """Add ``--source`` and ``--backbone`` (required), the input side (``size_flag``, default 128 px) and
    ``--cache-dir`` (parsed into the :class:`CacheLayout` the script passes down)."""
    parser.add_argument("--source", required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument(size_flag, type=int, default=128)
    if cache_dir:
        parser.add_argument("--cache-dir", type=CacheLayout, default=str(ROOT / "cache"), help=cache_help)
    return parser


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds of process ``pid`` so far (from /proc; OSError once it has ended)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
