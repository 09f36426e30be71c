"""Feature space: a map of every image (PCA or t-SNE of train + test, stored once; hover, box/lasso, click for
neighbours), or a quick PCA/t-SNE of a sample of one split (any cached features, Altair); cosine nearest neighbours."""

import streamlit as st

from lib.analysis.inventory import feature_sets, preferred_feature_set
from ui import cached, image_search, state, widgets
from views import _feature_space_sample

settings = state.current()
st.title("Feature space: PCA and t-SNE")
ds = widgets.require_dataset(settings)
run = widgets.active_run(settings)

combos = feature_sets(settings.layout, ds)
if not combos:
    st.info("No features are cached for this dataset yet. Extract them on **Home** or by training a run.")
    st.stop()
spec_handle = cached.backbone_spec(settings.backbone).handle if settings.backbone else ""
preferred = preferred_feature_set(combos, run.manifest if run else None, spec_handle, settings.image_size)
state.bind("fs_combo", combos.index(preferred) if preferred else 0, int, state.in_range(0, len(combos) - 1))
st.session_state["fs_combo"] = min(st.session_state["fs_combo"], len(combos) - 1)
_feature_space_sample.bind_url_state()

c1, c2 = st.columns([3, 3])
combo = combos[c1.selectbox("Features", range(len(combos)), key="fs_combo", format_func=lambda i: combos[i].label())]
# The map of every image needs whole splits (not a --limit subset) and a train split to fit on.
modes = (
    ["every image", "sample of one split"] if combo.limit is None and "train" in ds.splits else ["sample of one split"]
)
state.bind("fs_view", modes[0], valid=["every image", "sample of one split"])
if st.session_state["fs_view"] not in modes:
    st.session_state["fs_view"] = modes[0]
mode = c2.radio(
    "Map",
    modes,
    key="fs_view",
    horizontal=True,
    help="Every image: train and test on one stored map (computed once). A sample: a quick map of up to 10,000 "
    "points of one split.",
)
state.publish("fs_combo", "fs_view")
if mode == "every image":
    from views import _feature_space_map

    _feature_space_map.draw(settings, ds, run, combo)
else:
    _feature_space_sample.draw(settings, ds, run, combo)

st.subheader("Search by image")
image_search.upload_search(settings, ds, combo, key="fs_search")
