"""Many visitors at once on the hosted demo: N concurrent sessions through every page, uploads included.

    python -m lib install-bundle demo.tar --cache-dir /tmp/democache      # or pass --bundle demo.tar here
    python bench/visitors.py --cache-dir /tmp/democache --sessions 10 [--client browser|light]

Starts `streamlit run app.py -- --demo` (read-only) on the cache, warms it with one visit of every page (a hosted
demo is warm after its first visitor; --no-warmup skips this), then drives --sessions visitors at the same time,
--rounds times each. Visitors arrive spread over --ramp seconds (default 5) and read each page for --think seconds
(default 2, each pause uniform between 0.5x and 1.5x) before the next click; --think 0 --ramp 0 is the lockstep
stress case where every visitor clicks at the same instant and never reads.
A browser visitor (a Playwright context on one headless Chromium, no GPU) opens Home, then
clicks through Browse data, Train or load, Feature space (waits for the map of every image to be drawn), Evaluate
(uploads a PNG and waits for the prediction, then a text file and waits for the refusal), Data quality and Speed vs
accuracy. Its render time runs from the click until the page's own content is shown and the script has finished.

Chromium rendering ten Streamlit tabs takes most of a 2-core machine from the server, so by default
(--client light) one visitor is that Chromium session, whose render times are the figures, and the others are
light clients that speak Streamlit's websocket protocol (BackMsg rerun_script per page, then the ForwardMsgs up to
script_finished): the server does the same work for them, the browser's CPU is left out. Light clients do not
upload (the browser visitor does). --client browser makes every visitor a Chromium context.

Prints, with the CPU model and core count: p50 and p95 per page and overall (browser render times; the light
clients' round trips separately), errors (an exception box, a browser page error, a timeout, a missing page
heading, or a write that got through: the cache's file listing is compared before and after), and the server's
peak resident memory (VmHWM). Exit status 1 if any visitor hit an error.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the project on sys.path: lib and tests import)

from ui.pages import PAGES as TABLE

# The app's pages (ui/pages.py), Home last: (nav title, the heading it draws, a locator to wait for or None)
PAGES = [(p.title, p.heading, p.wait_for) for p in (*TABLE[1:], TABLE[0])]
IDLE_JS = (
    "() => { const s = document.querySelector('[data-testid=\"stStatusWidget\"]'); return !s || "
    "!s.innerText.match(/Running|Stop/i); }"
)


def _png() -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def listing(cache: Path) -> set[tuple[str, int]]:
    """Every file under the cache with its size (what a read-only demo must leave as it is)."""
    return {(str(p.relative_to(cache)), p.stat().st_size) for p in cache.rglob("*") if p.is_file()}


async def _idle(page: Any, timeout: float) -> None:
    await page.wait_for_function(IDLE_JS, timeout=timeout)
    await page.wait_for_timeout(150)
    await page.wait_for_function(IDLE_JS, timeout=timeout)


THINK = (2.0, 5.0)  # seconds a visitor reads a page before the next click (mean), and the ramp-up of arrivals


async def pause(think: float, k: int, step: int) -> None:
    """A visitor reading the page: uniform 0.5x-1.5x ``think`` seconds (seeded per visitor and step)."""
    import random

    if think > 0:
        await asyncio.sleep(think * random.Random(k * 1000 + step).uniform(0.5, 1.5))


async def visitor(
    k: int,
    browser: Any,
    url: str,
    rounds: int,
    timings: dict[str, list[float]],
    errors: list[str],
    png: bytes,
    timeout: float,
    think: float = 0.0,
    delay: float = 0.0,
) -> None:
    await asyncio.sleep(delay)
    context = await browser.new_context(viewport={"width": 1400, "height": 1100})
    page = await context.new_page()
    page.on("pageerror", lambda e: errors.append(f"visitor {k}: page error {e}"))
    try:
        t0 = time.perf_counter()
        await page.goto(url)
        await page.get_by_role("heading", name="Transfer learning explorer").wait_for(timeout=timeout)
        await _idle(page, timeout)
        timings.setdefault("Home (first visit)", []).append(time.perf_counter() - t0)
        step = 0
        for _ in range(rounds):
            for title, text, extra in PAGES:
                step += 1
                await pause(think, k, step)
                t0 = time.perf_counter()
                await page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
                await page.get_by_role("heading", name=text, exact=True).first.wait_for(timeout=timeout)
                if extra:
                    await page.locator(extra).first.wait_for(timeout=timeout)
                await _idle(page, timeout)
                timings.setdefault(title, []).append(time.perf_counter() - t0)
                boxes = await page.locator('[data-testid="stException"]').all_inner_texts()
                errors.extend(f"visitor {k} on {title}: {b[:200]}" for b in boxes)
                if title == "Evaluate":
                    t0 = time.perf_counter()
                    await page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
                        {"name": "visitor.png", "mimeType": "image/png", "buffer": png}
                    )
                    await page.get_by_test_id("stMetric").filter(has_text="Prediction").wait_for(timeout=timeout)
                    await _idle(page, timeout)
                    timings.setdefault("Evaluate: classify an upload", []).append(time.perf_counter() - t0)
                    await page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
                        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"}
                    )
                    await page.get_by_text("not an image", exact=False).first.wait_for(timeout=timeout)
                    await _idle(page, timeout)
    except Exception as err:  # noqa: BLE001 - a timeout or a Playwright error is this visitor's error, reported below
        errors.append(f"visitor {k}: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
    finally:
        await context.close()


URL_PATHS = {p.title: p.url_path for p in TABLE}


async def light_visitor(
    k: int,
    url: str,
    rounds: int,
    timings: dict[str, list[float]],
    errors: list[str],
    timeout: float,
    think: float = 0.0,
    delay: float = 0.0,
) -> None:
    """A visitor without a browser: Streamlit's websocket protocol, one rerun per page, until script_finished."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    try:
        await asyncio.sleep(delay)
        async with websockets.connect(
            url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"], max_size=None
        ) as ws:  # type: ignore[list-item]
            step = 0
            for _ in range(rounds):
                for title, text, _extra in [PAGES[-1], *PAGES]:
                    step += 1
                    if step > 1:
                        await pause(think, 100 + k, step)
                    msg = BackMsg()
                    msg.rerun_script.page_name = URL_PATHS[title]
                    t0 = time.perf_counter()
                    await ws.send(msg.SerializeToString())
                    headings = []
                    while True:
                        fm = ForwardMsg.FromString(await asyncio.wait_for(ws.recv(), timeout / 1000))
                        kind = fm.WhichOneof("type")
                        if kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                            el = fm.delta.new_element
                            if el.WhichOneof("type") == "heading":
                                headings.append(el.heading.body)
                            elif el.WhichOneof("type") == "exception":
                                errors.append(f"light visitor {k} on {title}: {el.exception.message[:200]}")
                        elif kind == "script_finished":
                            break
                    timings.setdefault(title, []).append(time.perf_counter() - t0)
                    if text not in headings:
                        errors.append(
                            f"light visitor {k} on {title}: the page did not render (headings {headings[:3]})"
                        )
    except Exception as err:  # noqa: BLE001 - a timeout or a closed socket is this visitor's error, reported below
        errors.append(f"light visitor {k}: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")


