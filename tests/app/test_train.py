"""AppTest of Train or load: presets, runtimes, fine-tuning, and the runs table."""

from __future__ import annotations

from pathlib import Path

import pytest

from lib.models.heads import HeadConfig
from lib.pipeline.training import RunRequest, train_run
from lib.runs.registry import list_runs
from lib.store.layout import CacheLayout
from tests.app.helpers import finish_jobs, no_errors, start


def test_train_with_blog_preset_shows_accuracy(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user applies the blog preset, trains, and sees the test accuracy against the blog's 83.35%."""
    at = start(monkeypatch, prepared, page="train.py")
    prepared_layout = CacheLayout(prepared["cache"])
    before = len(list_runs(prepared_layout))
    at.button[0].click().run()  # "Blog protocol preset"
    assert at.radio(key="t_head").value == "linear" and at.number_input(key="t_steps").value == 1000
    at.multiselect(key="t_sizes").set_value([32])
    at.selectbox(key="t_backbone").set_value("(custom handle or path)")
    at.text_input(key="t_custom").set_value(prepared["backbone"])
    at.button(key="FormSubmitter:train_form-Train").click().run()
    no_errors(at)
    finish_jobs(at, prepared["cache"])
    no_errors(at)
    assert len(list_runs(prepared_layout)) == before + 1
    metric = next(m for m in at.metric if m.label == "Test accuracy")
    assert metric.value.endswith("%") and "vs blog" in metric.delta
    assert at.session_state["run_id"] == list_runs(prepared_layout)[0].run_id


def test_train_runs_table_rename_and_delete(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user selects a run in the table, renames it, then deletes it after confirming."""
    prepared_layout = CacheLayout(prepared["cache"])
    extra = train_run(
        RunRequest(prepared["source"], prepared["backbone"], HeadConfig(epochs=2), image_sizes=(32,)),
        prepared_layout,
    )
    at = start(monkeypatch, prepared, page="train.py")
    row = [m.run_id for m in list_runs(prepared_layout)].index(extra.run_id)
    at.session_state["runs_table"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    at.text_input(key="rename_text").set_value("renamed in test")
    next(b for b in at.button if b.label == "Rename").click().run()
    no_errors(at)
    assert next(m for m in list_runs(prepared_layout) if m.run_id == extra.run_id).label == "renamed in test"
    at.session_state["runs_table"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    next(c for c in at.checkbox if c.label.startswith("Yes, delete")).check().run()
    next(b for b in at.button if b.label == "Delete").click().run()
    no_errors(at)
    assert extra.run_id not in [m.run_id for m in list_runs(prepared_layout)]


def test_damaged_run_is_listed_and_deletable_and_breaks_no_page(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]
) -> None:
    """A run's predictions file is truncated on disk: every page still works, and Train lists it as damaged with a
    Delete button."""
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


def test_train_with_the_litert_runtime_then_see_its_features(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]
) -> None:
    """A user picks the LiteRT runtime on Train: the run records it, and Feature space offers those features."""
    at = start(monkeypatch, prepared, page="train.py")
    at.multiselect(key="t_sizes").set_value([32])
    at.number_input(key="t_epochs").set_value(2)
    at.selectbox(key="t_backbone").set_value("(custom handle or path)")
    at.text_input(key="t_custom").set_value(prepared["backbone"])
    at.selectbox(key="t_runtime").set_value("litert")
    at.button(key="FormSubmitter:train_form-Train").click().run()
    no_errors(at)
    finish_jobs(at, prepared["cache"])
    no_errors(at)
    newest = list_runs(CacheLayout(prepared["cache"]))[0]
    assert newest.runtime == "litert" and at.session_state["run_id"] == newest.run_id
    at = start(monkeypatch, prepared, page="feature_space.py", run=newest.run_id)
    combo = at.selectbox(key="fs_combo")
    assert "(litert)" in combo.options[combo.value]  # the active run's own (LiteRT) features are preselected


def test_train_page_finetunes_with_progress(monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]) -> None:
    """A user ticks Fine-tune on the Train page: the run trains backbone and head with images/s and ETA shown, and is
    registered as a fine-tuned run."""
    at = start(monkeypatch, prepared, page="train.py")
    before = {m.run_id for m in list_runs(CacheLayout(prepared["cache"]))}
    at.multiselect(key="t_sizes").set_value([32])
    at.selectbox(key="t_backbone").set_value("(custom handle or path)")
    at.text_input(key="t_custom").set_value(prepared["backbone"])
    at.checkbox(key="t_ft").check()
    at.number_input(key="t_ft_epochs").set_value(1)
    at.number_input(key="t_ft_bs").set_value(8)
    at.button(key="FormSubmitter:train_form-Train").click().run()
    no_errors(at)
    finish_jobs(at, prepared["cache"])
    no_errors(at)
    new = [m for m in list_runs(CacheLayout(prepared["cache"])) if m.run_id not in before]
    assert len(new) == 1 and new[0].finetuned
    assert new[0].finetune["images_per_second"] > 0 and new[0].finetune["epoch_seconds"]
    assert any(h.value == "Result" for h in at.subheader)  # the page shows the new run's result
