"""Browse's sections: the selected image with the active run's prediction, and the class balance chart."""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from lib.data.images import upscale
from ui import charts, widgets
from ui.text import md_escape


def selected_image(ds: Any, run: Any, split: str, rows: np.ndarray, labels: np.ndarray, images: Any) -> None:
    """The image picked on this page, large, with the active run's prediction and top-5 where it has one."""
    st.subheader("Selected image")
    if st.session_state["b_sel"] not in set(rows.tolist()) and len(rows):
        st.session_state["b_sel"] = int(rows[0])
    sel = st.selectbox(
        "Image on this page", rows.tolist(), key="b_sel", format_func=lambda i: f"#{i} {ds.classes[labels[i]]}"
    )
    if sel is not None:
        a, b = st.columns([1, 1])
        a.image(upscale(np.asarray(images[sel]), 256), caption=f"{split} #{sel}: {md_escape(ds.classes[labels[sel]])}")
        if run is None:
            b.info("Activate a run (sidebar) to see its prediction and top-5 here.")
        elif split == run.manifest.test_split and run.manifest.dataset_fingerprint == ds.fingerprint:
            row = np.flatnonzero(run.indices == sel)
            if len(row):
                probs = run.probs[row[0]]
                pred = int(probs.argmax())
                verdict = "correct" if pred == labels[sel] else "wrong"
                b.metric(
                    "Predicted", run.classes[pred], verdict, delta_color="normal" if verdict == "correct" else "inverse"
                )
                widgets.top5(b, probs, run.classes)
            else:
                b.info("The active run was evaluated on a --limit subset that does not include this image.")
        elif run.manifest.dataset_fingerprint != ds.fingerprint:
            b.info("The active run was trained on another dataset; pick one of this dataset's runs in the sidebar.")
        else:
            b.info("Runs store predictions for the test split; switch the split to test to see them.")


def class_balance(ds: Any) -> None:
    """Images per class and split, as bars."""
    st.subheader("Class balance")
    balance = pd.DataFrame(
        [{"split": s, "class": c, "images": ds.counts[s][i]} for s in ds.splits for i, c in enumerate(ds.classes)]
    )
    charts.altair(
        "balance",
        [balance],
        tuple(ds.classes),
        lambda: (
            alt.Chart(balance)
            .mark_bar()
            .encode(
                x=alt.X("class:N", sort=list(ds.classes), title=None),
                y="images:Q",
                color="split:N",
                xOffset="split:N",
                tooltip=["split", "class", "images"],
            )
            .properties(height=300)
        ),
        width="stretch",
    )
    if any(ds.skipped.values()):
        st.caption(
            "Unreadable files skipped while converting: "
            + ", ".join(f"{md_escape(s)}: {n}" for s, n in ds.skipped.items())
        )
