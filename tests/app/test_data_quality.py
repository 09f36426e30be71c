"""AppTest of Data quality: the audit, marking images, and training without them."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.data.sources import load_dataset
from lib.store.layout import CacheLayout
from tests.app.helpers import ROOT, finish_jobs, no_errors, start


def test_data_quality_audit_mark_save_and_train_without(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], tmp_path: Path
) -> None:
    """A user opens Data quality (nothing computed on load), runs the audit, filters the flagged images, marks the
    leaked test images, saves the exclude list, and finds it offered on the Train page."""
    import shutil

    from lib.data.excludes import saved_exclude_lists

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
    cache_layout = CacheLayout(cache)
    assert [p.stem for p in saved_exclude_lists(cache_layout)] == ["from-test"]
    from lib.data.excludes import read_exclude_file

    saved = read_exclude_file(saved_exclude_lists(cache_layout)[0], load_dataset(prepared["source"], cache_layout))
    assert list(saved) == ["test"] and len(saved["test"]) == n_leaked
    at.switch_page(str(ROOT / "views" / "train.py")).run()
    no_errors(at)
    assert "from-test" in at.selectbox(key="t_exclude").options


def test_audit_other_labels_and_explain_a_flag(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], tmp_path: Path
) -> None:
    """A user audits a saved label list with four wrong training labels: the job audits those labels, the four are
    flagged, and one flag is explained (given and suggested labels with probabilities, look-alike training images)."""
    import shutil

    import numpy as np

    from lib.data.labels import save_label_list

    cache = tmp_path / "dq_labels_cache"
    shutil.copytree(prepared["cache"], cache)
    cache_layout = CacheLayout(cache)
    ds = load_dataset(prepared["source"], cache_layout)
    y = ds.labels("train")
    wrong = np.arange(4)
    save_label_list(cache_layout, "four-wrong", ds, {"train": (wrong, (y[wrong] + 1) % len(ds.classes))})
    at = start(monkeypatch, {**prepared, "cache": str(cache)}, page="quality.py", run=prepared["run"])
    no_errors(at)
    at.selectbox(key="dq_labels").set_value("four-wrong.json").run()
    next(b for b in at.button if b.label == "Run the audit").click().run()
    no_errors(at)
    finish_jobs(at, cache)
    no_errors(at)
    from lib.jobs.queue import list_jobs

    argv = next(j.argv for j in list_jobs(cache_layout) if j.kind == "audit")
    assert next(a for a in argv if a.startswith("--labels=")).endswith(
        "four-wrong.json"
    )  # one word: a value is never read as a flag
    assert int(at.metric[0].value.replace(",", "")) >= 4  # the four wrong labels, at least
    assert any(h.value == "Why is it flagged?" for h in at.subheader)
    given, suggested = (next(m for m in at.metric if m.label == name) for name in ("Given label", "Suggested label"))
    assert given.value != suggested.value and given.delta.startswith("p = ") and suggested.delta.startswith("p = ")
    assert any("look most like it" in md.value for md in at.markdown)
