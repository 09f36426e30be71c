"""Peak memory of converting hostile image folders: eight 9000x9000 PNGs, and a zip whose one member inflates to 1 GiB.

Each case converts in a fresh process (`python -m lib data`), so its peak RSS (VmHWM) is its own.

    python bench/decode_bombs.py [--workdir /tmp/bombs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from _common import ROOT

from tests import fixtures


def big_pngs(root: Path, n: int = 8, side: int = 9000) -> Path:
    """``n`` PNGs of ``side`` x ``side`` (a gradient: small on disk, 243 MB each once decoded), plus a small ordinary
    set."""
    import numpy as np
    from PIL import Image

    fixtures.make_image_folder(root, classes=("cat", "dog"), per_class=4, test_per_class=2, corrupt=False, mixed=False)
    row = np.linspace(0, 255, side, dtype=np.uint8)
    img = Image.fromarray(np.stack([np.tile(row, (side, 1))] * 3, axis=2))
    for i in range(n):
        img.save(root / "train" / ("cat" if i % 2 else "dog") / f"big{i}.png", compress_level=1)
    return root


def zip_bomb(path: Path, folder: Path, gib: int = 1) -> Path:
    """The small folder zipped, plus one member of ``gib`` GiB of zeros (about a megabyte compressed)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*.*")):
            if not p.name.startswith("big"):
                zf.write(p, p.relative_to(folder))
        with zf.open("train/cat/bomb.png", "w", force_zip64=True) as member:
            block = bytes(1 << 24)
            for _ in range(gib * 64):
                member.write(block)
    return path


def convert(source: Path, cache: Path) -> dict[str, object]:
    """`python -m lib data --json` in a fresh process; its summary, seconds and peak RSS."""
    script = (
        "import json, runpy, sys; sys.argv = ['lib', 'data', '--source', sys.argv[1], '--cache-dir', sys.argv[2], "
        "'--json']\ntry:\n    runpy.run_module('lib', run_name='__main__')\nexcept SystemExit: pass\nprint('RSS', [l "
        "for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", script, str(source), str(cache)], cwd=ROOT, capture_output=True, text=True, timeout=1800
    )
    seconds = time.perf_counter() - t0
    lines = proc.stdout.strip().splitlines()
    rss = int(lines[-1].split()[1]) / 1024 if lines and lines[-1].startswith("RSS") else None
    summary = (
        json.loads(lines[0]) if lines and lines[0].startswith("{") else {"error": proc.stderr.strip().splitlines()[-1:]}
    )
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(rss, 0) if rss else None,
        "skipped": {s: v.get("skipped") for s, v in summary.get("splits", {}).items()} or summary.get("error"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="where the folders are written (default: a temp folder)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tlx-bombs-"))
    work.mkdir(parents=True, exist_ok=True)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    print(f"{cpu}, {os.cpu_count()} cores, {platform.python_version()}")
    folder = big_pngs(work / "big_pngs")
    print("eight 9000x9000 PNGs:", convert(folder, work / "cache_pngs"))
    bomb = zip_bomb(work / "bomb.zip", folder)
    print(f"zip with a 1 GiB member ({bomb.stat().st_size / 2**20:.1f} MB on disk):", convert(bomb, work / "cache_zip"))


if __name__ == "__main__":
    main()
