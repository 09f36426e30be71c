"""The Evaluate page's charts: the confusion matrix (a click picks a cell), per-class metrics, top confused pairs, the
reliability diagram, and the per-class difference against another run."""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from lib.runs.registry import list_runs
from ui import cached, charts, state


def confusion_and_per_class(report: dict[str, Any], classes: list[str]) -> pd.DataFrame:
    """The confusion matrix (its clicked cell goes to ``ev_true``/``ev_pred``) beside the per-class table; returns that
    table."""
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Confusion matrix")
        mode = st.radio("Show", ["counts", "row-normalized"], key="ev_norm", horizontal=True)
        cm = np.array(report["confusion"])
        cmn = np.array(report["confusion_normalized"])
        cells = pd.DataFrame(
            [
                {"true": classes[t], "predicted": classes[p], "count": int(cm[t, p]), "share": float(cmn[t, p])}
                for t in range(len(classes))
                for p in range(len(classes))
            ]
        )
        value = "count" if mode == "counts" else "share"

        def confusion_chart() -> Any:
            pick = alt.selection_point(name="cell", fields=["true", "predicted"], on="click")
            base = alt.Chart(cells).encode(x=alt.X("predicted:N", sort=classes), y=alt.Y("true:N", sort=classes))
            heat = (
                base.mark_rect()
                .encode(
                    color=alt.Color(f"{value}:Q", scale=alt.Scale(scheme="blues", type="sqrt")),
                    stroke=alt.condition(pick, alt.value("black"), alt.value(None)),
                    tooltip=["true", "predicted", "count", alt.Tooltip("share:Q", format=".1%")],
                )
                .add_params(pick)
            )
            # The numbers sit on top of the cells, so they carry a twin selection: a click on either picks the cell.
            pick_text = alt.selection_point(name="cell_text", fields=["true", "predicted"], on="click")
            text = (
                base.mark_text(fontSize=10)
                .encode(
                    text=alt.Text(f"{value}:Q", format="d" if value == "count" else ".2f"),
                    color=alt.condition(
                        f"datum.{value} > {cells[value].max() / 2}", alt.value("white"), alt.value("black")
                    ),
                )
                .add_params(pick_text)
            )
            return (heat + text).properties(height=420)

        event = charts.altair(
            "confusion",
            [cells],
            (value, tuple(classes)),
            confusion_chart,
            on_select="rerun",
            key="ev_cm",
            width="stretch",
        )
        for name in ("cell", "cell_text"):
            chosen = event.selection.get(name, []) if event is not None else []
            if chosen and st.session_state.get(f"_ev_last_{name}") != repr(chosen):
                st.session_state[f"_ev_last_{name}"] = repr(chosen)
                st.session_state["ev_true"] = classes.index(chosen[0]["true"])
                st.session_state["ev_pred"] = classes.index(chosen[0]["predicted"])
    with right:
        st.subheader("Per class")
        per = pd.DataFrame(report["per_class"])
        st.dataframe(
            per[["class", "accuracy", "precision", "recall", "f1", "support"]],
            hide_index=True,
            width="stretch",
            column_config={
                k: st.column_config.NumberColumn(format="%.3f") for k in ("accuracy", "precision", "recall", "f1")
            },
        )
        long = per.melt(id_vars="class", value_vars=["accuracy", "precision", "f1"], var_name="metric")
        charts.altair(
            "per-class",
            [long],
            tuple(classes),
            lambda: (
                alt.Chart(long)
                .mark_bar()
                .encode(
                    x=alt.X("class:N", sort=classes, title=None),
                    y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1])),
                    color="metric:N",
                    xOffset="metric:N",
                )
                .properties(height=220)
            ),
            width="stretch",
        )
    return per


