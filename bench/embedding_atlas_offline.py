"""Does Apple's Embedding Atlas Streamlit component draw a map with no network? (the evaluation in docs/maps.md)

    pip download embedding-atlas==0.26.0 --no-deps -d /tmp/ea && unzip -q /tmp/ea/*.whl -d /tmp/ea/pkg
    python bench/embedding_atlas_offline.py --package-dir /tmp/ea/pkg [--points 60000] [--shot ea.png]

The wheel is unpacked, not installed: its Python side needs pandas >= 3, sentence-transformers, accelerate, litellm
and more, none of which its Streamlit component uses (``embedding_atlas/streamlit.py`` imports only Streamlit and its
own options). A throwaway app draws N points in ten clusters with ``embedding_atlas(df, x=, y=, text=)``; headless
Chromium (Debian's, as the tests use it) opens it, waits --wait seconds, and this prints every request the page made
to a host other than this machine, every failed request, the last console lines, and saves a screenshot.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the project on sys.path)

APP = """
import sys
sys.path.insert(0, {package_dir!r})
import numpy as np, pandas as pd, streamlit as st
from embedding_atlas.streamlit import embedding_atlas
n = {points}
rng = np.random.default_rng(0)
lab = rng.integers(0, 10, n)
names = np.array(list("abcdefghij"))[lab]
x = rng.normal(size=n) * 3 + np.cos(lab * 0.6) * 30
y = rng.normal(size=n) * 3 + np.sin(lab * 0.6) * 30
st.write(f"{{n}} points")
embedding_atlas(pd.DataFrame({{"x": x, "y": y, "label": names, "text": names}}), x="x", y="y", text="text", key="ea")
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--package-dir", required=True, help="the folder holding the unpacked embedding_atlas package")
    p.add_argument("--points", type=int, default=60_000)
    p.add_argument("--wait", type=float, default=45.0)
    p.add_argument("--shot", default="embedding-atlas-offline.png")
    args = p.parse_args()

    from lib.process import machine_info
    from tests.streamlit_server import chromium, free_port, stop

    m = machine_info()
    print(f"machine: {m['cpu']}, {m['cores']} cores; {args.points:,} points")
    with tempfile.TemporaryDirectory(prefix="tlx-ea-") as tmp:
        app = Path(tmp) / "app.py"
        app.write_text(APP.format(package_dir=str(Path(args.package_dir).resolve()), points=args.points))
        port = free_port()
        argv = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true"]
        server = subprocess.Popen(
            [*argv, "--server.port", str(port), "--browser.gatherUsageStats", "false"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(6)
            with chromium() as browser:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                local = ("http://127.0.0.1", "http://localhost", "data:", "blob:")
                outside: list[str] = []
                failed: list[str] = []
                console: list[str] = []
                page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(local) else None)
                page.on("requestfailed", lambda r: failed.append(f"{r.url[:140]} ({r.failure})"))
                page.on("console", lambda msg: console.append(msg.text[:240]))
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_timeout(args.wait * 1000)
                page.screenshot(path=args.shot)
        finally:
            stop(server, 10)
    print("requests to other hosts:", *sorted(set(outside)) or ["none"], sep="\n  ")
    print("failed requests:", *failed or ["none"], sep="\n  ")
    print("last console lines:", *console[-4:], sep="\n  ")
    print(f"screenshot: {args.shot}")


if __name__ == "__main__":
    main()
