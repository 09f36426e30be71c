"""The Feature space page's map of every image (train + test): compute once, then explore.

Computing is a button (a stored artifact, never on page load); drawing is the canvas component of
ui/scatter_map.py; a box or lasso selection becomes an image grid, a click a nearest-neighbour query.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from lib.analysis.map_view import COLOUR_MODES, colour_points, map_clusters, points_in_polygon, selection_mask
from lib.config import ORIGINAL
from lib.errors import UserFacingError
from lib.jobs.commands import map_job
from ui import cached, demo, fixes, jobs, state, widgets
from ui.scatter_map import THUMBS_ROOT, map_payload, scatter_map
from ui.text import md_escape, show_error

GRID_MAX = 80


def draw(settings: state.Settings, ds: Any, run: Any, combo: tuple) -> None:
    """The whole-dataset map of the features ``combo`` (backbone, size, limit=None, runtime)."""
    backbone, size, _limit, runtime = combo
    # Open on a map that is stored: t-SNE if there is one (default settings), else PCA if there is one.
    stored = {
        m: cached.full_map(settings.source, settings.layout, backbone, size, key, runtime, 30.0, 500) is not None
        for m, key in (("t-SNE", "tsne"), ("PCA", "pca"))
    }
    state.bind("fm_method", "PCA" if stored["PCA"] and not stored["t-SNE"] else "t-SNE", valid=["PCA", "t-SNE"])
    state.bind("fm_perp", 30, int, state.in_range(5, 100))
    state.bind("fm_iter", 500, int, lambda v: 250 <= v <= 2000 and v % 250 == 0)
    state.bind("fm_color", "true label", valid=COLOUR_MODES)
    state.bind("fm_show", "all", valid=["all", *ds.splits])

    c1, c2, c3, c4 = st.columns([1.2, 1, 1, 1.6])
    method = c1.radio(
        "Projection",
        ["PCA", "t-SNE"],
        key="fm_method",
        horizontal=True,
        help="Both are fitted on the training images; test images are placed with the fitted model.",
    )
    perplexity = c2.slider("Perplexity", 5, 100, key="fm_perp", disabled=method == "PCA" or demo.active())
    iterations = c3.slider(
        "t-SNE iterations", 250, 2000, key="fm_iter", step=250, disabled=method == "PCA" or demo.active()
    )
    try:
        found = cached.full_map(
            settings.source,
            settings.layout,
            backbone,
            size,
            "tsne" if method == "t-SNE" else "pca",
            runtime,
            float(perplexity),
            int(iterations),
        )
    except UserFacingError as err:
        show_error(err)
        return
    total = sum(ds.size(s) for s in ds.splits)
    jobs.live(settings, ("project",))
    if found is None:
        cost = "a few seconds" if method == "PCA" else "about 2 minutes for 60,000 images on 2 cores"
        st.info(
            f"No {method} map of all {total:,} images with these features and settings yet. Computing it takes {cost} "
            "(features are extracted first where missing); it is stored, so this happens once. The same as "
            f"`python -m lib project --method {'tsne' if method == 't-SNE' else 'pca'}`."
        )
        demo.note()
        if st.button(
            f"Compute the {method} map",
            type="primary",
            key="fm_compute",
            **demo.off("Computing a map", help=demo.BACKGROUND),
        ):
            spec = map_job(
                settings.source,
                backbone,
                size,
                runtime,
                "tsne" if method == "t-SNE" else "pca",
                float(perplexity),
                int(iterations),
                thumbs=THUMBS_ROOT,  # the hover thumbnails too, in the job: never made while the page waits
            )
            if jobs.start(settings, spec):
                st.rerun()
        return

    splits = [(s, len(found.coords[s])) for s in found.coords]
    coords = np.concatenate([found.coords[s] for s, _n in splits])
    labels = cached.memo(
        ("labels", ds.fingerprint, tuple(splits)), lambda: np.concatenate([ds.labels(s) for s, _n in splits])
    )
    run_ok = run is not None and run.manifest.dataset_fingerprint == ds.fingerprint
    preds_by_split = (
        cached.run_predictions(settings.source, settings.layout, run.run_id, tuple(s for s, _n in splits))
        if run_ok
        else None
    )
    preds = np.concatenate([preds_by_split[s] for s, _n in splits]) if preds_by_split else np.full(len(labels), -1)
    scores = cached.audit_scores(settings.source, settings.layout, backbone, size, runtime)
    options = [
        m
        for m in COLOUR_MODES
        if (m not in ("predicted label", "correct vs wrong") or run_ok)
        and (m != "label-issue score" or scores is not None)
    ]
    if st.session_state["fm_color"] not in options:
        st.session_state["fm_color"] = "true label"
    colour_by = c4.selectbox(
        "Colour by",
        options,
        key="fm_color",
        help="Predictions are the active run's (on training images: in-sample, from its head on their cached "
        "features); the label-issue score comes from the Data quality audit of these features.",
    )
    show = st.radio("Show", ["all", *(s for s, _n in splits)], key="fm_show", horizontal=True)
    state.publish("fm_method", "fm_perp", "fm_iter", "fm_color", "fm_show")
    split_of = np.concatenate([np.full(n, k) for k, (_s, n) in enumerate(splits)])
    shown = np.ones(len(labels), bool) if show == "all" else split_of == [s for s, _n in splits].index(show)
    sprites = cached.sprites(settings.source, settings.layout)
    if sprites is None:
        st.caption("Hover thumbnails are off: the app's static/thumbs folder is not writable.")

    def build() -> dict[str, Any]:
        score_all = np.concatenate([scores[s] for s, _n in splits]) if scores is not None else None
        colours = colour_points(colour_by, list(ds.classes), labels, preds, splits, score_all)
        clusters = cached.memo(("map-clusters", found.key), lambda: map_clusters(coords, labels, list(ds.classes)))
        return map_payload(
            coords,
            labels,
            colours,
            preds,
            score_all,
            shown,
            splits,
            list(ds.classes),
            sprites,
            view_key=found.key,
            clusters=clusters,
        )

    st.caption(
        f"{method} of all {len(labels):,} images in {found.seconds:.0f}s (stored) · wheel to zoom, drag to pan, Box "
        "or Lasso to select, hover for the image, click a point for its nearest neighbours · double-click resets "
        "the view · Density darkens where points overlap · Cluster labels name each group by its majority class "
        "and the share of its images that have it."
    )
    # Every visitor of the same map and colouring gets the same payload: built once, not per rerun.
    memo_key = (
        found.key,
        colour_by,
        show,
        run.run_id if run_ok else "",
        scores is not None,
        sprites.folder.name if sprites else "",
    )
    result = scatter_map(cached.memo(memo_key, build), key="fm_map")

    clicked = getattr(result, "clicked", None)
    if isinstance(clicked, dict) and clicked.get("split") in ds.splits and isinstance(clicked.get("index"), int):
        st.session_state["fm_q_split"], st.session_state["fm_q_index"] = (
            clicked["split"],
            min(max(clicked["index"], 0), ds.size(clicked["split"]) - 1),
        )
    _selection(settings, getattr(result, "selection", None), coords, shown, splits, labels, preds, ds)
    _neighbours(settings, ds, combo, [s for s, _n in splits])


def _selection(
    settings: state.Settings,
    sel: Any,
    coords: np.ndarray,
    shown: np.ndarray,
    splits: list[tuple[str, int]],
    labels: np.ndarray,
    preds: np.ndarray,
    ds: Any,
) -> None:
    if not isinstance(sel, dict) or not isinstance(sel.get("points"), list):
        st.caption("Select points with Box or Lasso to see their images here.")
        return
    try:
        # The browser sends what it highlighted (one bit per point), so both sides agree to the point;
        # the polygon is the fallback (and what a shared selection would carry).
        inside = selection_mask(sel, len(coords))
        if inside is None:
            inside = points_in_polygon(coords, [tuple(map(float, p))[:2] for p in sel["points"][:5000]])
        inside &= shown
    except (ValueError, TypeError):
        st.caption("That selection could not be read; draw it again.")
        return
    rows = np.flatnonzero(inside)
    starts = np.cumsum([0] + [n for _s, n in splits])
    part = np.searchsorted(starts, rows, side="right") - 1
    names = np.asarray([s for s, _n in splits], dtype=object)
    where = list(zip(names[part].tolist(), (rows - starts[part]).tolist()))
    st.subheader(
        f"Selected: {len(rows):,} images" + (f" ({GRID_MAX} of them at random)" if len(rows) > GRID_MAX else "")
    )
    if not len(rows):
        return
    classes = list(ds.classes)
    table = pd.DataFrame(
        {
            "split": [s for s, _i in where],
            "index": [i for _s, i in where],
            "label": np.asarray(classes, dtype=object)[labels[rows]],
            "predicted": np.asarray([*classes, ""], dtype=object)[np.where(preds[rows] >= 0, preds[rows], -1)],
        }
    )
    # Datasets are often stored class by class: the first N would all be one class, so show a seeded sample.
    pick = (
        np.sort(np.random.default_rng(0).choice(len(rows), GRID_MAX, replace=False))
        if len(rows) > GRID_MAX
        else np.arange(len(rows))
    )
    shown_rows = table.iloc[pick]
    caps = [
        f"{s} #{i} {md_escape(lab)}" + (f" → {md_escape(p)}" if p else "")
        for s, i, lab, p in shown_rows.itertuples(index=False)
    ]
    widgets.image_grid(
        [ds.images(s)[i] for s, i in zip(shown_rows["split"], shown_rows["index"])], caps, columns=10, side=72
    )
    a, b = st.columns([2, 1])
    a.bar_chart(table["label"].value_counts(), horizontal=True, height=300)
    b.dataframe(table.groupby("split").size().rename("images"), width="stretch")
    widgets.csv_download(b, "Download the selection (CSV)", table, "selection.csv", key="fm_sel_csv")
    shown_at = [(str(sp), int(i)) for sp, i in zip(shown_rows["split"], shown_rows["index"])]
    fixes.fix_form(
        settings,
        ds,
        shown_at,
        "fm_fix",
        {w: int(preds[rows[k]]) for k, w in zip(pick, shown_at) if preds[rows[k]] >= 0},
    )
    with st.expander(f"Export these {len(rows):,} images as a dataset", icon=":material/download:"):
        from views._quality_fixes import export_section

        export_section(settings, ds, fixes.list_name(), selection=table[["split", "index"]], key="fm_xd")


def _neighbours(settings: state.Settings, ds: Any, combo: tuple, splits: list[str]) -> None:
    from lib.pipeline.reduced import nearest_search
    from ui.image_search import REDUCED_NOTE

    backbone, size, _limit, runtime = combo
    st.subheader("Nearest neighbours (cosine, all splits)")
    state.bind("fm_q_split", "test" if "test" in splits else splits[0], valid=splits)
    state.bind("fm_q_index", 0, int, state.in_range(0, 10**9))
    q1, q2 = st.columns([1, 3])
    split = q1.selectbox("Query split", splits, key="fm_q_split")
    st.session_state["fm_q_index"] = min(int(st.session_state["fm_q_index"]), ds.size(split) - 1)
    index = q1.number_input(
        "Query image index", 0, ds.size(split) - 1, key="fm_q_index", help="Or click a point on the map."
    )
    k = q1.slider("k", 4, 24, 8, key="fm_k")
    state.publish("fm_q_split", "fm_q_index")
    feats = {
        s: cached.features(settings.source, settings.layout, backbone, size, s, ORIGINAL, None, runtime) for s in splits
    }
    if any(f is None for f in feats.values()):
        q2.info("These features are no longer all in the cache.")
        return
    have = {s: f for s, f in feats.items() if f is not None}
    reduced = any(f.basis is not None for f in have.values())
    embed = cached.embedder(settings.source, settings.layout, backbone, size) if reduced else None
    hits, _exact = cached.memo(
        (
            "neighbours",
            settings.layout,
            backbone,
            size,
            runtime,
            split,
            int(index),
            int(k),
        ),  # one search per query per server
        lambda: nearest_search(
            have,
            None,
            int(k),
            skip=(split, int(index)),
            embed=embed,
            images={s: ds.images(s) for s in have},
            norms={s: cached.feature_norms(str(f.path)) for s, f in have.items()},
        ),
    )
    if reduced:
        q2.caption(
            REDUCED_NOTE
            if embed is not None
            else "Approximate: this demo carries reduced features and no model to re-rank them."
        )
    labels = {s: f.labels for s, f in feats.items() if f is not None}
    with q2:
        widgets.image_grid(
            [ds.images(split)[int(index)]],
            [f"query {split} #{index} {md_escape(ds.classes[labels[split][int(index)]])}"],
            columns=1,
            side=96,
        )
        widgets.image_grid(
            [ds.images(s)[i] for s, i, _sim in hits],
            [f"{s} #{i} {md_escape(ds.classes[labels[s][i]])} ({sim:.2f})" for s, i, sim in hits],
            columns=8,
            side=72,
        )
