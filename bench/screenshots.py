"""The README's screenshots of pages that need a full local cache (the default benchmark grid, a full audit),
which the browser test cannot build in CI time: a real `streamlit run` on that cache, headless Chromium.

    python bench/screenshots.py --source ../shared/data/cifar10-jpeg.tar.gz \
        --backbone ../shared/models/mobilenet_v1_100_224_feature_vector --image-size 128 --cache-dir cache

Writes docs/screenshots/6-speed-vs-accuracy.png and 9-data-quality*.png. Each page is checked for
Streamlit exceptions before its picture is taken.

With ``--curation A B FIXED`` (three run ids: two to compare, and one trained with ``--relabel``) it takes the curation
loop's pictures instead (11-15-*.png): fixing three flagged labels (``--fix SPLIT/INDEX`` three times: ones a person
checked; saved to the cache's ``label-fixes`` list), the Label fixes tab, Evaluate of FIXED, Compare A and B, and a
search by image on Browse (the uploaded image: test image 7 of the source, upscaled to 128 px and saved as PNG).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from _common import ROOT, data_args  # (puts the project on sys.path)


def main() -> int:
    from tests.streamlit_server import chromium, running_app, wait_idle

    parser = data_args(argparse.ArgumentParser())
    parser.add_argument("--budget-ms", default="2")
    parser.add_argument("--curation", nargs=3, metavar=("RUN_A", "RUN_B", "FIXED_RUN"), default=None)
    parser.add_argument(
        "--fix",
        action="append",
        default=None,
        metavar="SPLIT/INDEX",
        help="with --curation: the flagged images to fix (ones a person checked); default the first three",
    )
    args = parser.parse_args()
    out = ROOT / "docs" / "screenshots"
    app_args = ["--source", args.source, "--backbone", args.backbone, "--image-size", str(args.image_size)]
    with running_app(app_args, Path(args.cache_dir)) as (url, _), chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1800})

        def shot(name: str) -> None:
            wait_idle(page)
            if page.get_by_test_id("stException").count():
                raise SystemExit(f"{name}: the page shows an exception")
            page.wait_for_function(
                "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)", timeout=30_000
            )
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            print(f"wrote {out / name}.png")

        if args.curation:
            curation(page, url, args, shot)
            return 0
        page.goto(f"{url}/speed")
        page.locator('[data-testid="stVegaLiteChart"] svg, [data-testid="stVegaLiteChart"] canvas').first.wait_for(
            timeout=60_000
        )
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


def curation(page: Any, url: str, args: argparse.Namespace, shot: Any) -> None:
    """The curation loop's pictures (see the module's docstring)."""
    import io

    import numpy as np
    from PIL import Image

    from lib.data.sources import load_dataset
    from tests.streamlit_server import wait_idle

    run_a, run_b, fixed = args.curation
    page.goto(f"{url}/quality?run={run_a}")
    picker = page.get_by_test_id("stMultiSelect").filter(has_text="Images whose label is wrong").first
    picker.wait_for(timeout=180_000)
    for which in args.fix or [""] * 3:
        picker.locator("input").click()
        picker.locator("input").fill(
            which
        )  # the list draws only the options in view: typing brings the one wanted there
        page.get_by_role("option", name=re.compile(r"^(train|test)\/\d+ · ")).first.click()
        wait_idle(page)
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Save 3 fix(es)").click()
    page.get_by_text("now holds", exact=False).wait_for(timeout=30_000)
    shot("11-fix-labels")
    page.get_by_role("tab", name="Label fixes").click()
    page.get_by_text("fixed labels in", exact=False).wait_for(timeout=30_000)
    shot("12-label-fixes-export")
    page.goto(f"{url}/evaluate?run={fixed}")
    page.get_by_test_id("stMetricLabel").get_by_text("Accuracy (fixed labels)", exact=True).wait_for(timeout=120_000)
    shot("13-evaluate-fixed-labels")
    page.goto(f"{url}/compare?run={run_a}&cmp_a={run_a}&cmp_b={run_b}")
    page.get_by_test_id("stMetricLabel").get_by_text("McNemar p", exact=True).wait_for(timeout=120_000)
    shot("14-compare-runs")
    ds = load_dataset(args.source, args.cache_dir)
    buf = io.BytesIO()
    Image.fromarray(np.asarray(ds.images("test")[7])).resize((128, 128), Image.BICUBIC).save(buf, format="PNG")
    query = Path(args.cache_dir) / "query-test-7.png"
    query.write_bytes(buf.getvalue())
    page.goto(f"{url}/browse?run={run_b}")
    page.get_by_text("Search by image", exact=False).first.click()
    page.get_by_test_id("stExpander").filter(has_text="Search by image").locator('input[type="file"]').set_input_files(
        str(query)
    )
    page.get_by_text("the diamond is your image", exact=False).wait_for(timeout=180_000)
    page.get_by_text(
        "the diamond is your image", exact=False
    ).scroll_into_view_if_needed()  # the app scrolls inside its own pane
    shot("15-search-by-image")


if __name__ == "__main__":
    sys.exit(main())