async def drive(
    url: str, sessions: int, rounds: int, timeout: float, client: str, think: float = 0.0, ramp: float = 0.0
) -> tuple[dict[str, list[float]], dict[str, list[float]], list[str], float]:
    from playwright.async_api import async_playwright

    from tests.streamlit_server import CHROMIUM, CHROMIUM_ARGS

    timings: dict[str, list[float]] = {}
    light: dict[str, list[float]] = {}
    errors: list[str] = []
    png = _png()
    browsers = sessions if client == "browser" else 1
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        t0 = time.perf_counter()
        delays = [ramp * k / max(sessions, 1) for k in range(sessions)]  # arrivals spread evenly over the ramp
        browser_visits = [
            visitor(k, browser, url, rounds, timings, errors, png, timeout, think, delays[k]) for k in range(browsers)
        ]
        light_visits = [
            light_visitor(k, url, rounds, light, errors, timeout, think, delays[browsers + k])
            for k in range(sessions - browsers)
        ]
        await asyncio.gather(*browser_visits, *light_visits)
        wall = time.perf_counter() - t0
        await browser.close()
    return timings, light, errors, wall


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 2 else values[0]


def _summary(timings: dict[str, list[float]]) -> dict[str, Any]:
    every = [t for ts in timings.values() for t in ts]
    return {
        "pages": {
            name: {"n": len(ts), "p50_s": round(statistics.median(ts), 2), "p95_s": round(p95(ts), 2)}
            for name, ts in timings.items()
        },
        "p50_s": round(statistics.median(every), 2) if every else None,
        "p95_s": round(p95(every), 2) if every else None,
    }


