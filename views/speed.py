"""Speed vs accuracy: every measured (backbone, size, runtime) on one chart with its Pareto front, a table,
"pick for me" within a latency budget, the int8 accuracy loss, and buttons that measure what is missing."""

import pandas as pd
import streamlit as st

from lib.analysis import benchmark as bm
from lib.analysis import benchmark_results as br
from lib.jobs.commands import benchmark_job
from lib.runtimes import registry, selectable
from ui import demo, jobs, state, widgets
from ui.text import md_escape
from views import _speed_sections


def measure(
    settings: state.Settings, backbones: list[str] | None, sizes: list[int], runtimes: list[str], limit: int
) -> None:
    """Measure in the background (None: every shared backbone, the default grid)."""
    if jobs.start(settings, benchmark_job(settings.source, backbones, sizes, runtimes, limit)):
        st.rerun()


settings = state.current()
st.title("Speed vs accuracy")
jobs.live(settings, ("benchmark",))
groups = br.merged_results(br.stored_benchmarks(settings.layout))
default_grid = bm.default_grid()

if not groups:
    st.info(
        "Nothing measured yet. This page answers *which backbone, input size and runtime fits my latency budget, "
        "and what accuracy do I give up?*: one point per configuration, accuracy against images per second or "
        "single-image latency, the Pareto front, the most accurate configuration within a budget, and what int8 "
        "quantisation costs. The default grid is every backbone in ../shared/models at "
        f"{', '.join(map(str, bm.DEFAULT_SIZES))} px with the {', '.join(selectable())} runtimes "
        f"({len(default_grid)} configurations, accuracies on the first {bm.DEFAULT_LIMIT} images per class); the "
        "same as `python -m lib benchmark --source ...` on the command line."
    )
    demo.note()
    if st.button(
        f"Measure the default grid ({len(default_grid)} configurations)",
        type="primary",
        **demo.off("Measuring", help=demo.BACKGROUND),
    ):
        measure(settings, None, list(bm.DEFAULT_SIZES), list(selectable()), bm.DEFAULT_LIMIT)
else:
    labels = [
        f"{g['machine'].get('cpu')} ({g['machine'].get('cores')} cores) · {g.get('subset', '')} · {len(g['rows'])} rows"
        for g in groups
    ]
    state.bind("sp_group", 0, int, valid=range(len(groups)))
    pick_group = (
        st.selectbox("Measurements", range(len(groups)), format_func=lambda i: labels[i], key="sp_group")
        if len(groups) > 1
        else 0
    )
    result = groups[pick_group]
    rows = pd.DataFrame(result["rows"])
    rows["name"] = rows["backbone_name"].where(rows["backbone_name"] != "", rows["backbone"])
    m = result["machine"]
    st.caption(
        f"Measured on {md_escape(m.get('cpu'))} ({m.get('cores')} cores). Accuracies: "
        f"{md_escape(result.get('subset', ''))} of {md_escape(result.get('source', ''))}; linear probe and the best "
        "preset (MLP, flips, TTA)."
    )
    _speed_sections.speed_chart(rows)

    _speed_sections.pick_and_int8(settings, result)

    st.subheader("All measurements")
    if probe := result.get("peak_probe"):
        st.caption(
            "gflops: 2 × the multiply-adds per image (counted from the float LiteRT graph) × images/s at batch 64. "
            f"peak_fraction: that over this machine's {probe['gflops']:,.0f} GFLOP/s ({md_escape(probe['method'])}). "
            "An int8 row can pass 1: the probe is float32."
        )
    st.dataframe(rows.drop(columns=["pareto", "backbone"]), hide_index=True, width="stretch")
    widgets.csv_download(
        st, "Download the measurements (CSV)", rows.drop(columns=["pareto"]), "speed_accuracy.csv", key="sp_csv"
    )

    missing = br.missing_configurations(default_grid, result["rows"]) if result.get("limit") == bm.DEFAULT_LIMIT else []
    if missing:
        st.info(
            f"{len(missing)} of the default grid's {len(default_grid)} configurations are not measured on this "
            "machine yet."
        )
        if st.button(
            f"Measure the {len(missing)} missing configurations",
            type="primary",
            **demo.off("Measuring", help=demo.BACKGROUND),
        ):
            measure(
                settings, None, list(bm.DEFAULT_SIZES), list(selectable()), bm.DEFAULT_LIMIT
            )  # measured rows are kept: the rest is measured

st.subheader("Measure the active backbone")
with st.form("bench_form"):
    c1, c2, c3 = st.columns(3)
    sizes = c1.multiselect(
        "Input sizes", sorted({*bm.DEFAULT_SIZES, settings.image_size}), default=[settings.image_size]
    )
    runtimes = c2.multiselect(
        "Runtimes", list(selectable()), default=[rt for rt in selectable() if registry()[rt].exact]
    )
    limit = c3.number_input("Images per class for the accuracies", 10, 5000, bm.DEFAULT_LIMIT)
    go = st.form_submit_button(
        f"Measure {md_escape(settings.backbone.rstrip('/').split('/')[-1])}",
        **demo.off("Measuring", help=demo.BACKGROUND),
    )
if go and sizes and runtimes:
    measure(settings, [settings.backbone], [int(s) for s in sizes], list(runtimes), int(limit))
