"""The README's screenshots of pages that need a full local cache (the default benchmark grid, a full audit),
which the browser test cannot build in CI time: a real `streamlit run` on that cache, headless Chromium.

    python bench/screenshots.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --image-size 128 --cache-dir cache

Writes docs/screenshots/6-speed-vs-accuracy.png and 9-data-quality*.png. Each page is checked for
Streamlit exceptions before its picture is taken.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from _common import ROOT, data_args  # (puts the project on sys.path)


def main() -> int:
    from tests.streamlit_server import chromium, running_app, wait_idle

    parser = data_args(argparse.ArgumentParser())
    parser.add_argument("--budget-ms", default="2")
    args = parser.parse_args()
    out = ROOT / "docs" / "screenshots"
    app_args = ["--source", args.source, "--backbone", args.backbone, "--image-size", str(args.image_size)]
    with running_app(app_args, Path(args.cache_dir)) as (url, _), chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1800})

        def shot(name: str) -> None:
            wait_idle(page)
            if page.get_by_test_id("stException").count():
                raise SystemExit(f"{name}: the page shows an exception")
            page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            print(f"wrote {out / name}.png")

        page.goto(f"{url}/speed")
        page.locator('[data-testid="stVegaLiteChart"] svg, [data-testid="stVegaLiteChart"] canvas').first.wait_for(timeout=60_000)
        budget = page.get_by_label("Latency budget per image (ms, single image, p50)")
        budget.fill(args.budget_ms)
        budget.press("Enter")
        wait_idle(page)
        page.get_by_test_id("stAlertContentSuccess").first.wait_for(timeout=30_000)
        shot("6-speed-vs-accuracy")

        page.goto(f"{url}/quality")
        page.get_by_role("tab", name="Label issues").wait_for(timeout=120_000)
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=60_000)
        shot("9-data-quality-label-issues")
        page.get_by_role("tab", name="Near-duplicates").click()
        page.get_by_text(re.compile(r"pairs (at similarity|confirmed as the same photograph)")).wait_for(timeout=30_000)
        shot("9-data-quality-duplicates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