def pairs_and_reliability(report: dict[str, Any]) -> None:
    """Top confused pairs beside the reliability diagram."""
    t1, t2 = st.columns(2)
    with t1:
        st.subheader("Top confused pairs")
        pairs = (
            pd.DataFrame(report["top_confused"])[["true", "predicted", "count", "share_of_true"]]
            if report["top_confused"]
            else pd.DataFrame()
        )
        share = st.column_config.NumberColumn("share of true", format="percent")
        st.dataframe(pairs, hide_index=True, width="stretch", column_config={"share_of_true": share})
    with t2:
        st.subheader("Reliability diagram")
        before = report.get("calibration_before")
        curves = [("calibrated" if before else "as trained", report["calibration"])] + (
            [("before calibration", before)] if before else []
        )
        rel = pd.concat([pd.DataFrame(c["bins"]).assign(probabilities=name) for name, c in curves]).dropna()

        def reliability_chart() -> Any:
            diag = (
                alt.Chart(pd.DataFrame({"confidence": [0, 1], "accuracy": [0, 1]}))
                .mark_line(strokeDash=[4, 4], color="gray")
                .encode(x="confidence:Q", y="accuracy:Q")
            )
            curve = (
                alt.Chart(rel)
                .mark_line(point=True)
                .encode(
                    x=alt.X("confidence:Q", scale=alt.Scale(domain=[0, 1]), title="mean confidence in bin"),
                    y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy in bin"),
                    color=alt.Color("probabilities:N", title=None),
                    # Before calibration thin and dashed, drawn over the wide solid calibrated line: where temperature
                    # scaling left the probabilities as they were, the two lines coincide and both still show.
                    strokeDash=alt.StrokeDash(
                        "probabilities:N",
                        title=None,
                        scale=alt.Scale(domain=[name for name, _c in curves], range=[[1, 0], [6, 4]][: len(curves)]),
                    ),
                    strokeWidth=alt.StrokeWidth(
                        "probabilities:N",
                        legend=None,
                        scale=alt.Scale(domain=[name for name, _c in curves], range=[4, 1.5][: len(curves)]),
                    ),
                    tooltip=["probabilities", "count", "confidence", "accuracy"],
                )
            )
            return (diag + curve).properties(height=260)

        charts.altair("reliability", [rel], (), reliability_chart, width="stretch")
        text = f"Expected calibration error: **{report['calibration']['ece']:.4f}** over 15 equal-width bins"
        if before:
            text += (
                f" (**{before['ece']:.4f}** before temperature scaling on the run's validation images: "
                "the probabilities shown everywhere are the calibrated ones)"
            )
        st.caption(text + ".")


def compare_with_another_run(settings: state.Settings, run: Any, per: pd.DataFrame, classes: list[str]) -> None:
    """Per-class accuracy of the active run minus another run's on the same classes."""
    st.subheader("Compare with another run")
    others = {r.run_id: r for r in list_runs(settings.layout) if r.run_id != run.run_id and r.classes == classes}
    if not others:
        st.caption("Train a second run on the same classes to compare per-class accuracy.")
    else:
        other_id = st.selectbox("Other run", list(others), format_func=lambda r: others[r].display_name())
        if st.button(
            "Open the full comparison (McNemar's test, confusion difference, images)", icon=":material/compare_arrows:"
        ):
            state.open_page("views/compare.py", cmp_a=str(other_id), cmp_b=str(run.run_id))
        other = pd.DataFrame(cached.report(settings.layout, other_id)["per_class"])
        diff = pd.DataFrame({"class": per["class"], "difference": per["accuracy"] - other["accuracy"]})
        charts.altair(
            "run-diff",
            [diff],
            tuple(classes),
            lambda: (
                alt.Chart(diff)
                .mark_bar()
                .encode(
                    x=alt.X("class:N", sort=classes, title=None),
                    y=alt.Y("difference:Q", title="accuracy: active − other", axis=alt.Axis(format="+.0%")),
                    color=alt.condition("datum.difference >= 0", alt.value("#4c78a8"), alt.value("#e45756")),
                )
                .properties(height=220)
            ),
            width="stretch",
        )
