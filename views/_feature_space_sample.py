"""The Feature space page's quick map of a sample of one split: PCA or t-SNE (Altair, box selection), coloured by label
or the active run's predictions, and cosine nearest neighbours within the split."""

from __future__ import annotations

import time
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from lib.analysis.inventory import FeatureSet, splits_with
from lib.config import ORIGINAL
from ui import cached, demo, state, widgets
from ui.text import md_escape


def bind_url_state() -> None:
    """This section's widgets seeded from the URL (checked at page load, whichever map is shown)."""
    state.bind("fs_split", "test")
    state.bind("fs_n", 2000, int, state.in_range(500, 10_000))
    state.bind("fs_method", "PCA", valid=["PCA", "t-SNE"])
    state.bind("fs_perp", 30, int, state.in_range(5, 100))
    state.bind("fs_iter", 500, int, lambda v: 250 <= v <= 2000 and v % 250 == 0)
    state.bind("fs_seed", 0, int, state.in_range(0, 10_000))
    state.bind("fs_color", "true label", valid=["true label", "predicted label", "correct vs wrong"])


def draw(settings: state.Settings, ds: Any, run: Any, combo: FeatureSet) -> None:
    """The sample map of ``combo`` and its neighbour query."""
    c2, c3 = st.columns([1, 2])
    splits = splits_with(settings.layout, ds, combo)
    if st.session_state["fs_split"] not in splits:
        st.session_state["fs_split"] = splits[0]
    split = c2.selectbox("Split", splits, key="fs_split")
    result = cached.features(settings.source, settings.layout, combo[0], combo[1], split, ORIGINAL, combo[2], combo[3])
    if result is None:
        st.warning("Those features are no longer in the cache.")
        return
    total = len(result.labels)
    n_max = min(demo.MAX_SAMPLE if demo.active() else 10_000, total)
    if n_max > 500:
        st.session_state["fs_n"] = min(max(st.session_state["fs_n"], 500), n_max)
        n = c3.slider("Stratified sample size", 500, n_max, key="fs_n", step=100)
    else:
        n = total
        c3.caption(f"All {total} points are shown (the slider appears above 500).")

    d1, d2, d3, d4, d5 = st.columns(5)
    # t-SNE of a sample costs seconds of CPU per visitor: a demo offers the stored map of every image instead.
    methods = ["PCA"] if demo.active() else ["PCA", "t-SNE"]
    if st.session_state["fs_method"] not in methods:
        st.session_state["fs_method"] = "PCA"
    method = d1.radio("Method", methods, key="fs_method", horizontal=True, help=demo.WHY if demo.active() else None)
    perplexity = d2.slider("Perplexity", 5, 100, key="fs_perp", disabled=method == "PCA")
    iters = d3.slider("t-SNE iterations", 250, 2000, key="fs_iter", step=250, disabled=method == "PCA")
    seed = d4.number_input("Seed", 0, 10_000, key="fs_seed")
    run_matches = (
        run is not None and run.manifest.dataset_fingerprint == ds.fingerprint and split == run.manifest.test_split
    )
    color_options = ["true label", "predicted label", "correct vs wrong"] if run_matches else ["true label"]
    if st.session_state["fs_color"] not in color_options:
        st.session_state["fs_color"] = "true label"
    color_by = d5.selectbox("Colour by", color_options, key="fs_color")
    state.publish("fs_combo", "fs_split", "fs_n", "fs_method", "fs_perp", "fs_iter", "fs_seed", "fs_color")

    rows = (
        cached.sample(settings.source, settings.layout, split, int(n), int(seed))
        if combo[2] is None
        else np.arange(total)[:n]
    )
    t0 = time.perf_counter()
    with st.spinner("t-SNE on 2 cores takes a while; it is cached by its parameters" if method == "t-SNE" else "PCA…"):
        proj = cached.projection(
            settings.layout,
            str(result.path),
            tuple(int(r) for r in rows),
            "tsne" if method == "t-SNE" else "pca",
            float(perplexity),
            int(iters),
            int(seed),
        )
    elapsed = time.perf_counter() - t0

    image_ids = result.indices[proj.indices]  # positions in the split
    df = pd.DataFrame(
        {
            "x": proj.coords[:, 0],
            "y": proj.coords[:, 1],
            "row": proj.indices,
            "image": image_ids,
            "label": [ds.classes[result.labels[r]] for r in proj.indices],
        }
    )
    if run_matches:
        lookup = {int(i): k for k, i in enumerate(run.indices)}
        pred = [lookup.get(int(i)) for i in image_ids]
        y_pred = run.y_pred
        df["predicted"] = [run.classes[y_pred[k]] if k is not None else "n/a" for k in pred]
        df["outcome"] = [
            "n/a" if p == "n/a" else ("correct" if p == t else "wrong") for p, t in zip(df["predicted"], df["label"])
        ]
    color_field = {"true label": "label", "predicted label": "predicted", "correct vs wrong": "outcome"}[color_by]
    tooltip = ["image", "label"] + (["predicted"] if run_matches else [])
    if len(df) <= 2000:
        # Vega's tooltip shows a field named "image" holding a data URI as a picture.
        df["thumb"] = cached.thumbnails(settings.source, settings.layout, split, tuple(int(i) for i in image_ids))
        df = df.rename(columns={"image": "index", "thumb": "image"})
        tooltip = ["image", "index", "label"] + (["predicted"] if run_matches else [])
    else:
        df = df.rename(columns={"image": "index"})
        tooltip = ["index", "label"] + (["predicted"] if run_matches else [])
        st.caption("Hover thumbnails are shown for samples of up to 2,000 points (each is sent to the browser).")

    caption = f"{method} of {len(df):,} points in {elapsed:.2f}s"
    if proj.explained_variance:
        caption += f" · explained variance: PC1 {proj.explained_variance[0]:.1%}, PC2 {proj.explained_variance[1]:.1%}"
    st.caption(caption + " · drag to select points.")
    brush = alt.selection_interval(name="brush")
    if color_field == "outcome":
        scale = alt.Scale(domain=["correct", "wrong", "n/a"], range=["#4c78a8", "#e45756", "#bbbbbb"])
    else:
        scale = alt.Scale(scheme="tableau10")
    chart = (
        alt.Chart(df)
        .mark_circle(size=28, opacity=0.75)
        .encode(
            x=alt.X("x:Q", title=None),
            y=alt.Y("y:Q", title=None),
            color=alt.Color(f"{color_field}:N", scale=scale),
            tooltip=tooltip,
        )
        .add_params(brush)
        .properties(height=520)
    )
    event = st.altair_chart(chart, on_select="rerun", key="fs_chart", width="stretch")

    sel = event.selection.get("brush", {}) if event is not None else {}
    if sel and "x" in sel and "y" in sel:
        (x0, x1), (y0, y1) = sel["x"], sel["y"]
        picked = df[(df.x >= x0) & (df.x <= x1) & (df.y >= y0) & (df.y <= y1)]
        st.subheader(f"Selected: {len(picked):,} images" + (" (first 60 shown)" if len(picked) > 60 else ""))
        images = ds.images(split)
        show = picked.head(60)
        caps = [
            f"#{r.index} {md_escape(r.label)}" + (f" → {md_escape(r.predicted)}" if run_matches else "")
            for r in show.itertuples()
        ]
        widgets.image_grid([images[int(i)] for i in show["index"]], caps, columns=10, side=72)
        if len(picked):
            st.bar_chart(picked["label"].value_counts(), horizontal=True, height=200)

    st.subheader("Nearest neighbours (cosine)")
    state.bind("fs_query", int(result.indices[0]), int)
    q1, q2 = st.columns([1, 3])
    query = q1.number_input("Image index in this split", 0, int(ds.size(split)) - 1, key="fs_query")
    k = q1.slider("k", 4, 24, 8)
    state.publish("fs_query")
    pos = np.flatnonzero(result.indices == query)
    if not len(pos):
        q2.info("That image is outside the cached subset.")
    else:
        from lib.analysis.projections import nearest_neighbours

        nbrs, sims = nearest_neighbours(result.features, int(pos[0]), int(k))
        if result.basis is not None:
            q1.caption("Approximate: by this demo's reduced features (the map's neighbours below the map are exact).")
        images = ds.images(split)
        with q2:
            widgets.image_grid(
                [images[query]], [f"query #{query} {md_escape(ds.classes[result.labels[pos[0]]])}"], columns=1, side=96
            )
            captions = [
                f"#{result.indices[r]} {md_escape(ds.classes[result.labels[r]])} ({s:.2f})" for r, s in zip(nbrs, sims)
            ]
            widgets.image_grid([images[int(result.indices[r])] for r in nbrs], captions, columns=8, side=72)
