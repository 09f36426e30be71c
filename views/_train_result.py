"""The Train page's result of the run just trained: accuracy against the blog's, training and extraction time."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from lib.config import BLOG_ACCURACY
from ui import charts


def last_result(runs: list[Any]) -> None:
    """The run this session trained last (if it is still listed)."""
    last = next((m for m in runs if m.run_id == st.session_state.get("last_run")), None)
    if last is not None:
        acc = last.metrics.test_accuracy
        st.subheader("Result")
        m1, m2, m3 = st.columns(3)
        m1.metric("Test accuracy", f"{acc:.2%}", f"{(acc - BLOG_ACCURACY) * 100:+.2f} pts vs blog")
        m2.metric("Training time", f"{last.timings.get('train_seconds', 0.0):.1f}s")
        hits, total = last.timings.get("feature_cache_hits", 0), last.timings.get("feature_artifacts", 0)
        m3.metric(
            "Feature extraction",
            f"{last.timings.get('extract_seconds', 0.0):.1f}s",
            help=f"{hits} of {total} feature sets came from the cache",
        )
        if last.runtime_choice:
            c = last.runtime_choice
            parts = {n: c[n] for n in ("tf", "litert") if isinstance(c.get(n), dict)}
            rates = ", ".join(
                f"{n} {f['images_per_second']:,.0f} img/s" for n, f in parts.items() if f.get("images_per_second")
            )
            why = "; ".join(f"{n} left out: {f['excluded']}" for n, f in parts.items() if f.get("excluded"))
            st.caption(
                f"Runtime auto chose **{c['choice']}** for {c.get('images', 0):,} images ({rates}; estimated seconds "
                f"{c.get('estimated_seconds')}; timed {c.get('measured')})" + (f". {why}" if why else "") + "."
            )
        bars = pd.DataFrame({"model": ["this run", "blog (published)"], "accuracy": [acc, BLOG_ACCURACY]})

        def result_chart() -> Any:
            chart = (
                alt.Chart(bars)
                .mark_bar()
                .encode(
                    x=alt.X(
                        "accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="test accuracy (red: the blog's 83.35%)"
                    ),
                    y=alt.Y("model:N", title=None),
                    color=alt.Color("model:N", legend=None),
                )
            )
            rule = (
                alt.Chart(pd.DataFrame({"blog": [BLOG_ACCURACY]}))
                .mark_rule(color="red", strokeDash=[4, 4], size=2)
                .encode(x="blog:Q")
            )
            return (chart + rule).properties(height=110)

        charts.altair("result", [bars], (), result_chart, width="stretch")
