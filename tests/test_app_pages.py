"""AppTest for every page, on tiny fixtures: each test's docstring is the user story it covers."""

from __future__ import annotations

import io
import re
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from lib.data.sources import load_dataset
from lib.models.heads import HeadConfig
from lib.pipeline.training import RunRequest, train_run
from lib.store.runs import list_runs
from tests import fixtures

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, assets: dict[str, Path]) -> dict[str, str]:
    """A cache holding the tiny dataset, its features and one trained run."""
    cache = tmp_path_factory.mktemp("app_cache")
    req = RunRequest(str(assets["cifar_tar"]), str(assets["savedmodel"]), HeadConfig(head="mlp", hidden=32, epochs=30, batch_size=16,
                     learning_rate=3e-3, dropout=0.0), image_sizes=(32,), train_views=("original", "flip"), tta=True)  # fmt: skip
    manifest = train_run(req, cache)
    return {"cache": str(cache), "source": str(assets["cifar_tar"]), "backbone": str(assets["savedmodel"]), "run": manifest.run_id}


def start(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], page: str | None = None, run: str | None = None, check: bool = True,
          **params: str) -> AppTest:  # fmt: skip
    monkeypatch.setenv("TLX_SOURCE", env["source"])
    monkeypatch.setenv("TLX_BACKBONE", env["backbone"])
    monkeypatch.setenv("TLX_CACHE_DIR", env["cache"])
    monkeypatch.setenv("TLX_IMAGE_SIZE", "32")
    at = AppTest.from_file(APP, default_timeout=120)
    if run:
        at.query_params["run"] = run
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    if page:
        at.switch_page(str(ROOT / "views" / page))
        at.run()
    if check:
        assert not at.exception, [e.value for e in at.exception]
    return at


def plain(text: str) -> str:
    """Markdown-escaped text (see ui.text.md_escape) as the user reads it."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u2060", "")


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_home_prepares_dataset_and_features(monkeypatch: pytest.MonkeyPatch, assets: dict[str, Path], tmp_path: Path) -> None:
    """A new user opens the app with an empty cache, clicks prepare, and sees the dataset and features cached."""
    env = {"source": str(assets["folder"]), "backbone": str(assets["savedmodel"]), "cache": str(tmp_path / "cache")}
    at = start(monkeypatch, env)
    assert at.metric[0].value == "not prepared"
    at.button[0].click().run()
    no_errors(at)
    at.run()
    assert at.metric[0].value == "cached"
    assert at.metric[1].value == "2/2 splits"
    assert at.success, "the page should confirm everything is cached"


def test_home_offline_without_local_data_explains_what_to_do(monkeypatch: pytest.MonkeyPatch, assets: dict[str, Path], tmp_path: Path) -> None:
    """A user without network or local data clicks prepare on official CIFAR-10 and is told how to use local paths."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TLX_CIFAR10_URL", f"http://127.0.0.1:{port}/cifar.tar.gz")
    env = {"source": "cifar10", "backbone": str(assets["savedmodel"]), "cache": str(tmp_path / "cache")}
    at = start(monkeypatch, env)
    at.button[0].click().run()
    no_errors(at)
    assert any("Could not download CIFAR-10" in plain(e.value) for e in at.error)
    assert any("No network here?" in i.value for i in at.info)


