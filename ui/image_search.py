"""Search by image: upload one, and see its nearest neighbours in every split (cosine on the same backbone's features
as the page) and where it falls on the stored map of every image. Used by Browse and Feature space.

    image_search.upload_search(settings, ds, feature_set, key="b_search")
"""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from lib.config import ORIGINAL
from lib.data.decode import resize_square
from lib.data.images import upscale
from lib.errors import UserFacingError
from ui import cached, charts, demo, state, widgets
from ui.text import md_escape, show_error

MAP_SAMPLE = 4000  # background points drawn around the upload
REDUCED_NOTE = (
    " This demo carries reduced features: the nearest by them are re-ranked by the real features of those images, "
    "computed now from the stored images."
)


def upload_search(settings: state.Settings, ds: Any, fs: Any, key: str, k: int = 12) -> None:
    """An uploader; the upload's neighbours among ``fs``'s features (a :class:`lib.analysis.inventory.FeatureSet` of
    whole splits) and its place on a stored map of those features."""
    from lib.analysis.map_view import place_among
    from lib.pipeline.reduced import nearest_search

    if (
        demo.active()
    ):  # the demo has no TensorFlow: the backbone runs as its float LiteRT model, if the bundle brought one
        try:
            cached.lite_backbone_ready(settings.layout, settings.source, fs.backbone, fs.image_size)
        except UserFacingError as err:
            st.info(f"Search by image is off here: {err}")
            return
    got = widgets.uploaded_image("Search by image", key)
    if got is None:
        return
    name, img = got
    splits = [s for s in ds.splits]
    feats = {
        s: cached.features(
            settings.source, settings.layout, fs.backbone, fs.image_size, s, ORIGINAL, fs.limit, fs.runtime
        )
        for s in splits
    }
    have = {s: f for s, f in feats.items() if f is not None}
    if not have:
        st.info("These features are not in the cache: extract them (Home, or train a run) to search by image.")
        return
    small = resize_square(img, ds.image_shape[0])  # as the dataset's images were stored, then resized by the backbone
    try:
        model = (
            cached.lite_backbone(settings.layout, settings.source, fs.backbone, fs.image_size)
            if demo.active()
            else cached.loaded_backbone(fs.backbone, settings.layout)
        )
        vector = model.embed(small[None], fs.image_size)[0]
        hits, _exact = nearest_search(
            have,
            vector,
            k,
            norms={s: cached.feature_norms(str(f.path)) for s, f in have.items()},
            embed=lambda images: model.embed(images, fs.image_size),
            images={s: ds.images(s) for s in have},
        )
    except (UserFacingError, ValueError) as err:
        show_error(err)
        return
    # Cached features of a --limit subset hold rows, not dataset indices: map rows back to image indices.
    found = [(s, int(have[s].indices[r]), sim) for s, r, sim in hits]
    a, b = st.columns([1, 4])
    a.image(
        upscale(small, 128), width=128, caption=f"{md_escape(name, 60)} ({small.shape[0]}x{small.shape[1]}, as stored)"
    )
    with b:
        st.caption(
            f"Nearest {len(found)} images in {', '.join(have)} by cosine similarity of {md_escape(fs.label())} "
            "features." + (REDUCED_NOTE if any(f.basis is not None for f in have.values()) else "")
        )
        given = {s: ds.labels(s) for s in have}
        widgets.image_grid(
            [ds.images(s)[i] for s, i, _ in found],
            [f"{s} #{i} {md_escape(ds.classes[int(given[s][i])])} ({sim:.2f})" for s, i, sim in found],
            columns=6,
            side=72,
        )
    _on_map(settings, ds, fs, found, place_among)


def _on_map(settings: state.Settings, ds: Any, fs: Any, found: list[tuple[str, int, float]], place_among: Any) -> None:
    """The upload's place on the stored t-SNE (else PCA) map of these features, among a sample of every image."""
    stored = None
    if fs.limit is None:
        for method in ("tsne", "pca"):
            stored = cached.full_map(
                settings.source, settings.layout, fs.backbone, fs.image_size, method, fs.runtime, 30.0, 500
            )
            if stored is not None:
                break
    if stored is None:
        st.caption("Compute the map of every image on Feature space to see where this image falls on it.")
        return
    where = place_among(stored.coords, found)
    if where is None:
        return
    rng = np.random.default_rng(0)
    frames = []
    for s, xy in stored.coords.items():
        take = rng.choice(len(xy), min(len(xy), MAP_SAMPLE // len(stored.coords)), replace=False)
        frames.append(
            pd.DataFrame(
                {"x": xy[take, 0], "y": xy[take, 1], "label": [ds.classes[int(c)] for c in ds.labels(s)[take]]}
            )
        )
    back = pd.concat(frames)
    near = pd.DataFrame(
        [{"x": stored.coords[s][i][0], "y": stored.coords[s][i][1], "what": "neighbour"} for s, i, _ in found]
    )
    pin = pd.DataFrame({"x": [float(where[0])], "y": [float(where[1])], "what": ["your image"]})

    def chart() -> Any:
        base = (
            alt.Chart(back)
            .mark_circle(size=10, opacity=0.35)
            .encode(x=alt.X("x:Q", title=None), y=alt.Y("y:Q", title=None), color=alt.Color("label:N", title="class"))
        )
        ring = alt.Chart(near).mark_point(size=60, color="black", filled=False).encode(x="x:Q", y="y:Q")
        star = (
            alt.Chart(pin)
            .mark_point(shape="diamond", size=260, color="black", filled=True)
            .encode(x="x:Q", y="y:Q", tooltip=["what"])
        )
        return (base + ring + star).properties(height=340)

    charts.altair("upload-on-map", [back, near, pin], (stored.key,), chart, width="stretch")
    st.caption(
        f"On the stored {stored.method} map of every image ({MAP_SAMPLE:,} points shown): the diamond is your image, "
        "placed at the similarity-weighted mean of its neighbours (rings), since a map is not refitted for one "
        "image."
    )
