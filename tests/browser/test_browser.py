"""The whole app in a real browser: `streamlit run app.py` + Playwright + Debian's Chromium.

Pointed at the shared CIFAR-10 (JPEG q75 copy) and MobileNet; trains a blog-preset run on a
--limit'ed subset (50 images per class, 300 steps) to keep CI fast, visits every page, clicks a
confusion-matrix cell, and saves a screenshot of every page to artifacts/screenshots/.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from lib.store.layout import CacheLayout
from tests.conftest import FULL_MAP_SIZE, SHARED_DATA, SHARED_SMALL_MODEL
from tests.streamlit_server import (
    CHROMIUM,
    JOBS_IN_RUNNER,
    POLL_MS,
    chromium,
    exceptions,
    hover_until_thumbnail,
    peak_rss_mb,
    running_app,
    wait_idle,
)

pytestmark = [pytest.mark.shared, pytest.mark.browser]
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser_cache(tmp_path_factory: pytest.TempPathFactory, shared_cifar: Any) -> Path:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    # Converting 60,000 JPEGs is not what these tests are about (nor the full map's features: see full_map_cache).
    return shared_cifar(tmp_path_factory.mktemp("browser_cache") / "cache", small_model_runtime=True)


@pytest.fixture
def full_map_cache(browser_cache: Path, shared_cifar: Any) -> Path:
    """browser_cache with the features of all 60,000 images at 32 px and their PCA map, made once per machine."""
    return shared_cifar(browser_cache, full_map=True)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    # Streamlit serves images lazily: wait until every one has decoded before the picture.
    page.wait_for_function(
        "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)", timeout=30_000, polling=POLL_MS
    )
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def goto_page(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    wait_idle(page)


def test_every_page_train_and_click_confusion_cell(browser_cache: Path) -> None:
    # The smallest real backbone: the pages are the point, and its extraction, LiteRT conversions and speed
    # measurements cost a fraction of MobileNet v1 1.0's
    args = ["--source", str(SHARED_DATA), "--backbone", str(SHARED_SMALL_MODEL), "--image-size", "128"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with running_app(args, browser_cache, log=SHOTS.parent / "streamlit.log", env_extra=JOBS_IN_RUNNER) as (url, _):
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            page.goto(url)
            page.get_by_role("heading", name="Transfer learning explorer").wait_for(timeout=60_000)
            wait_idle(page)
            assert page.get_by_role("heading", name="Artifacts", exact=True).is_visible()
            assert not exceptions(page)
            shot(page, "1-home")

            goto_page(page, "Browse data")
            page.get_by_role("heading", name="Class balance").wait_for()
            page.locator('[data-testid="stImage"]').nth(47).wait_for(timeout=30_000)
            wait_idle(page)
            assert not exceptions(page)
            shot(page, "2-browse")

            goto_page(page, "Train or load")
            page.get_by_role("button", name="Blog protocol preset").click()
            wait_idle(page)
            limit = page.get_by_label("Images per class (0 = all)")
            limit.fill("50")
            limit.press("Tab")
            # 300 of the preset's 1,000 steps: the pages are the point (the blog's protocol is measured in docs/)
            steps = page.get_by_label("Steps (0 = use epochs)")
            steps.fill("300")
            steps.press("Tab")
            page.get_by_role("button", name="Train", exact=True).click()
            # Exact, inside a metric label: the comparison chart's axis title also contains "test accuracy".
            page.get_by_test_id("stMetricLabel").get_by_text("Test accuracy", exact=True).wait_for(timeout=240_000)
            wait_idle(page)
            page.locator('[data-testid="stDataFrame"] canvas').first.wait_for(timeout=30_000)
            page.wait_for_timeout(1000)
            assert not exceptions(page)
            accuracy = page.get_by_test_id("stMetric").filter(has_text="Test accuracy").first.inner_text()
            assert re.search(r"\d+\.\d+%", accuracy), accuracy
            shot(page, "3-train")
            assert "run=" in page.url  # the active run is in the URL, so the link can be shared

            goto_page(page, "Feature space")
            page.locator('[data-testid="stVegaLiteChart"] svg.marks').first.wait_for(timeout=60_000)
            page.get_by_test_id("stImageCaption").filter(has_text=re.compile(r"^query #")).first.wait_for(
                timeout=60_000
            )
            wait_idle(page)
            box = page.locator('[data-testid="stVegaLiteChart"]').first.bounding_box()
            assert box is not None
            # Hovering a point shows its image in the tooltip.
            tooltip_img = page.locator("#vg-tooltip-element img")
            for fx in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6):
                for fy in (0.3, 0.4, 0.5, 0.6):
                    page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
                    page.wait_for_timeout(120)
                    if tooltip_img.count():
                        break
                if tooltip_img.count():
                    break
            assert tooltip_img.count() == 1, "hovering a point should show its thumbnail"
            assert (tooltip_img.get_attribute("src") or "").startswith("data:image/png;base64,")
            # Drag a box over the middle of the scatter: the selected images appear below it.
            page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.8, steps=8)
            page.mouse.up()
            page.get_by_role("heading", name=re.compile(r"Selected: [\d,]+ images")).wait_for(timeout=30_000)
            wait_idle(page)
            assert not exceptions(page)
            shot(page, "4-feature-space")

            goto_page(page, "Speed vs accuracy")
            page.get_by_text("Nothing measured yet", exact=False).wait_for(timeout=60_000)
            page.get_by_label("Images per class for the accuracies").fill("10")
            page.get_by_label("Images per class for the accuracies").press("Tab")
            page.get_by_role("button", name=re.compile(r"^Measure mobilenet")).click()
            page.locator('[data-testid="stVegaLiteChart"] svg.marks').first.wait_for(timeout=300_000)
            wait_idle(page)
            assert not exceptions(page)
            budget = page.get_by_label("Latency budget per image (ms, single image, p50)")
            budget.fill("10000")
            budget.press("Enter")
            wait_idle(page)
            page.get_by_test_id("stAlertContentSuccess").filter(has_text="mobilenet").wait_for(
                timeout=30_000
            )  # "pick for me" named one
            shot(page, "8-speed-vs-accuracy")

            goto_page(page, "Evaluate")
            chart = page.locator('[data-testid="stVegaLiteChart"]').first
            chart.wait_for(timeout=60_000)
            wait_idle(page)
            cell_text = (
                page.get_by_test_id("stMarkdown").filter(has_text=re.compile(r"test images of .+ predicted as")).first
            )
            before = cell_text.inner_text()
            box = chart.bounding_box()
            assert box is not None
            # Click inside the heatmap's plot area, away from the axes: a cell on or near the diagonal.
            page.mouse.click(box["x"] + box["width"] * 0.62, box["y"] + box["height"] * 0.45)
            for _ in range(100):  # the rerun that follows the click takes a moment to start
                if cell_text.inner_text() != before:
                    break
                page.wait_for_timeout(200)
            wait_idle(page)
            after = cell_text.inner_text()
            assert after != before, "clicking a confusion-matrix cell should select it"
            page.locator('[data-testid="stImage"]').first.wait_for(timeout=30_000)
            assert not exceptions(page)
            shot(page, "5-evaluate")

            shared_link = page.url
            fresh = browser.new_page(viewport={"width": 1400, "height": 2200})
            fresh.goto(shared_link)
            fresh.get_by_role("heading", name="Evaluate").wait_for(timeout=60_000)
            wait_idle(fresh)
            reopened = (
                fresh.get_by_test_id("stMarkdown").filter(has_text=re.compile(r"test images of .+ predicted as")).first
            )
            assert reopened.inner_text() == after, "a shared link reopens the same run and cell"
            assert not exceptions(fresh)
            # Leaving Evaluate and coming back keeps the chosen cell (Streamlit drops undrawn widgets' state).
            goto_page(page, "Browse data")
            goto_page(page, "Evaluate")
            page.get_by_test_id("stMarkdown").filter(
                has_text=re.compile(r"test images of .+ predicted as")
            ).first.wait_for(timeout=60_000)
            back = (
                page.get_by_test_id("stMarkdown")
                .filter(has_text=re.compile(r"test images of .+ predicted as"))
                .first.inner_text()
            )
            assert back == after, (back, after)


def test_full_dataset_map_hover_select_and_query(full_map_cache: Path) -> None:
    """All 60,000 CIFAR-10 images on one map: the points arrive as two binary files fetched once (never again on the
    reruns a click and a selection make), hovering shows a thumbnail, a box selection shows its images, a click
    queries nearest neighbours, and the server stays under 3 GB while showing them."""
    from lib.analysis.full_map import compute_full_map

    # MobileNet v1 0.25 at 32 px (CIFAR-10's own size): the fastest real features of all 60,000 images, and PCA (made
    # once per machine and linked into full_map_cache: read back here).
    m = compute_full_map(str(SHARED_DATA), str(SHARED_SMALL_MODEL), FULL_MAP_SIZE, CacheLayout(full_map_cache), "pca")
    assert {s: len(c) for s, c in m.coords.items()} == {"train": 50_000, "test": 10_000}
    args = ["--source", str(SHARED_DATA), "--backbone", str(SHARED_SMALL_MODEL), "--image-size", str(FULL_MAP_SIZE)]
    with (
        running_app(args, full_map_cache, log=SHOTS.parent / "streamlit-map.log", env_extra=JOBS_IN_RUNNER) as (url, _),
        chromium() as browser,
    ):
        page = browser.new_page(viewport={"width": 1400, "height": 2700})
        fetched: list[tuple[str, int]] = []
        page.on("response", lambda r: fetched.append((r.url, r.status)) if "/app/static/maps/" in r.url else None)
        page.goto(f"{url}/features?fm_method=PCA")
        page.locator(".tlx-map[data-first-frame-ms]").wait_for(timeout=120_000)
        wait_idle(page)
        assert sorted(u.rsplit("-", 1)[1] for u, _s in fetched) == ["attr.bin", "xy.bin"], fetched
        assert all(status == 200 for _u, status in fetched), fetched
        assert not exceptions(page), exceptions(page)
        assert page.locator(".tlx-info").inner_text().startswith("60,000 points")
        box = page.locator(".tlx-overlay").bounding_box()
        assert box is not None
        ms, point = hover_until_thumbnail(page, box)
        split, index = point.split(":")
        assert split in ("train", "test") and int(index) >= 0
        assert "app/static/thumbs/" in (page.locator(".tlx-thumb").evaluate("e => e.style.backgroundImage") or "")
        print(f"thumbnail shown {ms:.0f} ms after the hover")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(SHOTS / "7-full-map-hover.png"),
            clip={"x": box["x"] - 10, "y": box["y"] - 50, "width": box["width"] + 20, "height": box["height"] + 90},
        )
        # Click the hovered point: it becomes the nearest-neighbour query.
        page.mouse.down()
        page.mouse.up()
        page.get_by_test_id("stImageCaption").filter(has_text=f"query {split} #{index} ").first.wait_for(timeout=60_000)
        wait_idle(page)
        # Density shading and cluster labels toggle and redraw; a drag pans the map (a 60,000-point map redraws every
        # point on each frame: under 16 ms here).
        host = page.locator(".tlx-map")
        frames = int(host.get_attribute("data-full-frames") or 0)
        density, labels = page.get_by_role("button", name="Density"), page.get_by_role("button", name="Cluster labels")
        assert "active" not in (density.get_attribute("class") or "")  # off by default under 100,000 points
        assert "active" in (labels.get_attribute("class") or "") and labels.is_enabled()
        density.click()
        labels.click()
        assert "active" in (density.get_attribute("class") or "") and "active" not in (
            labels.get_attribute("class") or ""
        )
        assert int(host.get_attribute("data-full-frames") or 0) > frames
        page.mouse.move(box["x"] + 40, box["y"] + 40)
        page.mouse.down()
        page.mouse.move(box["x"] + 140, box["y"] + 90, steps=5)
        page.mouse.up()
        page.get_by_role("button", name="Reset view").click()
        density.click()
        labels.click()
        assert not exceptions(page)
        # Box-select the middle of the map: the selected images appear as a grid.
        page.get_by_role("button", name="Box select").click()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 80, cy - 60)
        page.mouse.down()
        page.mouse.move(cx + 80, cy + 60, steps=8)
        page.mouse.up()
        heading = page.get_by_role("heading", name=re.compile(r"Selected: [\d,]+ images"))
        heading.wait_for(timeout=60_000)
        wait_idle(page)
        selected = int(
            re.search(r"Selected: ([\d,]+)", heading.inner_text())
            .group(1)
            .replace(
                ",",
                "",
            )
        )
        assert 0 < selected < 60_000
        assert f"{selected:,} selected" in page.locator(".tlx-info").inner_text()  # the browser and the server agree
        assert len(fetched) == 2, fetched  # two reruns later: the points were not sent again
        assert page.get_by_test_id("stImageCaption").filter(has_text=re.compile(r"^(train|test) #\d+ ")).count() >= min(
            selected, 10
        )
        assert not exceptions(page)
        # The class counts and the table below the grid draw when scrolled into view: wait for both before the picture.
        chart = page.get_by_test_id("stVegaLiteChart").last
        chart.scroll_into_view_if_needed()
        chart.locator("canvas, svg.marks").first.wait_for(timeout=30_000)
        table = page.get_by_test_id("stDataFrame").last
        table.scroll_into_view_if_needed()
        table.locator("canvas").first.wait_for(timeout=30_000)
        shot(page, "7-full-map-selection")
        rss = peak_rss_mb(url)
        print(f"server peak RSS {rss:.0f} MB")
        assert rss < 3 * 1024, rss


CRAFTED = "x](https://evil.example/a) ![p](https://evil.example/p.png) <img src=https://evil.example/i.png>"


def test_deep_links_work_as_the_first_request_and_url_text_stays_text(browser_cache: Path) -> None:
    """A shared link is the first request a fresh server sees: the page renders inside the app (with its sidebar), no
    KeyError. A crafted ?source= shows as text: no link, no image, and the browser fetches nothing from elsewhere."""

    from lib.models.heads import HeadConfig
    from lib.pipeline.training import RunRequest, train_run

    req = RunRequest(
        str(SHARED_DATA),
        str(SHARED_SMALL_MODEL),  # the links are the point: MobileNet v1 1.0 cost 13 times the arithmetic
        HeadConfig(head="linear", epochs=30, learning_rate=3e-3),
        image_sizes=(128,),
        limit=20,
    )
    run_id = train_run(req, CacheLayout(browser_cache)).run_id
    args = ["--source", str(SHARED_DATA), "--backbone", str(SHARED_SMALL_MODEL), "--image-size", "128"]
    with chromium() as browser:  # one browser; a fresh server and a new tab for each link
        _deep_links(args, browser_cache, run_id, browser)
        _crafted_source(args, browser_cache, browser)


def _deep_links(args: list[str], cache: Path, run_id: str, browser: Any) -> None:
    for path, heading in (
        (f"/evaluate?run={run_id}", "Evaluate"),
        ("/browse", "Browse data"),
        ("/train", "Train or load transfer models"),
    ):
        with running_app(args, cache, env_extra=JOBS_IN_RUNNER) as (url, _):
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url + path)  # the very first request this server answers
            page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=60_000)
            wait_idle(page)
            assert not exceptions(page), exceptions(page)
            nav = page.get_by_test_id("stSidebarNav").inner_text()
            assert "Feature space" in nav and "feature_space" not in nav, nav  # the app's pages, not raw file names
            if path.startswith("/evaluate"):
                # The linked run itself renders (its accuracy), not just the page's title: the first request's script
                # can still be loading the run when the status widget has not shown yet.
                page.get_by_test_id("stMetricLabel").get_by_text("Accuracy", exact=True).wait_for(timeout=60_000)
                wait_idle(page)
                shot(page, "6-deep-link-evaluate")
            page.close()


def _crafted_source(args: list[str], cache: Path, browser: Any) -> None:
    from urllib.parse import quote, urlparse

    with running_app(args, cache, env_extra=JOBS_IN_RUNNER) as (url, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        outside: list[str] = []
        page.on("request", lambda r: outside.append(r.url) if "evil" in (urlparse(r.url).hostname or "") else None)
        page.goto(f"{url}/browse?source={quote(CRAFTED)}")
        page.get_by_role("heading", name="Browse data", exact=True).wait_for(timeout=60_000)
        wait_idle(page)
        # Shown, as text, once the page has tried the source (on a busy machine the heading comes well before that).
        try:
            page.get_by_text(re.compile("evil\u2060?\\.example/p\u2060?\\.png")).first.wait_for(timeout=60_000)
        except Exception:
            shot(page, "deep-link-failure")
            raise
        wait_idle(page)
        assert not exceptions(page)
        # (the app's own navigation links carry the query string, so match links that lead to the other host)
        assert page.locator('a[href^="https://evil"], a[href^="http://evil"], a[href^="//evil"]').count() == 0
        assert page.locator('img[src*="evil.example"]').count() == 0
        assert page.get_by_text(re.compile("evil\u2060?\\.example/p\u2060?\\.png")).count() >= 1  # shown, as text
        assert not outside, outside
        shot(page, "7-crafted-source-as-text")


@pytest.fixture(scope="module")
def demo_bundle(browser_cache: Path, shared_cifar: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo bundle of the full shared CIFAR-10 copy: a linear run on MobileNet v1 0.25 features at 32 px and the PCA
    map."""
    from lib.bundles.make import make_bundle
    from lib.models.heads import HeadConfig
    from lib.pipeline.training import RunRequest, train_run

    shared_cifar(browser_cache, full_map=True)  # the features of all 60,000 images and their PCA map, linked
    req = RunRequest(
        str(SHARED_DATA),
        str(SHARED_SMALL_MODEL),
        HeadConfig(head="linear", epochs=3, learning_rate=3e-3),
        image_sizes=(FULL_MAP_SIZE,),
    )
    run_id = train_run(req, CacheLayout(browser_cache)).run_id
    out = tmp_path_factory.mktemp("demo") / "demo.tar"
    make_bundle(CacheLayout(browser_cache), out, [run_id])
    return out


