"""Compare runs' charts: per-class accuracy difference and the confusion-matrix difference (B − A)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from ui import charts


def per_class_difference(result: dict[str, Any], classes: list[str]) -> None:
    """Per-class accuracy of B minus A, as bars (blue: B better)."""
    st.subheader("Per-class accuracy: B − A")
    per = pd.DataFrame(result["per_class"])
    charts.altair(
        "cmp-per-class",
        [per],
        tuple(classes),
        lambda: (
            alt.Chart(per)
            .mark_bar()
            .encode(
                x=alt.X("class:N", sort=classes, title=None),
                y=alt.Y("difference:Q", title="accuracy: B − A", axis=alt.Axis(format="+.0%")),
                color=alt.condition("datum.difference >= 0", alt.value("#4c78a8"), alt.value("#e45756")),
                tooltip=["class", alt.Tooltip("a:Q", format=".3f"), alt.Tooltip("b:Q", format=".3f"), "images"],
            )
            .properties(height=260)
        ),
        width="stretch",
    )


def confusion_difference(result: dict[str, Any], classes: list[str]) -> None:
    """The confusion matrix of B minus A, coloured by which run does better in each cell."""
    st.subheader("Confusion matrix: B − A")
    diff = pd.DataFrame(
        [
            {"true": classes[i], "predicted": classes[j], "change": v, "better": v if i == j else -v}
            for i, row in enumerate(result["confusion_difference"])
            for j, v in enumerate(row)
        ]
    )
    top = max(1, int(diff["change"].abs().max()))
    axis = alt.Axis(labelOverlap=False)
    charts.altair(
        "cmp-confusion",
        [diff],
        tuple(classes),
        lambda: (
            alt.Chart(diff)
            .mark_rect()
            .encode(
                x=alt.X("predicted:N", sort=classes, axis=axis),
                y=alt.Y("true:N", sort=classes, axis=axis),
                color=alt.Color("better:Q", scale=alt.Scale(scheme="redblue", domain=[-top, top]), title="B better"),
                tooltip=["true", "predicted", alt.Tooltip("change:Q", title="count: B − A")],
            )
            .properties(height=300)
        ),
        width="stretch",
    )
    st.caption(
        "Blue: B does better in that cell (more images right on the diagonal, fewer of that mistake off it); red: "
        "worse. The tooltip gives the count B − A."
    )
