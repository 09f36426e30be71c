"""AppTest of Data quality: the audit, marking images, and training without them."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.data.sources import load_dataset
from tests.app.helpers import ROOT, finish_jobs, no_errors, start


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
    finish_jobs(at, cache)
    no_errors(at)
    assert len(list((cache / "audits").glob("*.npz"))) == 1
    assert at.metric[0].label == "Flagged in train"
    from views._quality_tabs import SAME_PHOTO, SIMILAR

    mode = at.radio(key="dq_mode")
    assert mode.value == SAME_PHOTO and mode.options == [SAME_PHOTO, SIMILAR]  # candidates were checked on the pixels
    assert at.slider(key="dq_threshold").disabled
    mode.set_value(SIMILAR).run()
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
    from lib.store.excludes import read_exclude_file

    saved = read_exclude_file(saved_exclude_lists(cache)[0], load_dataset(prepared["source"], cache))
    assert list(saved) == ["test"] and len(saved["test"]) == n_leaked
    at.switch_page(str(ROOT / "views" / "train.py")).run()
    no_errors(at)
    assert "from-test" in at.selectbox(key="t_exclude").options