def test_demo_with_three_concurrent_visitors(demo_bundle: Path, tmp_path: Path) -> None:
    """The hosted demo, installed from the bundle at start (--bundle), serves three visitors at once through every page
    (one in Chromium with an upload, two over Streamlit's websocket protocol): no errors, and the cache is unchanged."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import visitors  # bench/visitors.py: the same load test the README's figures come from

    cache = tmp_path / "demo_cache"
    result = visitors.run(
        cache,
        sessions=3,
        rounds=1,
        bundle=str(demo_bundle),
        timeout_s=240,
        log=SHOTS.parent / "streamlit-demo.log",
        think=0.5,
        ramp=1.0,
    )
    print(result)
    assert not result["errors"], result["errors"]
    assert (
        result["pages"]["Evaluate: classify an upload"]["n"] == 1
        and result["light"]["pages"]["Feature space"]["n"] == 2
    )
    assert (cache / "bundle.json").exists()


def test_container_entrypoint_serves_the_demo_on_port(demo_bundle: Path, tmp_path: Path) -> None:
    """What the Dockerfile runs: deploy/entrypoint.sh installs $TLX_BUNDLE, then serves the app read-only on $PORT."""
    import os
    import subprocess

    from tests.streamlit_server import ROOT, free_port, stop, wait_healthy

    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "TLX_BUNDLE": str(demo_bundle),
        "TLX_CACHE_DIR": str(tmp_path / "cache"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    env.pop("TLX_DEMO", None)  # the entrypoint turns demo mode on by itself
    proc = subprocess.Popen(
        ["bash", str(ROOT / "deploy" / "entrypoint.sh")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, 240)
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(f"http://127.0.0.1:{port}/train")
            page.get_by_text("Off in this read-only demo", exact=False).first.wait_for(timeout=120_000)
            wait_idle(page)
            assert page.get_by_role("button", name="Train", exact=True).is_disabled()
            assert not exceptions(page)
            page.locator('[data-testid="stDataFrame"] canvas').first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)  # the form's widgets finish drawing
            shot(page, "10-demo-train")
    finally:
        stop(proc, 15)
