"""AppTest of The whole app: the sidebar, links, and demo mode (every page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.app.helpers import ROOT, no_errors, plain, start

CRAFTED = (
    "x](https://evil.example/a.png) ![pixel](https://evil.example/p.png) <img src=https://evil.example/i.png> "
    ":red[boom] **bold**"
)


def test_sidebar_shows_active_settings_and_run_from_url(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]
) -> None:
    """A user opens a shared link with ?run=...: the sidebar shows the source, backbone, size and that run."""
    at = start(monkeypatch, prepared, run=prepared["run"])
    sidebar_text = plain(" ".join(m.value for m in at.sidebar.markdown))
    assert "tiny_fv_32" in sidebar_text and "32px" in sidebar_text and "cifar-10-python.tar.gz" in sidebar_text
    assert at.sidebar.selectbox(key="sidebar_run").value == prepared["run"]
    assert at.query_params["run"] == [prepared["run"]] or at.query_params["run"] == prepared["run"]


@pytest.mark.parametrize("page", [None, "browse.py", "train.py"])
def test_url_text_is_rendered_literally_never_as_markdown(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], page: str | None
) -> None:
    """A crafted link puts Markdown in ?source=: every place that shows it escapes it, so no link or image is
    rendered."""
    at = start(monkeypatch, prepared, page=page, source=CRAFTED)
    shown = [m.value for m in [*at.markdown, *at.sidebar.markdown, *at.warning, *at.error, *at.caption, *at.info]]
    quoting = [t for t in shown if "evil" in t]
    assert quoting, "the source should be shown somewhere"
    for text in quoting:
        # Each fragment below is live Markdown/HTML only when unescaped; escaped, a backslash sits inside it.
        assert (
            "](https" not in text
            and "![pixel]" not in text
            and " <img" not in text
            and " :red[" not in text
            and "**bold**" not in text
        ), text
        assert "evil\u2060\\.example" in text  # escaped, with a word joiner that stops GFM autolinking


@pytest.mark.parametrize(
    "page, params, notice",
    [
        (None, {"size": "0"}, "size="),
        (None, {"size": "99999"}, "size="),
        (None, {"source": "s" * 5000}, "source="),
        (None, {"run": "../../etc/passwd"}, "run="),
        ("feature_space.py", {"fs_perp": "1"}, "fs_perp="),
        ("feature_space.py", {"fs_iter": "333", "fs_n": "-4", "fs_method": "UMAP"}, "fs_iter="),
        ("browse.py", {"b_split": "nope", "b_page": "-3"}, "b_split="),
        ("evaluate.py", {"ev_true": "99", "ev_norm": "weird"}, "ev_true="),
    ],
)
def test_out_of_range_url_values_fall_back_with_a_notice(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], page: str | None, params: dict[str, str], notice: str
) -> None:
    """A hand-edited or truncated link never crashes a page: the bad value is replaced by the default, with a notice."""
    run = params.pop("run", prepared["run"] if page else None)
    at = start(monkeypatch, prepared, page=page, run=run, **params)
    no_errors(at)
    assert any(notice in w.value for w in at.warning), [w.value for w in at.warning]


def test_leaving_a_page_and_coming_back_keeps_its_choices(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str]
) -> None:
    """A user picks a confusion cell on Evaluate, visits Browse, comes back: the same cell is still selected."""
    at = start(monkeypatch, prepared, page="evaluate.py", run=prepared["run"])
    at.selectbox(key="ev_true").set_value(3)
    at.selectbox(key="ev_pred").set_value(5).run()
    at.switch_page(str(ROOT / "views" / "browse.py")).run()
    at.switch_page(str(ROOT / "views" / "evaluate.py")).run()
    no_errors(at)
    assert at.selectbox(key="ev_true").value == 3 and at.selectbox(key="ev_pred").value == 5


def _files(root: str) -> set[tuple[str, int]]:
    return {(str(p.relative_to(root)), p.stat().st_size) for p in Path(root).rglob("*") if p.is_file()}


def test_demo_mode_disables_every_writer_and_a_forced_click_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], demo: Any
) -> None:
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
    forced._value = (
        True  # what a crafted websocket message can send: the server does not check that a widget is enabled
    )
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
    assert "cifar-10-python.tar.gz" in plain(
        " ".join(m.value for m in at.sidebar.markdown)
    )  # the demo's own source, not /etc
    assert _files(prepared["cache"]) == before


def test_one_poll_per_tab_and_a_jobs_log_only_when_opened(
    monkeypatch: pytest.MonkeyPatch, prepared: dict[str, str], tmp_path: Path
) -> None:
    """A running training job: the Train page shows it live; from the page's second run the sidebar panel lists it
    without its progress ("live on this page") and polls slowly; on another page the panel shows its progress. The
    job's command and log are read and sent only once "Details and log" is opened."""
    import os
    import shutil

    from lib.jobs.records import Job, Progress
    from lib.process import process_start
    from lib.store.atomic import write_json_atomic
    from lib.store.layout import JOB_FILES, CacheLayout
    from ui import jobs

    env = {**prepared, "cache": str(tmp_path / "cache")}  # its own copy: a job that never ends stays in this one
    shutil.copytree(prepared["cache"], env["cache"])
    layout = CacheLayout(env["cache"])
    job = Job(
        "20990101-000000-train-abcdef",
        "train",
        "tiny head",
        ["train", "--epochs", "3"],
        "k",
        state="running",
        pid=os.getpid(),
        pid_start=process_start(os.getpid()),
    )  # alive: this test's own process stands in for the job's
    layout.job_dir(job.id).mkdir(parents=True)
    job.write(layout)
    write_json_atomic(layout.job_file(job.id, JOB_FILES.progress), vars(Progress("head", 2, 5, updated=1.0)))
    layout.job_file(job.id, JOB_FILES.log).write_text("epoch 2/3 LOG-LINE-SEEN\n")

    at = start(monkeypatch, env, page="train.py")
    assert any("tiny head" in p.text for p in at.main.get("progress")), "the Train page shows the job live"
    at.run()  # the panel now knows what the page shows live
    live_here = [c.value for c in at.sidebar.caption if "live on this page" in c.value]
    assert live_here and not at.sidebar.get("progress"), [c.value for c in at.sidebar.caption]
    assert not [c for c in [*at.code, *at.sidebar.code]], "no log is sent while the details are closed"
    assert jobs.SHOWN_LIVE_POLL_S > 1.0

    at.session_state[f"details_{job.id}_page"] = True  # the user opens "Details and log" under the live progress
    at.run()
    assert any("LOG-LINE-SEEN" in c.value for c in at.code) and any("--epochs 3" in c.value for c in at.code)

    at.switch_page(str(ROOT / "views" / "browse.py")).run()
    no_errors(at)
    assert at.sidebar.get("progress"), "elsewhere the panel shows the job's progress"
    assert not [c for c in at.sidebar.caption if "live on this page" in c.value]
