"""Home: what the app does, and the status of every artifact, with a button to prepare what is missing."""

import pandas as pd
import streamlit as st

from lib.analysis.inventory import dataset_features, missing_feature_splits, settled_runtime
from lib.config import BLOG_ACCURACY
from lib.errors import UserFacingError
from lib.jobs.commands import extract_job
from lib.runs.registry import list_runs
from lib.runtimes import entry_default
from ui import cached, demo, jobs, state, widgets
from ui.text import md_escape, show_error

settings = state.current()
st.title("Transfer learning explorer")
st.markdown(
    f"""
Turn images into **bottleneck features** with a pretrained TF Hub backbone, train a small **classifier head** on them in
seconds, and see what happened. It reproduces a published experiment (MobileNet v1 at 128x128 plus one softmax layer:
**{BLOG_ACCURACY:.2%}** on CIFAR-10), then beats it.

- **Browse data**: the images, the class balance, and what the active run predicts for each.
- **Train or load**: extract features (cached on disk), train a linear or MLP head, compare runs, download a model.
- **Feature space**: PCA and t-SNE of the features; select points to see their images; nearest neighbours.
- **Evaluate**: confusion matrix, per-class metrics, calibration, the most confident mistakes, and your own images.
- **Data quality**: likely label errors and near-duplicate images, found from the features; mark images to leave out of
  training.
- **Speed vs accuracy**: every backbone, input size and runtime measured; the most accurate one within your latency
  budget.
"""
)

st.subheader("Artifacts")
ds = cached.dataset_if_ready(settings.source, settings.layout)
try:
    spec = cached.backbone_spec(settings.backbone)
except UserFacingError as err:
    spec = None
    show_error(err)
    st.info(widgets.OFFLINE_HELP)
runs = list_runs(settings.layout)
feature_rows = dataset_features(settings.layout, ds, view=None) if ds is not None else []
splits = list(ds.splits) if ds else ["train", "test"]
# The default runtime (auto: the faster exact one here, timed inside the job), as the CLI and the Train page use it
runtime = (
    settled_runtime(settings.layout, ds, spec, settings.image_size, entry_default())
    if ds is not None and spec is not None
    else entry_default()
)
missing = (
    missing_feature_splits(settings.layout, ds, spec, settings.image_size, runtime)
    if ds is not None and spec is not None
    else splits
)

c1, c2, c3 = st.columns(3)
c1.metric("Dataset", "cached" if ds else "not prepared", help=md_escape(settings.source))
c2.metric(
    f"Features @ {settings.image_size}px",
    f"{len(splits) - len(missing)}/{len(splits)} splits",
    help=md_escape(settings.backbone),
)
c3.metric("Runs", len(runs))

if feature_rows:
    table = pd.DataFrame(
        [
            {
                "backbone": m.backbone.split("/")[-1],
                "size": m.image_size,
                "split": m.split,
                "view": m.view,
                "runtime": m.runtime_name,
                "images": m.shape[0],
                "dim": m.shape[1],
                "limit": m.limit,
            }
            for m in feature_rows
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")

jobs.live(settings, ("extract",))
if ds is None or missing:
    label = "Prepare dataset and features" if ds is None else f"Extract missing features ({', '.join(missing)})"
    demo.note()
    ray_options = widgets.extraction_engine("home")
    if st.button(label, type="primary", **demo.off("Preparing data", disabled=spec is None, help=demo.BACKGROUND)):
        if jobs.start(
            settings, extract_job(settings.source, settings.backbone, settings.image_size, runtime, ray=ray_options)
        ):
            st.rerun()
    if ds is None and jobs.last_failed(settings, "extract"):
        st.info(widgets.OFFLINE_HELP)
else:
    st.success("Everything for the active data source, backbone and size is cached. Train a head on **Train or load**.")
