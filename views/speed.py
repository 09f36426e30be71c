"""Speed vs accuracy: every measured (backbone, size, runtime) on one chart with its Pareto front, a table,
and "pick for me" within a latency budget."""

import time

import altair as alt
import pandas as pd
import streamlit as st

from lib.analysis.benchmark import DEFAULT_LIMIT, pareto_front, pick_within_budget, stored_benchmarks
from lib.config import BLOG_ACCURACY
from ui import state
from ui.text import md_escape, show_error

settings = state.current()
st.title("Speed vs accuracy")
results = stored_benchmarks(settings.cache_dir)

if not results:
    st.info(
        "Nothing measured yet. This page answers *which backbone, input size and runtime fits my latency budget, and what "
        "accuracy do I give up?*: one point per configuration, accuracy against images per second or latency, the Pareto "
        "front, and the most accurate configuration within a budget. Measure the default grid with `python -m lib benchmark "
        "--source ...` (every backbone in ../shared/models at 96-224 px, three runtimes), or a small grid below."
    )
else:
    result = results[0]
    rows = pd.DataFrame(result["rows"])
    rows["name"] = rows["backbone_name"].where(rows["backbone_name"] != "", rows["backbone"])
    m = result["machine"]
    st.caption(f"Measured on {md_escape(m.get('cpu'))} ({m.get('cores')} cores). Accuracies: {md_escape(result.get('subset', ''))} "
               f"of {md_escape(result.get('source', ''))}; linear probe and the best preset (MLP, flips, TTA).")  # fmt: skip
    state.bind("sp_axis", "throughput", valid=["throughput", "latency"])
    axis = st.radio("Speed axis", ["throughput", "latency"], key="sp_axis", horizontal=True)
    axes = {"throughput": ("images_per_second", "images per second at batch 64 (log)"), "latency": ("latency_ms_p50", "single-image latency p50, ms (log)")}
    x_field, x_title = axes[axis]
    speed = rows["images_per_second"] if axis == "throughput" else -rows["latency_ms_p50"]
    front = pareto_front(list(zip(speed.tolist(), rows["best_accuracy"].tolist())))
    rows["pareto"] = False
    rows.loc[rows.index[front], "pareto"] = True
    points = alt.Chart(rows).mark_point(size=90, filled=True).encode(
        x=alt.X(f"{x_field}:Q", scale=alt.Scale(type="log"), title=x_title),
        y=alt.Y("best_accuracy:Q", scale=alt.Scale(zero=False), title="test accuracy (best preset)", axis=alt.Axis(format="%")),
        color=alt.Color("name:N", title="backbone"), shape=alt.Shape("runtime:N"),
        tooltip=["name", "image_size", "runtime", "images_per_second", "latency_ms_p50", "latency_ms_p95", "linear_accuracy", "best_accuracy", "model_mb"],
    )  # fmt: skip
    line = alt.Chart(rows[rows["pareto"]]).mark_line(color="black", strokeDash=[3, 3]).encode(x=f"{x_field}:Q", y="best_accuracy:Q")
    blog = alt.Chart(pd.DataFrame({"y": [BLOG_ACCURACY]})).mark_rule(color="red", strokeDash=[4, 4]).encode(y="y:Q")
    st.altair_chart((points + line + blog).properties(height=420), width="stretch")
    st.caption("Dashed black: the Pareto front (nothing is both faster and more accurate). Dashed red: the blog's published 83.35% "
               "(full CIFAR-10, its own protocol).")  # fmt: skip

    st.subheader("Pick for me")
    budget = st.number_input("Latency budget per image (ms, single image, p50)", 0.1, 10_000.0, 20.0, step=1.0, key="sp_budget")
    pick = pick_within_budget(result["rows"], float(budget))
    if pick is None:
        st.warning("No measured configuration is that fast; raise the budget or measure smaller sizes.")
    else:
        st.success(f"**{md_escape(pick['backbone_name'] or pick['backbone'])}** at {pick['image_size']}px with the {pick['runtime']} runtime: "
                   f"{pick['best_accuracy']:.2%} (best preset), {pick['latency_ms_p50']:.1f} ms per image, {pick['images_per_second']:.0f} img/s.")  # fmt: skip
        if st.button("Train this configuration", type="primary"):
            state.update(backbone=pick["backbone"], image_size=int(pick["image_size"]))
            st.session_state["t_runtime"] = pick["runtime"] if pick["runtime"] != "tflite" else "tf"
            st.session_state["t_sizes"] = [int(pick["image_size"])]
            st.session_state["t_backbone"] = "(custom handle or path)"
            st.session_state["t_custom"] = pick["backbone"]
            st.switch_page("views/train.py")

    st.subheader("All measurements")
    st.dataframe(rows.drop(columns=["pareto", "backbone"]), hide_index=True, width="stretch")

st.subheader("Measure")
with st.form("bench_form"):
    c1, c2, c3 = st.columns(3)
    sizes = c1.multiselect("Input sizes", sorted({96, 128, 160, 192, 224, settings.image_size}), default=[settings.image_size])
    runtimes = c2.multiselect("Runtimes", ["tf", "litert", "litert-int8"], default=["tf", "litert"])
    limit = c3.number_input("Images per class for the accuracies", 10, 5000, DEFAULT_LIMIT)
    go = st.form_submit_button(f"Measure the active backbone ({md_escape(settings.backbone.rstrip('/').split('/')[-1])})")
if go and sizes and runtimes:
    from lib.analysis.benchmark import run_benchmark
    from lib.errors import UserFacingError

    with st.status("Measuring…", expanded=True) as status:
        bar = st.progress(0.0)
        started = time.perf_counter()

        def report(done: int, total: int, what: str) -> None:
            elapsed = time.perf_counter() - started
            eta = f" · ETA {elapsed / done * (total - done):.0f}s" if done else ""
            bar.progress(min(done / max(total, 1), 1.0), text=f"{done}/{total} configurations · {md_escape(what)}{eta}")

        try:
            run_benchmark(settings.source, [settings.backbone], [int(s) for s in sizes], list(runtimes), settings.cache_dir, int(limit), report)
            status.update(label="Measured", state="complete")
        except UserFacingError as err:
            status.update(label="Measuring failed", state="error")
            show_error(err)
            st.stop()
    st.rerun()
