"""The Speed vs accuracy page's sections: pick the most accurate configuration within a latency budget (one click to
train it), and what int8 quantisation costs (on the benchmark's subset, and on the full sets from trained runs)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from lib.analysis import benchmark_results as br
from lib.config import BLOG_ACCURACY
from lib.runs.registry import list_runs
from lib.runtimes import as_selectable
from ui import charts, demo, state
from ui.pages import page_path
from ui.text import md_escape


def pick_and_int8(settings: state.Settings, result: dict[str, Any]) -> None:
    """ "Pick for me" within a latency budget, then the int8 loss tables."""
    st.subheader("Pick for me")
    budget = st.number_input(
        "Latency budget per image (ms, single image, p50)", 0.1, 10_000.0, 20.0, step=1.0, key="sp_budget"
    )
    pick = br.pick_within_budget(result["rows"], float(budget))
    if pick is None:
        st.warning("No measured configuration is that fast; raise the budget or measure smaller sizes.")
    else:
        st.success(
            f"**{md_escape(pick['backbone_name'] or pick['backbone'])}** at {pick['image_size']}px with the "
            f"{pick['runtime']} runtime: {pick['best_accuracy']:.2%} (best preset), {pick['latency_ms_p50']:.1f} ms "
            f"per image, {pick['images_per_second']:.0f} img/s."
        )
        if st.button("Train this configuration", type="primary", **demo.off("Training")):
            state.update(backbone=pick["backbone"], image_size=int(pick["image_size"]))
            st.session_state["t_runtime"] = as_selectable(pick["runtime"])
            st.session_state["t_sizes"] = [int(pick["image_size"])]
            st.session_state["t_backbone"] = "(custom handle or path)"
            st.session_state["t_custom"] = pick["backbone"]
            st.switch_page(page_path("views/train.py"))

    st.subheader("What int8 quantisation costs")
    loss = br.int8_loss(result["rows"])
    if loss:
        pct = st.column_config.NumberColumn(format="percent")
        columns = {
            "float_best": pct,
            "int8_best": pct,
            "loss_points": st.column_config.NumberColumn("loss (points)"),
            "int8_speedup": st.column_config.NumberColumn("int8 speed-up", format="%.2fx"),
        }
        st.dataframe(pd.DataFrame(loss), hide_index=True, width="stretch", column_config=columns)
        st.caption(
            f"Best-preset accuracy on {md_escape(result.get('subset', ''))}, int8 against the faster float runtime "
            "of the same backbone and size."
        )
    else:
        st.caption("Measure a backbone with both a float runtime and litert-int8 or litert-mixed to see the loss here.")
    full = br.int8_loss_from_runs(list_runs(settings.layout))
    if full:
        st.markdown(
            "**On the full training and test sets** (from trained runs: same backbone, sizes and head, float and "
            "int8 features)"
        )
        pct = st.column_config.NumberColumn(format="percent")
        columns = {
            "float_accuracy": pct,
            "int8_accuracy": pct,
            "loss_points": st.column_config.NumberColumn("loss (points)"),
        }
        st.dataframe(pd.DataFrame(full), hide_index=True, width="stretch", column_config=columns)
        fast = br.fast_choice(full, loss)
        if fast is not None:
            st.success(
                f"**Fast choice:** {md_escape(fast['backbone'])} at {fast['image_sizes']}px with "
                f"`{fast['int8_runtime']}`: {fast['loss_points']:.2f} points below its float twin on the full sets, "
                f"{fast['int8_speedup']:.2f}x float LiteRT here."
            )
        else:
            st.caption(
                f"No int8 configuration is yet within {br.MAX_FAST_LOSS} points of its float twin on the full sets "
                "and measured here."
            )
    else:
        st.caption(
            "Train one configuration on every image with `--runtime litert` and `--runtime litert-mixed` to see the "
            "full-set loss here."
        )


def speed_chart(rows: pd.DataFrame) -> None:
    """Accuracy against images/s or latency (log scale), one point per configuration, with the Pareto front and the
    blog's 83.35% (adds the ``pareto`` column to ``rows``)."""
    state.bind("sp_axis", "throughput", valid=["throughput", "latency"])
    axis = st.radio("Speed axis", ["throughput", "latency"], key="sp_axis", horizontal=True)
    axes = {
        "throughput": ("images_per_second", "images per second at batch 64 (log)"),
        "latency": ("latency_ms_p50", "single-image latency p50, ms (log)"),
    }
    x_field, x_title = axes[axis]
    speed = rows["images_per_second"] if axis == "throughput" else -rows["latency_ms_p50"]
    front = br.pareto_front(list(zip(speed.tolist(), rows["best_accuracy"].tolist())))
    rows["pareto"] = False
    rows.loc[rows.index[front], "pareto"] = True

    def speed_chart() -> Any:
        points = (
            alt.Chart(rows)
            .mark_point(size=90, filled=True)
            .encode(
                x=alt.X(f"{x_field}:Q", scale=alt.Scale(type="log"), title=x_title),
                y=alt.Y(
                    "best_accuracy:Q",
                    scale=alt.Scale(zero=False),
                    title="test accuracy (best preset)",
                    axis=alt.Axis(format="%"),
                ),
                color=alt.Color("name:N", title="backbone"),
                shape=alt.Shape("runtime:N"),
                tooltip=[
                    "name",
                    "image_size",
                    "runtime",
                    "images_per_second",
                    "latency_ms_p50",
                    "latency_ms_p95",
                    "linear_accuracy",
                    "best_accuracy",
                    "model_mb",
                    *[c for c in ("gflops", "peak_fraction") if c in rows],
                ],
            )
        )
        line = (
            alt.Chart(rows[rows["pareto"]])
            .mark_line(color="black", strokeDash=[3, 3])
            .encode(x=f"{x_field}:Q", y="best_accuracy:Q")
        )
        blog = alt.Chart(pd.DataFrame({"y": [BLOG_ACCURACY]})).mark_rule(color="red", strokeDash=[4, 4]).encode(y="y:Q")
        return (points + line + blog).properties(height=420)

    charts.altair("speed", [rows], (x_field,), speed_chart, width="stretch")
    st.caption(
        "Dashed black: the Pareto front (nothing is both faster and more accurate). Dashed red: the blog's published "
        "83.35% (full CIFAR-10, its own protocol)."
    )
