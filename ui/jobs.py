"""Background jobs in the app: submit one from a page, show its live progress there and in a compact panel on every
page (and in every session), link to what it made, cancel it. The work itself runs in its own process (lib.jobs).

    job = jobs.start(settings, train_job(request))      # joins an identical queued or running job
    jobs.live(settings, ("train",))                      # this page's kinds of job, live, picked up again on return
    jobs.panel(settings)                                 # the sidebar panel (app.py; never in the demo)
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import streamlit as st

from lib.errors import UserFacingError
from lib.jobs import Job, JobSpec, cancel_job, list_jobs, submit
from lib.jobs.commands import JOB_KINDS
from lib.jobs.queue import log_tail, runner_stopped
from ui import demo, state
from ui.pages import page_path
from ui.text import md_escape, show_error

STARTED = "_jobs_started"  # session: ids of the jobs this session started (a finished train job activates its run once)
RECENT_S = 30 * 60  # finished jobs stay in the panel this long
PANEL_JOBS = 6  # the panel shows at most this many (then "and N more")
IDLE_POLL_S = (
    10.0  # with nothing running, each session looks for new jobs this often (ten idle sessions: see bench/jobs.py)
)
SHOWN_LIVE_POLL_S = (
    5.0  # the panel's pace while every running job is already live on the page (the page polls each 1 s)
)
_PAGE = "_jobs_page"  # session: the page this run draws (set by the panel, which runs first)
_LIVE_ON = "_jobs_live_on"  # session: page -> the kinds of job its last run showed live


def start(settings: state.Settings, spec: JobSpec) -> Job | None:
    """Queue ``spec`` (or join the same job already queued or running) and remember it for this session."""
    try:
        job, joined = submit(settings.layout, spec)
    except UserFacingError as err:
        show_error(err)
        return None
    st.session_state.setdefault(STARTED, []).append(job.id)
    st.toast(
        ("Joined the same job, already " + job.state if joined else "Started in the background") + f": {job.title}",
        icon=":material/work:",
    )
    return job


def _fmt_s(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s" if seconds >= 60 else f"{seconds:.0f}s"


def _elapsed(job: Job) -> float | None:
    try:
        begun = datetime.strptime(job.started, "%Y-%m-%dT%H:%M:%S%z").timestamp() if job.started else None
        ended = datetime.strptime(job.finished, "%Y-%m-%dT%H:%M:%S%z").timestamp() if job.finished else time.time()
    except ValueError:
        return None
    return ended - begun if begun else None


def _age(job: Job) -> float:
    try:
        return time.time() - datetime.strptime(job.finished or job.created, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return 0.0


def draw_job(settings: state.Settings, job: Job, where: Any, compact: bool) -> None:
    """One job: its kind and title, a progress bar with the stage, images/s, ETA, elapsed; Cancel; its result or
    error."""
    p = job.progress
    title = f"{job.kind}: {md_escape(job.title, 120)}"
    if job.state == "running":
        rate = f"{p.rate:,.0f} {p.unit or 'items'}/s · " if p.rate else ""
        counts = f"{p.done:,}/{p.total:,} · " if p.total else ""
        where.progress(p.fraction, text=f"{title} · {md_escape(p.stage or 'starting', 80)}")
        stage_for = f" (this stage {_fmt_s(time.time() - p.since)})" if p.since and not p.total else ""
        eta = f"ETA {_fmt_s(p.eta_seconds)} · " if p.total else ""
        where.caption(
            f"{counts}{rate}{eta}elapsed {_fmt_s(_elapsed(job))}{stage_for}"
            + (" · cancelling at the next safe point" if job.cancel_requested else "")
        )
    elif job.state == "queued":
        where.caption(f":material/schedule: {title} · queued")
    elif job.state == "done":
        kind = JOB_KINDS.get(job.kind)
        page, label, field = (
            (kind.result_page, kind.link, kind.result_field) if kind else ("views/home.py", "Open", None)
        )
        value = job.result.get(field) if field else None
        params = {"run": value} if field == "run_id" and isinstance(value, str) else None
        where.caption(f":material/check_circle: {title} · done in {_fmt_s(_elapsed(job))}")
        where.page_link(page_path(page), label=label, icon=":material/arrow_forward:", query_params=params)
    elif job.state == "failed":
        where.error(f"{title} failed: {md_escape(job.error or 'see the log', 600)}", icon=":material/error:")
    elif job.damaged:
        where.warning(f"Job {md_escape(job.id, 40)}: {md_escape(job.error, 600)}", icon=":material/warning:")
        return
    else:
        where.caption(f":material/cancel: {title} · cancelled")
    actions = where.columns([1, 2]) if job.active else [None, where]
    if job.active and actions[0].button(
        "Cancel", key=f"cancel_{job.id}_{'panel' if compact else 'page'}", **demo.off("Cancelling")
    ):
        cancel_job(settings.layout, job.id)
        st.rerun(scope="fragment")
    # Lazy: what is inside is read and sent only while the expander is open (the panel and a page's live view rerun
    # every second while a job runs; a 6,000-character log highlighted twice a second cost the browser more than the
    # rest of the page).
    details = actions[1].expander(
        "Details and log", key=f"details_{job.id}_{'panel' if compact else 'page'}", on_change="rerun"
    )
    if details.open:
        with details:
            st.code(job.command, language="bash", wrap_lines=True)
            st.caption(f"Job {job.id} · `python -m lib jobs show {job.id}` · `python -m lib jobs logs {job.id}`")
            tail = log_tail(settings.layout, job.id, 20_000)
            if tail:
                st.code(tail[-6000:], language="text")


def _curves(series: list[dict[str, float]]) -> None:
    """A training's loss and accuracy per epoch so far (the job's live chart)."""
    import altair as alt
    import pandas as pd

    rows = [
        {"epoch": p["epoch"], "metric": k, "value": v, "kind": "loss" if "loss" in k else "accuracy"}
        for p in series
        if "epoch" in p
        for k, v in p.items()
        if k != "epoch"
    ]
    if rows:
        line = (
            alt.Chart(pd.DataFrame(rows))
            .mark_line(point=True)
            .encode(x="epoch:Q", y=alt.Y("value:Q", title=None), color="metric:N")
        )
        st.altair_chart(
            line.properties(height=160).facet(column=alt.Column("kind:N", title=None)).resolve_scale(y="independent")
        )


def _jobs(settings: state.Settings, kinds: tuple[str, ...] | None = None) -> list[Job]:
    try:
        found = list_jobs(settings.layout)
    except (UserFacingError, OSError):
        return []
    return [j for j in found if kinds is None or j.kind in kinds]


def _activate_finished_runs(settings: state.Settings, jobs: list[Job]) -> None:
    """A train job this session started and that has finished makes its run the active one (once)."""
    mine = st.session_state.get(STARTED, [])
    for j in jobs:
        run_id = j.result.get("run_id")
        if (
            j.id in mine
            and j.state == "done"
            and isinstance(run_id, str)
            and st.session_state.get(f"_activated_{j.id}") is None
        ):
            st.session_state[f"_activated_{j.id}"] = run_id
            st.session_state["last_run"] = run_id
            state.update(run_id=run_id)


def last_failed(settings: state.Settings, kind: str) -> Job | None:
    """The newest job of ``kind`` this session started, if it failed."""
    mine = st.session_state.get(STARTED, [])
    newest = next((j for j in _jobs(settings, (kind,)) if j.id in mine), None)
    return newest if newest is not None and newest.state == "failed" else None


def live(settings: state.Settings, kinds: tuple[str, ...]) -> None:
    """The jobs of ``kinds`` that are queued or running (started here, in another tab or from the CLI), live; when
    the last one ends the page reruns to show what it made. A job this session started that failed shows its error."""
    found = _jobs(settings, kinds)
    active = [j for j in found if j.active]
    _activate_finished_runs(settings, found)
    shown, page = st.session_state.setdefault(_LIVE_ON, {}), st.session_state.get(_PAGE)
    shown[page] = (*shown.get(page, ()), *kinds)  # what the panel reads on this page's next run
    mine = st.session_state.get(STARTED, [])
    for j in found:
        if j.id in mine and j.state == "failed" and _age(j) < RECENT_S:
            draw_job(settings, j, st, compact=False)
            break
    if not active:
        return

    @st.fragment(run_every=1.0)
    def _live() -> None:
        now_active = [j for j in _jobs(settings, kinds) if j.active]
        if not now_active:
            st.rerun(scope="app")
        for j in now_active:
            with st.container(border=True):
                draw_job(settings, j, st, compact=False)
                if j.progress.series:
                    _curves(j.progress.series)

    _live()


def panel(settings: state.Settings, page: str) -> None:
    """The sidebar's jobs panel on ``page``: every active job of this cache and the ones finished in the last half hour.
    Polls every second while something runs, every ten seconds otherwise (and reruns the page when that changes).

    One poll a second per tab, not two: a running job whose kind the page showed live on its last run (:func:`live`,
    which polls every second) is listed here without its progress, and if every running job is, the panel polls every
    :data:`SHOWN_LIVE_POLL_S` seconds. Each poll reruns the fragment on the server and redraws it in the browser."""
    if demo.active():
        return
    st.session_state[_PAGE] = page
    live_here = set(st.session_state.setdefault(_LIVE_ON, {}).pop(page, ()))  # this run's live() records them again
    jobs = _jobs(settings)
    active = any(j.active for j in jobs)
    pace = SHOWN_LIVE_POLL_S if all(j.kind in live_here for j in jobs if j.active) else 1.0

    def body() -> None:
        current = _jobs(settings)
        if any(j.active for j in current) != active:
            st.rerun(
                scope="app"
            )  # something started or ended: the page may have new results, and the poll its new pace
        recent = [j for j in current if j.active or j.damaged or _age(j) < RECENT_S]
        shown = recent[:PANEL_JOBS]
        if not shown:
            return
        st.markdown("**Jobs**")
        waiting = runner_stopped(settings.layout) if any(j.state == "queued" for j in current) else ""
        if waiting:
            st.warning(f"Queued jobs wait: {md_escape(waiting, 600)}", icon=":material/block:")
        for j in shown:
            if j.active and j.kind in live_here:
                st.caption(f":material/autorenew: {j.kind}: {md_escape(j.title, 120)} · {j.state}, live on this page")
            else:
                draw_job(settings, j, st, compact=True)
        if len(recent) > len(shown):
            st.caption(f"and {len(recent) - len(shown)} more (`python -m lib jobs list`)")

    with st.sidebar:
        st.fragment(body, run_every=pace if active else IDLE_POLL_S)()
