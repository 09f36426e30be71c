"""AppTest of Evaluate: the confusion matrix and its images, uploads."""

from __future__ import annotations

import io

import pytest

from tests import fixtures
from tests.app.helpers import no_errors, plain, start


def test_evaluate_confusion_cell_shows_images(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user selects a confusion-matrix cell (true airplane, predicted airplane) and sees its images with
    probabilities."""
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
    # The reliability diagram tells its two curves apart by dash as well as colour (they coincide where calibration
    # changed nothing, and the legend then named a line that could not be seen).
    import json

    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    (rel,) = [s for s in specs if "mean confidence in bin" in json.dumps(s)]
    layers = [layer.get("encoding", {}) for layer in rel.get("layer", [])]
    dash = next(
        e["strokeDash"] for e in layers if "strokeDash" in e and e["strokeDash"].get("field") == "probabilities"
    )
    assert dash["scale"]["domain"] == ["calibrated", "before calibration"] and len(dash["scale"]["range"]) == 2, dash


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
