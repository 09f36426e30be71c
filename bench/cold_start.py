"""A hosted demo's cold start: an empty cache, the bundle at a URL (served here over HTTP on 127.0.0.1), the server
started, and the first page drawn in Chromium. What a free host does after every sleep or restart.

    python bench/cold_start.py --bundle demo.tar [--slim PYTHON]   # --slim: a venv with only
    deploy/demo/requirements.txt

Prints the CPU model and cores, the bundle's size, and seconds from starting the server to: healthy, and the Home page
drawn (bundle downloaded, verified and installed first, with its progress bar).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common  # noqa: F401  (puts the project on sys.path)


def main() -> int:
    from lib.process import machine_info
    from tests.streamlit_server import ROOT, chromium, running_app, wait_idle

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, type=Path)
    ap.add_argument(
        "--slim", default="", metavar="PYTHON", help="serve deploy/demo/streamlit_app.py with this interpreter"
    )
    a = ap.parse_args()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(a.bundle.resolve().parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url_bundle = f"http://127.0.0.1:{server.server_address[1]}/{a.bundle.name}"
    entry = ROOT / "deploy" / "demo" / "streamlit_app.py" if a.slim else ROOT / "app.py"
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.monotonic()
        with (
            running_app(
                ["--demo"],
                Path(cache),
                timeout=600,
                python=a.slim or sys.executable,
                entry=entry,
                env_extra={"TLX_BUNDLE": url_bundle},
            ) as (url, healthy),
            chromium() as browser,
        ):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.get_by_role("heading", name="Transfer learning explorer").wait_for(timeout=600_000)
            wait_idle(page, 600_000)
            drawn = time.monotonic()
    server.shutdown()
    m = machine_info()
    print(
        f"machine: {m['cpu']}, {m['cores']} cores; bundle {a.bundle.stat().st_size / 1e6:,.1f} MB over HTTP on "
        f"127.0.0.1; server: {'deploy/demo (slim)' if a.slim else 'app.py'}"
    )
    print(f"healthy after {healthy - t0:.1f}s; first page drawn (bundle installed) after {drawn - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
