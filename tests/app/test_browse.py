"""AppTest of Browse data: the grid, its filters, and the active run's prediction."""

from __future__ import annotations

import pytest

from tests.app.helpers import no_errors, start


def test_browse_filters_classes_and_shows_run_prediction(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]
) -> None:
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
