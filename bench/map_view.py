"""The Feature space map of every image in a real browser: render, hover, redraw, memory.

    python -m lib project --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --image-size 128 --method tsne   # once
    python bench/map_view.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --image-size 128 --method t-SNE --cache-dir
        cache

Starts `streamlit run app.py` and headless Chromium (no GPU), opens Feature space on the stored map and
prints, with the CPU model and core count, what the browser draws with (the map's own 2-D pixel renderer) and
whether WebGL or WebGPU would have been there:
- seconds from opening the page to the map being drawn (all points), and within that the fetch of the points'
  binary files and the time from their arrival to the first frame;
- hover-to-thumbnail latency over --hovers points, p50 and p95 (the first hover in a sprite sheet fetches it);
- the time to draw every point again after a zoom step (the browser's own measurement), p50 and p95;
- frames per second while dragging the map for 3 s and while turning the wheel for 3 s (frames the map drew / wall
  time; a map whose full redraw takes over 16 ms shows its last frame moved while in motion, then every point);
- a lasso around the middle of the map: its point count, and the seconds from releasing the mouse to the
  selection's class counts and image grid on the page;
- the server's peak resident memory while showing the map (VmHWM).
With --shots DIR it also saves the hover and selection screenshots used in the README; --json FILE keeps the
figures.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from _common import data_args  # (puts the project on sys.path)


def main() -> None:
    p = data_args(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--method", choices=["PCA", "t-SNE"], default="t-SNE")
    p.add_argument("--run", default="", help="a run id, to colour by correct vs wrong")
    p.add_argument("--hovers", type=int, default=30)
    p.add_argument("--shots", default="", help="folder for the README screenshots")
    p.add_argument("--lasso", type=float, default=0.3, help="the lasso's radius, as a share of the map's height")
    p.add_argument("--json", default="", help="write the figures here too")
    args = p.parse_args()
    figures: dict[str, object] = {}

    from lib.process import machine_info
    from tests.streamlit_server import chromium, hover_until_thumbnail, peak_rss_mb, running_app, wait_idle

    m = machine_info()
    print(f"machine: {m['cpu']}, {m['cores']} cores")
    figures["machine"] = m
    app_args = ["--source", args.source, "--backbone", args.backbone, "--image-size", str(args.image_size)]
    query = f"fm_method={args.method}" + (f"&run={args.run}&fm_color=correct+vs+wrong" if args.run else "")
    with running_app(app_args, Path(args.cache_dir)) as (url, _), chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        t0 = time.perf_counter()
        page.goto(f"{url}/features?{query}")
        # (Playwright's locators see inside the shadow root)
        page.locator(".tlx-map[data-first-frame-ms]").wait_for(timeout=600_000)
        host = page.locator(".tlx-map")
        figures["drawn_s"] = round(time.perf_counter() - t0, 2)
        figures["fetch_ms"] = float(host.get_attribute("data-fetch-ms") or "nan")
        figures["first_frame_ms"] = float(host.get_attribute("data-first-frame-ms") or "nan")
        figures["renderer"] = host.get_attribute("data-renderer")
        figures["webgl"] = page.evaluate(GPU_PROBE)
        print(
            f"map drawn {figures['drawn_s']:.2f}s after opening the page ({page.locator('.tlx-info').inner_text()}); "
            f"points' files fetched in {figures['fetch_ms']:.0f} ms, first frame {figures['first_frame_ms']:.0f} ms "
            f"after they arrived; drawn with {figures['renderer']} (this browser: {figures['webgl']})"
        )
        wait_idle(page)
        box = page.locator(".tlx-overlay").bounding_box()
        assert box is not None
        latencies = []
        for k in range(args.hovers):
            page.mouse.move(box["x"] + 5, box["y"] + 5)  # off any point: the tooltip hides
            page.wait_for_timeout(50)
            shifted = dict(box, x=box["x"] + (k % 6 - 3) * 40, y=box["y"] + (k // 6 - 2) * 35)
            ms, _point = hover_until_thumbnail(page, shifted)
            latencies.append(ms)
        q = statistics.quantiles(latencies, n=20)
        figures["hover_ms"] = {"p50": statistics.median(latencies), "p95": q[18], "max": max(latencies)}
        print(
            f"hover to thumbnail over {len(latencies)} points: p50 {statistics.median(latencies):.0f} ms, p95 "
            f"{q[18]:.0f} ms, max {max(latencies):.0f} ms"
        )
        if args.shots:
            Path(args.shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(
                path=str(Path(args.shots) / "7-full-map-hover.png"),
                clip={"x": box["x"] - 10, "y": box["y"] - 50, "width": box["width"] + 20, "height": box["height"] + 90},
            )
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        draws = []
        for k in range(16):  # a zoom step, then still: every point is drawn again
            page.mouse.move(cx, cy)
            page.mouse.wheel(0, -120 if k < 8 else 120)
            page.wait_for_timeout(400)
            draws.append(float(page.locator(".tlx-map").get_attribute("data-draw-ms") or "nan"))
        figures["full_redraw_ms"] = {"p50": statistics.median(draws), "p95": statistics.quantiles(draws, n=20)[18]}
        print(
            f"full redraw of every point after a zoom step: p50 {statistics.median(draws):.1f} ms, p95 "
            f"{statistics.quantiles(draws, n=20)[18]:.1f} ms"
        )
        for kind in ("pan", "zoom"):
            figures[kind] = motion(page, kind, cx, cy)
            f = figures[kind]
            moved = f["frames"] - f["full"]
            print(
                f"{kind} for {f['seconds']:.1f} s ({f['events']} mouse events): {f['fps']:.1f} frames/s, of them "
                f"{f['full']} full redraws and {moved} moved frames"
                + (f" (p50 {f['quick_p50_ms']:.1f} ms)" if moved else "")
            )
        page.get_by_role("button", name="Reset view").click()
        page.get_by_role("button", name="Lasso select").click()
        r = args.lasso * box["height"]
        ring = [(cx + r * math.cos(a / 24 * 2 * math.pi), cy + r * math.sin(a / 24 * 2 * math.pi)) for a in range(25)]
        page.mouse.move(*ring[0])
        page.mouse.down()
        for x, y in ring[1:]:
            page.mouse.move(x, y, steps=2)
        t1 = time.perf_counter()
        page.mouse.up()
        page.get_by_role("heading", name="Selected:", exact=False).wait_for(timeout=120_000)
        page.locator('[data-testid="stImage"]').first.wait_for(timeout=120_000)
        wait_idle(page, timeout_ms=120_000)
        figures["lasso_s"] = round(time.perf_counter() - t1 - 0.3, 2)  # (wait_idle's own 0.3 s taken off)
        figures["lasso_points"] = page.locator(".tlx-info").inner_text().split(" · ")[1]
        print(f"lasso of {figures['lasso_points']}: class counts and image grid shown {figures['lasso_s']:.2f}s after")
        if args.shots:
            page.set_viewport_size({"width": 1400, "height": 2300})
            page.wait_for_timeout(1500)
            page.screenshot(path=str(Path(args.shots) / "7-full-map-selection.png"), full_page=True)
        figures["server_peak_rss_mb"] = round(peak_rss_mb(url))
        print(f"server peak RSS {figures['server_peak_rss_mb']} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


GPU_PROBE = """() => {
  const c = document.createElement('canvas');
  const gl = c.getContext('webgl2') || c.getContext('webgl');
  let what = 'no WebGL';
  if (gl) {
    const d = gl.getExtension('WEBGL_debug_renderer_info');
    what = 'WebGL: ' + (d ? gl.getParameter(d.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER));
  }
  return what + (navigator.gpu ? ', WebGPU' : ', no WebGPU');
}"""


def motion(page: object, kind: str, cx: float, cy: float, seconds: float = 3.0) -> dict[str, float]:
    """Drag the map around (``pan``) or turn the wheel in and out (``zoom``) in small steps for ``seconds``, as fast
    as the browser takes the events; frames the map drew per second of wall time (moved frames and full redraws)."""
    page.get_by_role("button", name="Reset view").click()  # type: ignore[attr-defined]
    page.get_by_role("button", name="Pan").click()  # type: ignore[attr-defined]
    host = page.locator(".tlx-map")  # type: ignore[attr-defined]
    frames0 = int(host.get_attribute("data-frames") or 0)
    full0 = int(host.get_attribute("data-full-frames") or 0)
    quick = []
    page.mouse.move(cx, cy)  # type: ignore[attr-defined]
    if kind == "pan":
        page.mouse.down()  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    k = 0
    while time.perf_counter() - t0 < seconds:
        k += 1
        if kind == "pan":
            page.mouse.move(cx + 120 * math.sin(k / 9), cy + 80 * math.cos(k / 13))  # type: ignore[attr-defined]
        else:
            page.mouse.wheel(0, -40 if (k // 15) % 2 == 0 else 40)  # type: ignore[attr-defined]
        if k % 5 == 0:
            quick.append(float(host.get_attribute("data-quick-ms") or "nan"))
    elapsed = time.perf_counter() - t0
    frames = int(host.get_attribute("data-frames") or 0) - frames0
    full = int(host.get_attribute("data-full-frames") or 0) - full0
    if kind == "pan":
        page.mouse.up()  # type: ignore[attr-defined]
    page.wait_for_timeout(400)
    quick = [q for q in quick if q == q]
    return {
        "seconds": elapsed,
        "events": k,
        "frames": frames,
        "fps": frames / elapsed,
        "full": full,
        "quick_p50_ms": statistics.median(quick) if quick else float("nan"),
    }


if __name__ == "__main__":
    main()
