"""The hosted demo as a free host runs it: deploy/demo/requirements.txt installed into a fresh virtual environment (no
TensorFlow in it), deploy/demo/streamlit_app.py started from a hosting bundle (`bundle --hosting`: no SavedModel, no
full features), every page drawn in Chromium, an uploaded image classified through the bundle's LiteRT backbone and
searched for among the dataset's images, and no TensorFlow in the server process."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from lib.bundles.make import make_bundle
from lib.models.heads import HeadConfig
from lib.pipeline.training import RunRequest, train_run
from lib.store.layout import CacheLayout
from tests import slim_venv
from tests.streamlit_server import CHROMIUM, ROOT, SERVER_PIDS, chromium, exceptions, running_app, wait_idle
from ui.pages import PAGES

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def slim_python() -> str:
    """The demo's requirements in a venv of their own (tests/slim_venv.py: built once per hash of the file; `.ci/run`
    builds it with the other installs)."""
    python = slim_venv.slim_python()
    assert subprocess.run([python, "-c", "import tensorflow"], capture_output=True).returncode != 0  # really without it
    return python


def test_slim_demo_serves_every_page_and_classifies_an_upload_without_tensorflow(
    assets: dict[str, Path], slim_python: str, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from PIL import Image

    source_cache = tmp_path / "source"
    run = train_run(
        RunRequest(
            str(assets["cifar_tar"]),
            str(assets["savedmodel"]),
            HeadConfig(head="mlp", hidden=16, epochs=10, batch_size=16),
            image_sizes=(32,),
            train_views=("original", "flip"),
            tta=True,
        ),
        CacheLayout(source_cache),
    )
    bundle = tmp_path / "demo.tar"
    report = make_bundle(CacheLayout(source_cache), bundle, hosting=True)
    assert report["runs"] == [run.run_id]
    env = {"TLX_BUNDLE": str(bundle)}
    with (
        running_app(
            [],
            tmp_path / "demo_cache",
            python=slim_python,
            entry=ROOT / "deploy" / "demo" / "streamlit_app.py",
            env_extra=env,
            timeout=120,
        ) as (url, _),
        chromium() as browser,
    ):
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        for spec in PAGES:
            page.goto(f"{url}/{spec.url_path}?run={run.run_id}")
            page.get_by_role("heading", name=spec.heading).first.wait_for(timeout=120_000)
            wait_idle(page)
            assert not exceptions(page), (spec.title, exceptions(page))
        page.goto(f"{url}/evaluate?run={run.run_id}")
        page.get_by_role("heading", name="Classify your own image").wait_for(timeout=60_000)
        buf = io.BytesIO()
        Image.fromarray(__import__("numpy").full((48, 48, 3), 180, "uint8")).save(buf, format="PNG")
        upload = tmp_path / "x.png"
        upload.write_bytes(buf.getvalue())
        page.locator('input[type="file"]').first.set_input_files(str(upload))
        page.get_by_test_id("stMetricLabel").get_by_text("Prediction", exact=True).wait_for(timeout=120_000)
        assert not exceptions(page)
        page.goto(f"{url}/browse?run={run.run_id}")
        page.get_by_role("heading", name="Browse data").first.wait_for(timeout=60_000)
        page.get_by_text("Search by image", exact=False).first.click()
        page.get_by_test_id("stExpander").filter(has_text="Search by image").locator(
            'input[type="file"]'
        ).set_input_files(str(upload))
        page.get_by_text("re-ranked by the real features", exact=False).first.wait_for(
            timeout=120_000
        )  # reduced features, exact neighbours
        assert not exceptions(page)
        page.screenshot(path=str(tmp_path / "slim_search.png"), full_page=True)
        maps = Path(f"/proc/{SERVER_PIDS[url]}/maps").read_text()
        assert (
            "tensorflow" not in maps.lower() and "litert" in maps.lower()
        )  # LiteRT ran in the server; TensorFlow never loaded