def test_wrong_backbone_path_is_a_message_not_a_crash(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user types a backbone path that does not exist and sees a clear error on Home."""
    at = start(monkeypatch, {**prepared, "backbone": "/no/such/model"})
    assert any("Unknown backbone" in plain(e.value) for e in at.error)


def test_sidebar_shows_active_settings_and_run_from_url(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user opens a shared link with ?run=...: the sidebar shows the source, backbone, size and that run."""
    at = start(monkeypatch, prepared, run=prepared["run"])
    sidebar_text = plain(" ".join(m.value for m in at.sidebar.markdown))
    assert "tiny_fv_32" in sidebar_text and "32px" in sidebar_text and "cifar-10-python.tar.gz" in sidebar_text
    assert at.sidebar.selectbox(key="sidebar_run").value == prepared["run"]
    assert at.query_params["run"] == [prepared["run"]] or at.query_params["run"] == prepared["run"]


def test_browse_filters_classes_and_shows_run_prediction(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user filters the grid to one class, picks an image, and sees the active run's prediction and top-5."""
    at = start(monkeypatch, prepared, page="browse.py", run=prepared["run"])
    at.multiselect(key="b_classes").set_value(["cat"]).run()
    no_errors(at)
    grid = [c for img in at.image for c in img.captions if c.startswith("#")]
    assert len(grid) == 3 and all("cat" in c for c in grid)
    assert "3 images match" in " ".join(c.value for c in at.caption)
    options = at.selectbox(key="b_sel").options
    assert options and all("cat" in o for o in options)
    assert at.metric and at.metric[0].label == "Predicted"
    assert len(at.dataframe[0].value) == 5  # top-5 table


def test_browse_jump_to_index(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user jumps to image 55 of the train split: its page opens with it selected; paging back still works."""
    at = start(monkeypatch, prepared, page="browse.py")
    at.selectbox(key="b_split").set_value("train").run()  # 60 images: two pages of 48
    at.number_input(key="b_jump").set_value(55).run()
    no_errors(at)
    assert at.number_input(key="b_page").value == 2 and at.selectbox(key="b_sel").value == 55
    # Paging back afterwards is not undone by the earlier jump.
    at.number_input(key="b_page").set_value(1).run()
    at.run()
    no_errors(at)
    assert at.number_input(key="b_page").value == 1 and at.selectbox(key="b_sel").value < 48


def test_train_with_blog_preset_shows_accuracy(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user applies the blog preset, trains, and sees the test accuracy against the blog's 83.35%."""
    at = start(monkeypatch, prepared, page="train.py")
    before = len(list_runs(prepared["cache"]))
    at.button[0].click().run()  # "Blog protocol preset"
    assert at.radio(key="t_head").value == "linear" and at.number_input(key="t_steps").value == 1000
    at.multiselect(key="t_sizes").set_value([32])
    at.selectbox(key="t_backbone").set_value("(custom handle or path)")
    at.text_input(key="t_custom").set_value(prepared["backbone"])
    at.button(key="FormSubmitter:train_form-Train").click().run()
    no_errors(at)
    assert len(list_runs(prepared["cache"])) == before + 1
    metric = next(m for m in at.metric if m.label == "Test accuracy")
    assert metric.value.endswith("%") and "vs blog" in metric.delta
    assert at.session_state["run_id"] == list_runs(prepared["cache"])[0].run_id


def test_train_runs_table_rename_and_delete(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user selects a run in the table, renames it, then deletes it after confirming."""
    extra = train_run(RunRequest(prepared["source"], prepared["backbone"], HeadConfig(epochs=2), image_sizes=(32,)), prepared["cache"])
    at = start(monkeypatch, prepared, page="train.py")
    row = [m.run_id for m in list_runs(prepared["cache"])].index(extra.run_id)
    at.session_state["runs_table"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    at.text_input(key="rename_text").set_value("renamed in test")
    next(b for b in at.button if b.label == "Rename").click().run()
    no_errors(at)
    assert next(m for m in list_runs(prepared["cache"]) if m.run_id == extra.run_id).label == "renamed in test"
    at.session_state["runs_table"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    next(c for c in at.checkbox if c.label.startswith("Yes, delete")).check().run()
    next(b for b in at.button if b.label == "Delete").click().run()
    no_errors(at)
    assert extra.run_id not in [m.run_id for m in list_runs(prepared["cache"])]


def test_feature_space_pca_tsne_and_neighbours(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user picks the quick map of a sample, looks at PCA, switches to t-SNE coloured by correctness, and sees nearest
    neighbours of an image."""
    at = start(monkeypatch, prepared, page="feature_space.py", run=prepared["run"], fs_view="sample of one split")
    assert any("PCA of 30 points" in c.value and "explained variance" in c.value for c in at.caption)
    at.radio(key="fs_method").set_value("t-SNE").run()
    at.selectbox(key="fs_color").set_value("correct vs wrong").run()
    no_errors(at)
    assert any("t-SNE of 30 points" in c.value for c in at.caption)
    captions = [c for img in at.image for c in img.captions]
    assert any(c.startswith("query #") for c in captions)
    assert sum("(" in c and c.startswith("#") for c in captions) == 8  # k=8 neighbours with similarities


def _map_payload(at: AppTest) -> dict:
    import json

    (el,) = at.get("bidi_component")
    return json.loads(el.proto.json)


def test_feature_space_map_of_every_image(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user opens Feature space: no map of every image yet, so they compute the PCA map once; every train and test
    image is on it, coloured by whether the active run gets it right (train images too), with hover thumbnails served
    as sprite sheets; the nearest neighbours of the queried image come from both splits."""
    import base64

    at = start(monkeypatch, prepared, page="feature_space.py", run=prepared["run"], fm_method="PCA")
    assert any("No PCA map of all 90 images" in i.value for i in at.info)
    assert not at.get("bidi_component")  # never computed on page load
    at.button(key="fm_compute").click().run()
    no_errors(at)
    data = _map_payload(at)
    assert [(s["name"], s["count"]) for s in data["splits"]] == [("train", 60), ("test", 30)]
    assert len(base64.b64decode(data["x"])) == 2 * 90 and len(base64.b64decode(data["colour"])) == 90
    assert data["classes"][:3] == ["airplane", "automobile", "bird"] and len(data["classes"]) == 10
    assert data["sprites"]["base"].startswith("app/static/thumbs/") and data["sprites"]["side"] == 32
    preds = np.frombuffer(base64.b64decode(data["pred"]), np.uint8)
    assert (preds < 255).all()  # the run's head predicts train images from their cached features; test from the run
    at.selectbox(key="fm_color").set_value("correct vs wrong").run()
    no_errors(at)
    data = _map_payload(at)
    assert [name for name, _i in data["legend"]][:2] == ["correct", "wrong"]
    codes = np.frombuffer(base64.b64decode(data["colour"]), np.uint8)
    assert set(codes.tolist()) <= {0, 1} and (codes == 0).any()
    captions = [c for img in at.image for c in img.captions]
    assert any(c.startswith("query test #0 ") for c in captions)
    assert sum(bool(re.match(r"^(train|test) #\d+ .+ \(-?\d\.\d\d\)$", c)) for c in captions) == 8
    # The quick sample view is one click away, and the stored map is reused (no button) when coming back.
    at.radio(key="fs_view").set_value("sample of one split").run()
    no_errors(at)
    assert any("PCA of 30 points" in c.value for c in at.caption)
    at.radio(key="fs_view").set_value("every image").run()
    assert at.get("bidi_component") and not any(b.key == "fm_compute" for b in at.button)


def test_evaluate_confusion_cell_shows_images(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user selects a confusion-matrix cell (true airplane, predicted airplane) and sees its images with probabilities."""
    at = start(monkeypatch, prepared, page="evaluate.py", run=prepared["run"])
    assert at.metric[0].label == "Accuracy"
    at.selectbox(key="ev_true").set_value(0)
    at.selectbox(key="ev_pred").set_value(0).run()
    no_errors(at)
    text = " ".join(m.value for m in at.markdown)
    assert "test images of *airplane* predicted as *airplane*" in text
    shown = [c for img in at.image for c in img.captions if " p=" in c]
    assert shown, "the cell's images should be shown with their probabilities"
    probs = [float(c.split("p=")[1]) for c in shown]
    assert probs == sorted(probs, reverse=True)  # most confident first
    at.radio(key="ev_norm").set_value("row-normalized").run()
    no_errors(at)


def test_evaluate_text_upload_is_refused_clearly(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user uploads a text file instead of an image and sees a clear error."""
    at = start(monkeypatch, prepared, page="evaluate.py", run=prepared["run"])
    at.file_uploader(key="ev_upload").set_value(("notes.txt", b"hello, not an image", "text/plain")).run()
    no_errors(at)
    assert any("not an image" in plain(e.value) for e in at.error)


def test_evaluate_png_upload_gets_top5(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user uploads a PNG and gets the active run's top-5."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(fixtures.class_images(4, 1, size=80)[0]).save(buf, format="PNG")
    at = start(monkeypatch, prepared, page="evaluate.py", run=prepared["run"])
    at.file_uploader(key="ev_upload").set_value(("deer.png", buf.getvalue(), "image/png")).run()
    no_errors(at)
    assert any(m.label == "Prediction" for m in at.metric)


def test_evaluate_without_run_says_what_to_do(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user opens Evaluate with no active run and is told how to get one."""
    at = start(monkeypatch, prepared, page="evaluate.py")
    assert any("No active run" in i.value for i in at.info)


def test_dataset_is_memory_mapped_for_pages(prepared: dict[str, str]) -> None:
    ds = load_dataset(prepared["source"], prepared["cache"])
    assert isinstance(ds.images("train"), np.memmap)


def test_home_does_not_import_tensorflow(prepared: dict[str, str]) -> None:
    """A user opening the app gets the first page without waiting for TensorFlow to load."""
    import os
    import subprocess
    import sys

    code = (f"import sys; from streamlit.testing.v1 import AppTest; at = AppTest.from_file({APP!r}, default_timeout=60); at.run(); "
            "assert not at.exception; print('TF' if 'tensorflow' in sys.modules else 'no TF')")  # fmt: skip
    env = {**os.environ, "TLX_SOURCE": prepared["source"], "TLX_BACKBONE": prepared["backbone"], "TLX_CACHE_DIR": prepared["cache"]}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("no TF")


CRAFTED = "x](https://evil.example/a.png) ![pixel](https://evil.example/p.png) <img src=https://evil.example/i.png> :red[boom] **bold**"


@pytest.mark.parametrize("page", [None, "browse.py", "train.py"])
def test_url_text_is_rendered_literally_never_as_markdown(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], page: str | None) -> None:
    """A crafted link puts Markdown in ?source=: every place that shows it escapes it, so no link or image is rendered."""
    at = start(monkeypatch, prepared, page=page, source=CRAFTED)
    shown = [m.value for m in [*at.markdown, *at.sidebar.markdown, *at.warning, *at.error, *at.caption, *at.info]]
    quoting = [t for t in shown if "evil" in t]
    assert quoting, "the source should be shown somewhere"
    for text in quoting:
        # Each fragment below is live Markdown/HTML only when unescaped; escaped, a backslash sits inside it.
        assert "](https" not in text and "![pixel]" not in text and " <img" not in text and " :red[" not in text and "**bold**" not in text, text
        assert "evil\u2060\\.example" in text  # escaped, with a word joiner that stops GFM autolinking


@pytest.mark.parametrize("page, params, notice", [
    (None, {"size": "0"}, "size="),
    (None, {"size": "99999"}, "size="),
    (None, {"source": "s" * 5000}, "source="),
    (None, {"run": "../../etc/passwd"}, "run="),
    ("feature_space.py", {"fs_perp": "1"}, "fs_perp="),
    ("feature_space.py", {"fs_iter": "333", "fs_n": "-4", "fs_method": "UMAP"}, "fs_iter="),
    ("browse.py", {"b_split": "nope", "b_page": "-3"}, "b_split="),
    ("evaluate.py", {"ev_true": "99", "ev_norm": "weird"}, "ev_true="),
])  # fmt: skip
def test_out_of_range_url_values_fall_back_with_a_notice(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], page: str | None,
                                                         params: dict[str, str], notice: str) -> None:  # fmt: skip
    """A hand-edited or truncated link never crashes a page: the bad value is replaced by the default, with a notice."""
    run = params.pop("run", prepared["run"] if page else None)
    at = start(monkeypatch, prepared, page=page, run=run, **params)
    no_errors(at)
    assert any(notice in w.value for w in at.warning), [w.value for w in at.warning]


def test_damaged_run_is_listed_and_deletable_and_breaks_no_page(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A run's predictions file is truncated on disk: every page still works, and Train lists it as damaged with a Delete button."""
    import shutil

    from lib.store.layout import CacheLayout

    cache = Path(prepared["cache"]) / ".." / "damaged_cache"
    shutil.copytree(prepared["cache"], cache)
    env = {**prepared, "cache": str(cache)}
    preds = CacheLayout(cache).run_dir(prepared["run"]) / "predictions.npz"
    preds.write_bytes(preds.read_bytes()[:200])
    for page in (None, "browse.py", "feature_space.py", "evaluate.py"):
        at = start(monkeypatch, env, page=page, run=prepared["run"])
        no_errors(at)
        if page == "evaluate.py":
            assert any("damaged" in w.value for w in at.warning)
    at = start(monkeypatch, env, page="train.py")
    assert any(prepared["run"] in w.value and "damaged" in w.value for w in at.warning)
    next(b for b in at.button if b.key == f"del_damaged_{prepared['run']}").click().run()
    no_errors(at)
    assert not CacheLayout(cache).run_dir(prepared["run"]).exists()


def test_damaged_feature_manifest_breaks_no_page(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A feature manifest holding [1,2,3] (valid JSON, wrong shape) is skipped by Home and Feature space, not a traceback."""
    import shutil

    cache = Path(prepared["cache"]) / ".." / "damaged_features"
    shutil.copytree(prepared["cache"], cache)
    for manifest in (cache / "features").glob("*.json"):
        manifest.write_text("[1, 2, 3]")
    env = {**prepared, "cache": str(cache)}
    for page in (None, "feature_space.py"):
        no_errors(start(monkeypatch, env, page=page))


def test_train_with_the_litert_runtime_then_see_its_features(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user picks the LiteRT runtime on Train: the run records it, and Feature space offers those features."""
    at = start(monkeypatch, prepared, page="train.py")
    at.multiselect(key="t_sizes").set_value([32])
    at.number_input(key="t_epochs").set_value(2)
    at.selectbox(key="t_backbone").set_value("(custom handle or path)")
    at.text_input(key="t_custom").set_value(prepared["backbone"])
    at.selectbox(key="t_runtime").set_value("litert")
    at.button(key="FormSubmitter:train_form-Train").click().run()
    no_errors(at)
    newest = list_runs(prepared["cache"])[0]
    assert newest.runtime == "litert" and at.session_state["run_id"] == newest.run_id
    at = start(monkeypatch, prepared, page="feature_space.py", run=newest.run_id)
    combo = at.selectbox(key="fs_combo")
    assert "(litert)" in combo.options[combo.value]  # the active run's own (LiteRT) features are preselected


def test_speed_page_empty_then_measured_then_pick(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], tmp_path: Path) -> None:
    """A user opens Speed vs accuracy with nothing measured (it explains itself), measures the active backbone, and
    gets the chart, the table and the most accurate configuration within a latency budget."""
    import shutil

    cache = tmp_path / "speed_cache"
    shutil.copytree(prepared["cache"], cache)
    env = {**prepared, "cache": str(cache)}
    at = start(monkeypatch, env, page="speed.py")
    assert any("Nothing measured yet" in i.value for i in at.info)
    at.multiselect[0].set_value([32])
    at.multiselect[1].set_value(["tf"])
    at.number_input[0].set_value(3)
    assert any(b.label.startswith("Measure the default grid") for b in at.button)  # offered, not run: it takes ~30 min
    at.button(key="FormSubmitter:bench_form-Measure tiny\\_fv\\_32").click().run()
    no_errors(at)
    at.run()
    no_errors(at)
    assert not any("Nothing measured yet" in i.value for i in at.info)
    assert len(at.dataframe[0].value) == 1
    at.number_input(key="sp_budget").set_value(10_000.0).run()
    assert any("tiny" in s.value and "32px" in s.value for s in at.success)
    at.number_input(key="sp_budget").set_value(0.1).run()
    assert any("No measured configuration" in w.value for w in at.warning)


def test_speed_page_merges_results_shows_int8_loss_and_offers_the_missing(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], tmp_path: Path) -> None:
    """Stored results of two machines are kept apart; the int8 loss table appears; what the default grid lacks is offered."""
    import json

    from lib.analysis.benchmark import DEFAULT_LIMIT, default_grid

    cache = tmp_path / "speed_rows"
    (cache / "benchmarks").mkdir(parents=True)
    from lib.models.specs import resolve_backbone

    bb = resolve_backbone(default_grid()[0][0]).handle  # rows store the resolved handle (../shared may be a symlink)
    row = {"backbone": bb, "backbone_name": Path(bb).name, "image_size": 128, "latency_ms_p50": 2.0, "latency_ms_p95": 3.0, "model_mb": 1.0,
           "peak_rss_mb": 100.0, "n_train": 500, "n_test": 500, "linear_accuracy": 0.7}  # fmt: skip
    rows = [{**row, "runtime": "tf", "images_per_second": 100.0, "best_accuracy": 0.80},
            {**row, "runtime": "litert", "images_per_second": 180.0, "best_accuracy": 0.80},
            {**row, "runtime": "litert-int8", "images_per_second": 400.0, "best_accuracy": 0.77}]  # fmt: skip
    for name, cpu in (("a", "Test CPU A"), ("b", "Test CPU B")):
        result = {"source": prepared["source"], "dataset": "d", "limit": DEFAULT_LIMIT, "machine": {"cpu": cpu, "cores": 2}, "benchmark_version": 2,
                  "rows": rows, "subset": f"first {DEFAULT_LIMIT} images per class of train and of test"}  # fmt: skip
        (cache / "benchmarks" / f"{name}.json").write_text(json.dumps(result))
    at = start(monkeypatch, {**prepared, "cache": str(cache)}, page="speed.py")
    no_errors(at)
    picker = at.selectbox(key="sp_group")
    assert len(picker.options) == 2 and all("3 rows" in o for o in picker.options)
    loss = at.dataframe[0].value
    assert list(loss["loss_points"]) == [3.0] and list(loss["float_runtime"]) == ["litert"]
    missing = len(default_grid()) - 3
    assert any(f"{missing} of the default grid" in i.value for i in at.info)
    assert any(b.label == f"Measure the {missing} missing configurations" for b in at.button)


def test_data_quality_audit_mark_save_and_train_without(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], tmp_path: Path) -> None:
    """A user opens Data quality (nothing computed on load), runs the audit, filters the flagged images, marks the
    leaked test images, saves the exclude list, and finds it offered on the Train page."""
    import shutil

    from lib.store.excludes import saved_exclude_lists

    cache = tmp_path / "dq_cache"
    shutil.copytree(prepared["cache"], cache)
    env = {**prepared, "cache": str(cache)}
    at = start(monkeypatch, env, page="quality.py", run=prepared["run"])
    assert any("No audit of these features yet" in i.value for i in at.info)
    assert not (cache / "audits").exists()  # opening the page computed nothing
    at.button[0].click().run()
    no_errors(at)
    at.run()
    no_errors(at)
    assert len(list((cache / "audits").glob("*.npz"))) == 1
    assert at.metric[0].label == "Flagged in train"
    at.slider(key="dq_threshold").set_value(0.8).run()
    no_errors(at)
    mark = next(b for b in at.button if b.label.startswith("Mark the "))
    n_leaked = int(mark.label.split()[2].replace(",", ""))
    assert n_leaked > 0  # the tiny set's test images are near copies of its training images at 0.8
    save = next(b for b in at.button if b.label == "Save the exclude list")
    assert save.disabled  # nothing marked yet, nothing to save
    mark.click().run()
    no_errors(at)
    at.text_input(key="dq_name").set_value("from-test").run()
    next(b for b in at.button if b.label == "Save the exclude list").click().run()
    no_errors(at)
    assert [p.stem for p in saved_exclude_lists(cache)] == ["from-test"]
    from lib.data.sources import load_dataset
    from lib.store.excludes import read_exclude_file

    saved = read_exclude_file(saved_exclude_lists(cache)[0], load_dataset(prepared["source"], cache))
    assert list(saved) == ["test"] and len(saved["test"]) == n_leaked
    at.switch_page(str(ROOT / "views" / "train.py")).run()
    no_errors(at)
    assert "from-test" in at.selectbox(key="t_exclude").options


def test_leaving_a_page_and_coming_back_keeps_its_choices(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user picks a confusion cell on Evaluate, visits Browse, comes back: the same cell is still selected."""
    at = start(monkeypatch, prepared, page="evaluate.py", run=prepared["run"])
    at.selectbox(key="ev_true").set_value(3)
    at.selectbox(key="ev_pred").set_value(5).run()
    at.switch_page(str(ROOT / "views" / "browse.py")).run()
    at.switch_page(str(ROOT / "views" / "evaluate.py")).run()
    no_errors(at)
    assert at.selectbox(key="ev_true").value == 3 and at.selectbox(key="ev_pred").value == 5


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Demo mode for one test; the read-only mark app.py puts on the cache is lifted afterwards."""
    from lib.store import atomic

    monkeypatch.setenv("TLX_DEMO", "1")
    yield
    atomic.set_read_only(None)


def _files(root: str) -> set[tuple[str, int]]:
    return {(str(p.relative_to(root)), p.stat().st_size) for p in Path(root).rglob("*") if p.is_file()}


def test_demo_mode_disables_every_writer_and_a_forced_click_writes_nothing(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], demo: Any) -> None:
    """A visitor of the hosted demo sees the training, audit, map and measuring controls disabled with the reason, no
    way to point the app at another path, and reads everything stored. A crafted request that clicks a disabled
    control anyway does nothing (Streamlit discards values of disabled widgets; behind that, the cache is read-only
    in the process, see tests/test_bundle.py), and the cache is unchanged."""
    before = _files(prepared["cache"])
    at = start(monkeypatch, prepared, page="train.py", run=prepared["run"])
    train = at.button(key="FormSubmitter:train_form-Train")
    assert train.disabled and "read-only demo" in (train.help or "")
    assert not at.sidebar.text_input  # no "Change data / backbone" form
    assert any("read-only demo" in c.value for c in at.caption)
    at.multiselect(key="t_sizes").set_value([32])
    at.selectbox(key="t_backbone").set_value("(custom handle or path)")
    at.text_input(key="t_custom").set_value(prepared["backbone"])
    forced = at.button(key="FormSubmitter:train_form-Train")
    forced._value = True  # what a crafted websocket message can send: the server does not check that a widget is enabled
    at = forced.run()
    no_errors(at)
    assert not at.status, "a disabled Train button started training in demo mode"
    for page, label in (("quality.py", "Run the audit"), ("speed.py", "Measure the default grid")):
        at = start(monkeypatch, prepared, page=page, run=prepared["run"])
        buttons = [b for b in at.button if b.label.startswith(label)]
        assert buttons and all(b.disabled for b in buttons), page
    at = start(monkeypatch, prepared, page="feature_space.py", run=prepared["run"], fm_method="t-SNE")
    assert at.button(key="fm_compute").disabled  # no t-SNE map is stored in this cache, and none is computed
    forced = at.button(key="fm_compute")
    forced._value = True
    at = forced.run()
    no_errors(at)
    assert not at.status and not at.get("bidi_component")  # nothing started, nothing computed
    at = start(monkeypatch, prepared, source="/etc", backbone="/tmp/evil")
    assert any("source= value was not usable" in w.value for w in at.warning)
    assert "cifar-10-python.tar.gz" in plain(" ".join(m.value for m in at.sidebar.markdown))  # the demo's own source, not /etc
    assert _files(prepared["cache"]) == before


def test_train_page_finetunes_with_progress(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user ticks Fine-tune on the Train page: the run trains backbone and head with images/s and ETA shown, and is
    registered as a fine-tuned run."""
    at = start(monkeypatch, prepared, page="train.py")
    before = {m.run_id for m in list_runs(prepared["cache"])}
    at.multiselect(key="t_sizes").set_value([32])
    at.selectbox(key="t_backbone").set_value("(custom handle or path)")
    at.text_input(key="t_custom").set_value(prepared["backbone"])
    at.checkbox(key="t_ft").check()
    at.number_input(key="t_ft_epochs").set_value(1)
    at.number_input(key="t_ft_bs").set_value(8)
    at.button(key="FormSubmitter:train_form-Train").click().run()
    no_errors(at)
    new = [m for m in list_runs(prepared["cache"]) if m.run_id not in before]
    assert len(new) == 1 and new[0].finetuned
    assert new[0].finetune["images_per_second"] > 0 and new[0].finetune["epoch_seconds"]
    assert any(h.value == "Result" for h in at.subheader)  # the page shows the new run's result
