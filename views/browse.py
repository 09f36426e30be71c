"""Browse: a paged grid of images with split/class filters, shuffling, jump-to-index, class balance,
and the active run's prediction for the selected image."""

import numpy as np
import streamlit as st

from ui import cached, fixes, image_search, state, widgets
from ui.text import md_escape
from views import _browse_sections

settings = state.current()
st.title("Browse data")
ds = widgets.require_dataset(settings)
run = widgets.active_run(settings)

state.bind("b_split", "test" if "test" in ds.splits else ds.splits[0], valid=ds.splits)
state.bind_list("b_classes", [], list(ds.classes))
state.bind("b_shuffle", False, lambda v: v == "True")
state.bind("b_seed", 0, int, state.in_range(0, 10_000))
state.bind("b_page", 1, int, state.in_range(1, 10**9))
state.bind("b_sel", 0, int, state.in_range(0, 10**9))

c1, c2, c3, c4 = st.columns([1, 3, 1, 1])
split = c1.selectbox("Split", ds.splits, key="b_split")
chosen = c2.multiselect("Classes (none = all)", ds.classes, key="b_classes")
shuffle = c3.toggle("Shuffle", key="b_shuffle")
seed = c4.number_input("Seed", 0, 10_000, key="b_seed", disabled=not shuffle)

labels = ds.labels(split)
keep = np.flatnonzero(np.isin(labels, [ds.classes.index(c) for c in chosen])) if chosen else np.arange(len(labels))
if shuffle:
    keep = np.random.default_rng(int(seed)).permutation(keep)
per_page = 48
pages = max(1, -(-len(keep) // per_page))


def jump_to() -> None:
    """Open the page that holds the typed index and select that image (only when the index changes)."""
    target = int(st.session_state["b_jump"])
    where = np.flatnonzero(keep == target)
    if len(where):
        st.session_state["b_page"] = int(where[0] // per_page) + 1
        st.session_state["b_sel"] = target
        st.session_state.pop("b_jump_miss", None)
    else:
        st.session_state["b_jump_miss"] = target


j1, j2, j3 = st.columns([1, 1, 2])
j2.number_input(
    "Jump to image index",
    0,
    len(labels) - 1,
    None,
    key="b_jump",
    on_change=jump_to,
    placeholder="index",
    help="Opens the page holding that image and selects it.",
)
if st.session_state.get("b_jump_miss") is not None:
    j3.warning(f"Image {st.session_state['b_jump_miss']} is not in the current filter.")
st.session_state["b_page"] = min(max(1, st.session_state["b_page"]), pages)
page = j1.number_input(f"Page (of {pages})", 1, pages, key="b_page")
state.publish("b_split", "b_classes", "b_shuffle", "b_seed", "b_page", "b_sel")

rows = keep[(page - 1) * per_page : page * per_page]
images = ds.images(split)
st.caption(f"{len(keep):,} images match; showing {len(rows)} on page {page}.")
widgets.image_grid(
    [images[i] for i in rows], [f"#{i} {md_escape(ds.classes[labels[i]])}" for i in rows], columns=12, side=64
)
fixes.fix_form(settings, ds, [(split, int(i)) for i in rows], "b_fix")

left, right = st.columns([1, 1])
with left:
    _browse_sections.selected_image(ds, run, split, rows, labels, images)
with right:
    _browse_sections.class_balance(ds)

with st.expander("Search by image: upload one, find its nearest images in every split", icon=":material/image_search:"):
    from lib.analysis.inventory import feature_sets, preferred_feature_set

    handle = cached.backbone_spec(settings.backbone).handle if settings.backbone else ""
    fs = preferred_feature_set(
        feature_sets(settings.layout, ds), run.manifest if run else None, handle, settings.image_size
    )
    if fs is None:
        st.info("No features of this dataset are cached yet: extract them on Home (or train a run) to search by image.")
    else:
        image_search.upload_search(settings, ds, fs, key="b_search")