def run(
    cache_dir: Path,
    sessions: int,
    rounds: int = 1,
    bundle: str = "",
    timeout_s: float = 120.0,
    log: Path | None = None,
    client: str = "light",
    warmup: bool = True,
    think: float = THINK[0],
    ramp: float = THINK[1],
    slim: str = "",
) -> dict[str, Any]:
    """Drive the visitors; returns the figures (also used by the CI test). ``slim``: a Python whose environment has only
    deploy/demo/requirements.txt, serving deploy/demo/streamlit_app.py (the demo without TensorFlow)."""
    import sys as _sys

    from lib.process import machine_info
    from tests.streamlit_server import ROOT, peak_rss_mb, running_app

    args = ["--demo"] + (["--bundle", bundle] if bundle else [])
    entry = ROOT / "deploy" / "demo" / "streamlit_app.py" if slim else ROOT / "app.py"
    with running_app(args, cache_dir, timeout=300, log=log, python=slim or _sys.executable, entry=entry) as (url, _):
        warm_errors: list[str] = []
        if warmup:  # installs the bundle (if any) and fills the shared caches, as a hosted demo's first visitor would
            warm_errors = [f"warm-up: {e}" for e in asyncio.run(drive(url, 1, 1, timeout_s * 1000 * 2, "light"))[2]]
        before = listing(cache_dir)
        timings, light, errors, wall = ({}, {}, [], 0.0)
        if not warm_errors:
            timings, light, errors, wall = asyncio.run(
                drive(url, sessions, rounds, timeout_s * 1000, client, think, ramp)
            )
        errors = warm_errors + errors
        rss = peak_rss_mb(url)
        after = listing(cache_dir)
    if before != after:
        changed = sorted({name for name, _ in before ^ after})
        errors.append(f"the read-only cache changed: {changed[:5]}")
    return {
        "machine": machine_info(),
        "sessions": sessions,
        "rounds": rounds,
        "client": client,
        "think_s": think,
        "ramp_s": ramp,
        "wall_s": round(wall, 1),
        "errors": errors,
        "server": "slim (deploy/demo)" if slim else "app.py",
        **_summary(timings),
        "light": _summary(light) if light else None,
        "server_peak_rss_mb": round(rss),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--cache-dir", required=True, type=Path, help="the demo's cache (a bundle installed into it, or --bundle)"
    )
    ap.add_argument("--bundle", default="", help="install this bundle at server start first")
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1, help="times each visitor goes through every page")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a page may take before it counts as an error")
    ap.add_argument(
        "--client",
        choices=["light", "browser"],
        default="light",
        help="light: one Chromium visitor, the rest websocket clients",
    )
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument(
        "--think",
        type=float,
        default=THINK[0],
        help="mean seconds a visitor reads a page before the next click (0: none)",
    )
    ap.add_argument(
        "--ramp", type=float, default=THINK[1], help="seconds over which the visitors arrive (0: all at once)"
    )
    ap.add_argument(
        "--slim",
        default="",
        metavar="PYTHON",
        help="serve deploy/demo/streamlit_app.py with this interpreter (a venv with only deploy/demo/requirements.txt)",
    )
    a = ap.parse_args()
    r = run(
        a.cache_dir,
        a.sessions,
        a.rounds,
        a.bundle,
        a.timeout,
        client=a.client,
        warmup=not a.no_warmup,
        think=a.think,
        ramp=a.ramp,
        slim=a.slim,
    )
    m = r["machine"]
    browsers = r["sessions"] if a.client == "browser" else 1
    print(
        f"machine: {m['cpu']}, {m['cores']} cores; {r['sessions']} concurrent sessions ({browsers} Chromium, "
        f"{r['sessions'] - browsers} websocket clients) x {r['rounds']} round(s) in {r['wall_s']}s; demo mode, "
        f"{r['server']}"
        + ("" if a.no_warmup else ", after one warm-up visit")
        + f"; think time {a.think:g}s (0.5-1.5x), arrivals over {a.ramp:g}s"
    )
    for label, part in (("Chromium render time", r), ("websocket round trip", r["light"])):
        if not part or part.get("p50_s") is None:
            continue  # no visit was timed (the warm-up failed: its errors are printed below)
        print(f"{label:32} {'n':>7} {'p50 s':>7} {'p95 s':>7}")
        for name, v in part["pages"].items():
            print(f"  {name:30} {v['n']:>7} {v['p50_s']:>7.2f} {v['p95_s']:>7.2f}")
        print(
            f"  {'all pages':30} {sum(v['n'] for v in part['pages'].values()):>7} {part['p50_s']:>7.2f} "
            f"{part['p95_s']:>7.2f}"
        )
    print(f"errors: {len(r['errors'])}" + "".join(f"\n  {e}" for e in r["errors"][:20]))
    print(f"server peak RSS: {r['server_peak_rss_mb']} MB")
    sys.exit(1 if r["errors"] else 0)


if __name__ == "__main__":
    main()
