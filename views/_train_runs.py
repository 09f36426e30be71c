"""The runs table of the Train page: select rows to activate, rename, delete, download and compare runs."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from lib.config import BLOG_ACCURACY
from lib.errors import UserFacingError
from lib.runs.manifest import RunManifest
from lib.runs.registry import delete_run, list_damaged_runs, set_label
from ui import charts, demo, state, widgets
from ui.text import md_escape, show_error


def runs_frame(runs: list[RunManifest]) -> pd.DataFrame:
    """One row per run with the columns people compare (all plain text: dataframes never render Markdown)."""
    return pd.DataFrame(
        [
            {
                "label": m.label,
                "run_id": m.run_id,
                "protocol": m.protocol or "custom",
                "backbone": m.backbone_summary() if m.extra_backbones else m.backbone_name,
                "sizes": ",".join(map(str, m.image_sizes)),
                "head": m.head.head,
                "views": "+".join(m.train_views),
                "tta": m.tta,
                "runtime": m.runtime,
                "limit": str(m.limit or "all"),
                "test_accuracy": m.metrics.test_accuracy,
                "top5": m.metrics.top5_accuracy,
                "train_s": m.timings.get("train_seconds"),
                "extract_s": m.timings.get("extract_seconds"),
                "created": m.created,
            }
            for m in runs
        ]
    )


def damaged_section(settings: state.Settings) -> None:
    """Runs whose files are damaged: listed with the reason, and deletable here."""
    damaged = list_damaged_runs(settings.layout)
    if not damaged:
        return
    st.subheader("Damaged runs")
    st.caption(
        "These runs cannot be loaded (a file is missing, truncated or malformed). Delete them, then train again."
    )
    for run_id, reason in damaged:
        a, b = st.columns([4, 1])
        a.warning(f"{run_id}: {md_escape(reason, 400)}")
        if b.button("Delete", key=f"del_damaged_{run_id}", **demo.off("Deleting")):
            try:
                delete_run(settings.layout, run_id)
            except UserFacingError as err:
                show_error(err, b)
                continue
            if settings.run_id == run_id:
                state.update(run_id="")
            st.rerun()


def runs_section(settings: state.Settings, runs: list[RunManifest]) -> None:
    """Draw the table, the actions on selected rows, and the comparison chart."""
    if not runs:
        st.info("No runs yet: train one above.")
        return
    df = runs_frame(runs)
    event = st.dataframe(
        df,
        key="runs_table",
        on_select="rerun",
        selection_mode="multi-row",
        hide_index=True,
        width="stretch",
        column_config={
            "test_accuracy": st.column_config.NumberColumn("test acc", format="%.4f"),
            "top5": st.column_config.NumberColumn(format="%.4f"),
        },
    )
    widgets.csv_download(st, "Download the runs table (CSV)", df, "runs.csv", key="runs_csv")
    picked = [df.iloc[i]["run_id"] for i in event.selection.rows] if event is not None else []
    if not picked:
        st.caption(
            "Select rows to activate, rename, delete, download or compare runs (select two for the full comparison)."
        )
    else:
        first = picked[0]
        a, b, c, d = st.columns(4)
        if a.button(f"Activate {first}", type="primary"):
            m = next(r for r in runs if r.run_id == first)
            state.update(run_id=first, backbone=m.backbone, image_size=m.image_size)
            st.rerun()
        new_label = b.text_input("New label", key="rename_text", label_visibility="collapsed", placeholder="new label")
        if b.button("Rename", **demo.off("Renaming")) and new_label.strip():
            try:
                set_label(settings.layout, first, new_label)
                st.rerun()
            except UserFacingError as err:
                show_error(err, b)
        confirm = c.checkbox(f"Yes, delete {len(picked)} run(s)")
        if c.button("Delete", **demo.off("Deleting", disabled=not confirm)):
            try:
                for rid in picked:
                    delete_run(settings.layout, rid)
            except UserFacingError as err:
                show_error(err, c)
            else:
                if settings.run_id in picked:
                    state.update(run_id="")
                st.rerun()
        _download(d, settings, first)
        if len(picked) == 2 and st.button("Compare these two runs", icon=":material/compare_arrows:"):
            state.open_page(
                "views/compare.py", cmp_a=str(picked[1]), cmp_b=str(picked[0])
            )  # the older one as A (the table is newest first)
    shown = df[df["run_id"].isin(picked)] if len(picked) > 1 else df
    st.caption(
        "Comparison of "
        + ("the selected runs" if len(picked) > 1 else "all runs")
        + " (dashed line: the blog's 83.35%)."
    )

    def comparison_chart() -> Any:
        points = (
            alt.Chart(shown)
            .mark_circle(size=120)
            .encode(
                x=alt.X("train_s:Q", title="training time (s)"),
                y=alt.Y("test_accuracy:Q", title="test accuracy", scale=alt.Scale(zero=False)),
                color="head:N",
                tooltip=["label", "run_id", "protocol", "sizes", "head", "views", "tta", "test_accuracy", "train_s"],
            )
        )
        rule = alt.Chart(pd.DataFrame({"y": [BLOG_ACCURACY]})).mark_rule(color="red", strokeDash=[4, 4]).encode(y="y:Q")
        return (points + rule).properties(height=280)

    charts.altair("runs", [shown], (), comparison_chart, width="stretch")


def _download(col: Any, settings: state.Settings, run_id: str) -> None:
    """Build the exported model zip on request, then offer it for download."""

    layout = settings.layout
    zip_path = layout.export_zip(run_id)
    if not zip_path.exists() and col.button("Build model zip", **demo.off("Building a zip")):
        with st.spinner("Exporting backbone + head as one SavedModel…"):
            try:
                from lib.runs.export import export_run, zip_folder

                # The cache's own exports folder: a previous export of this run there may be replaced.
                folder = export_run(settings.layout, run_id, layout.export_dir(run_id), force=True)
                zip_folder(folder, zip_path)
            except UserFacingError as err:
                show_error(err, col)
                return
    if zip_path.exists():
        col.download_button(
            "Download model (.zip)", zip_path.read_bytes(), file_name=zip_path.name, mime="application/zip"
        )
