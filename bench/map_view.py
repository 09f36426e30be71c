"""The Feature space map of every image in a real browser: render, hover, redraw, memory.

    python -m lib project --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --image-size 128 --method tsne   # once
    python bench/map_view.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --image-size 128 --method t-SNE --cache-dir
        cache

Starts `streamlit run app.py` and headless Chromium (no GPU), opens Feature space on the stored map and
prints, with the CPU model and core count:
- seconds from opening the page to the map being drawn (all points);
- hover-to-thumbnail latency over --hovers points, p50 and p95 (the first hover in a sprite sheet fetches it);
- the canvas redraw time of one pan/zoom frame (the browser's own measurement), p50 and p95;
- the server's peak resident memory while showing the map (VmHWM).
With --shots DIR it also saves the hover and selection screenshots used in the README.
"""

from __future__ import annotations

import argparse
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
    args = p.parse_args()

    from lib.process import machine_info
    from tests.streamlit_server import chromium, hover_until_thumbnail, peak_rss_mb, running_app, wait_idle

    m = machine_info()
    print(f"machine: {m['cpu']}, {m['cores']} cores")
    app_args = ["--source", args.source, "--backbone", args.backbone, "--image-size", str(args.image_size)]
    query = f"fm_method={args.method}" + (f"&run={args.run}&fm_color=correct+vs+wrong" if args.run else "")
    with running_app(app_args, Path(args.cache_dir)) as (url, _), chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        t0 = time.perf_counter()
        page.goto(f"{url}/features?{query}")
        page.locator(".tlx-map[data-draw-ms]").wait_for(
            timeout=300_000
        )  # (Playwright's locators see inside the shadow root)
        print(
            f"map drawn {time.perf_counter() - t0:.2f}s after opening the page "
            f"({page.locator('.tlx-info').inner_text()})"
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
        draws = []
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        for k in range(20):
            page.mouse.move(cx, cy)
            page.mouse.wheel(0, -120 if k < 10 else 120)
            page.wait_for_timeout(60)
            draws.append(float(page.locator(".tlx-map").get_attribute("data-draw-ms") or "nan"))
        print(
            f"redraw of every point per zoom step: p50 {statistics.median(draws):.1f} ms, p95 "
            f"{statistics.quantiles(draws, n=20)[18]:.1f} ms"
        )
        if args.shots:
            page.get_by_role("button", name="Lasso select").click()
            page.mouse.move(cx - 120, cy - 90)
            page.mouse.down()
            for fx, fy in ((40, -110), (150, -40), (120, 80), (-20, 120), (-140, 40), (-120, -90)):
                page.mouse.move(cx + fx, cy + fy, steps=6)
            page.mouse.up()
            page.get_by_role("heading", name="Selected:", exact=False).wait_for(timeout=60_000)
            wait_idle(page)
            page.set_viewport_size({"width": 1400, "height": 2300})
            page.wait_for_timeout(1500)
            page.screenshot(path=str(Path(args.shots) / "7-full-map-selection.png"), full_page=True)
        print(f"server peak RSS {peak_rss_mb(url):.0f} MB")


if __name__ == "__main__":
    main()
