"""Drawing helpers shared by pages: the sidebar, image grids, and "prepare this first" guards.

settings = sidebar(state.init())
ds = require_dataset(settings)        # draws a prepare button and stops if not ready
image_grid(images, captions, columns=8)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st

from lib.bounds import widget
from lib.data.sources import Dataset
from lib.errors import UserFacingError
from lib.models.specs import REGISTRY
from lib.runs.registry import Run, list_runs
from ui import cached, demo, state
from ui.text import md_escape, show_error, show_warning

OFFLINE_HELP = (
    "No network here? Point the app at local copies: a `cifar-10-python.tar.gz`, its `cifar-10-batches-py/` folder "
    "or an image-folder dataset (e.g. `../shared/data/cifar10-jpeg.tar.gz`) as the data source, and a SavedModel "
    "folder or `.tflite` file (e.g. `../shared/models/mobilenet_v1_100_224_feature_vector`) as the backbone. Type "
    "them under **Change data / backbone** in the sidebar, or start with `streamlit run app.py -- --source PATH "
    "--backbone PATH`."
)


def sidebar(settings: state.Settings) -> state.Settings:
    """Show the active source, backbone, size and run on every page, with controls to change them."""
    sb = st.sidebar
    sb.markdown(
        f"**Data:** {md_escape(_short(settings.source))}  \n**Backbone:** {md_escape(_short(settings.backbone))} @ "
        f"{settings.image_size}px"
    )
    if demo.active():
        sb.caption(":material/lock: A read-only demo: the data and backbone are the ones it was started with.")
    else:
        _settings_form(sb, settings)
    return _active_run_picker(sb, settings)


def _settings_form(sb: Any, settings: state.Settings) -> None:
    with sb.expander("Change data / backbone"), st.form("settings_form", border=False):
        source = st.text_input("Data source", settings.source, help="'cifar10' or a local path")
        names = list(REGISTRY)
        custom = settings.backbone not in REGISTRY
        choice = st.selectbox(
            "Backbone", ["(custom handle or path)", *names], index=0 if custom else names.index(settings.backbone) + 1
        )
        typed = st.text_input("Custom handle or path", settings.backbone if custom else "")
        size = st.number_input("Input size (px)", value=settings.image_size, step=32, **widget("image_size"))
        if st.form_submit_button("Apply"):
            backbone = typed.strip() if choice.startswith("(") else choice
            if backbone:
                state.update(source=source.strip(), backbone=backbone, image_size=int(size))
                st.rerun()


def _active_run_picker(sb: Any, settings: state.Settings) -> state.Settings:
    runs = list_runs(settings.layout)
    ids = [""] + [m.run_id for m in runs]
    labels = {"": "(no active run)"} | {m.run_id: m.display_name() for m in runs}
    if settings.run_id and settings.run_id not in ids:
        ids.append(settings.run_id)
        labels[settings.run_id] = f"{settings.run_id} (missing)"
    st.session_state["sidebar_run"] = settings.run_id
    sb.selectbox(
        "Active run", ids, format_func=lambda r: labels.get(r, r), key="sidebar_run", on_change=_sidebar_run_changed
    )
    return state.current()


def _sidebar_run_changed() -> None:
    state.update(run_id=st.session_state["sidebar_run"])


def extraction_engine(key: str) -> Any:
    """An "Extraction engine" expander: this process (default) or Ray workers. Returns the
    :class:`lib.pipeline.ray_connect.RayOptions` when Ray is chosen, else None. Ray is not imported here."""
    import importlib.util

    from lib.pipeline.ray_connect import INSTALL_HINT, RayOptions

    have_ray = importlib.util.find_spec("ray") is not None
    with st.expander("Extraction engine", icon=":material/hub:"):
        control = {
            "help": "Ray runs the backbone in worker processes, on this machine or on a cluster; "
            "the features and their cache keys are the same either way.",
            **demo.off("Ray extraction", disabled=not have_ray),
        }
        choice = st.radio(
            "Extract features with", ["This process", "Ray"], key=f"{key}_engine", horizontal=True, **control
        )
        if not have_ray:
            st.caption(INSTALL_HINT + ".")
        if choice != "Ray":
            return None
        address = st.text_input(
            "Ray cluster address",
            key=f"{key}_ray_address",
            max_chars=200,
            placeholder="blank: start Ray on this machine; HOST:PORT joins a cluster",
        )
        workers = st.number_input(
            "Workers",
            **widget("workers"),
            value=2,
            key=f"{key}_ray_workers",
            help="Ray actors, each loading the backbone once and reserving one CPU",
        )
        try:
            return RayOptions(address=address.strip() or None, workers=int(workers))
        except UserFacingError as err:
            show_error(f"{err} Until it is fixed, features are extracted in this process.")
            return None


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def require_dataset(settings: state.Settings) -> Dataset:
    """The active dataset, or a prepare button (and ``st.stop()``) when it is not converted yet."""
    ds = cached.dataset_if_ready(settings.source, settings.layout)
    if ds is not None:
        return ds
    from lib.jobs.commands import data_job
    from ui import jobs

    st.warning(f"The data source {md_escape(settings.source)} is not prepared yet.")
    jobs.live(settings, ("data", "extract"))
    if st.button(
        "Prepare dataset",
        type="primary",
        key="prepare_dataset_btn",
        **demo.off("Preparing a dataset", help=demo.BACKGROUND),
    ):
        if jobs.start(settings, data_job(settings.source)):
            st.rerun()
    st.caption(OFFLINE_HELP)
    st.stop()
    raise AssertionError("unreachable")


def active_run(settings: state.Settings) -> Run | None:
    """The active run, or None (with a warning if it cannot be loaded)."""
    if not settings.run_id:
        return None
    try:
        return cached.run(settings.layout, settings.run_id)
    except UserFacingError as err:
        show_warning(err)
        return None


def image_grid(
    images: Sequence[np.ndarray] | np.ndarray, captions: Sequence[str], columns: int = 8, side: int = 96
) -> None:
    """A grid of small images, upscaled without blur so 32x32 pixels stay readable (each encoded once per server)."""
    if len(images) == 0:
        st.caption("No images to show.")
        return
    for start in range(0, len(images), columns):
        cols = st.columns(columns)
        for col, img, cap in zip(cols, images[start : start + columns], captions[start : start + columns]):
            pixels = np.ascontiguousarray(img, np.uint8)
            col.image(cached.png(pixels.tobytes(), pixels.shape, side), caption=cap, width=side)


def top5(container: Any, probs: np.ndarray, classes: Sequence[str]) -> None:
    """A table of the five most probable classes, with probability bars."""
    import pandas as pd

    order = np.argsort(-probs)[:5]
    table = pd.DataFrame({"class": [classes[i] for i in order], "probability": [float(probs[i]) for i in order]})
    container.dataframe(
        table,
        hide_index=True,
        column_config={"probability": st.column_config.ProgressColumn(format="%.3f", min_value=0.0, max_value=1.0)},
    )


def csv_download(container: Any, label: str, table: Any, file_name: str, key: str) -> None:
    """A download button for ``table`` as CSV that a spreadsheet cannot run: cells that start a formula are
    neutralised (:func:`lib.safe_text.to_csv`). The tables' own CSV export is off (``client.disableDataExport``), so
    this is the one way a table leaves the app."""
    from lib.safe_text import to_csv

    container.download_button(label, to_csv(table).encode(), file_name, "text/csv", key=key)


def uploaded_image(what: str, key: str) -> tuple[str, np.ndarray] | None:
    """An uploader for one image: its name and decoded pixels, or None (nothing uploaded, or not an image: then a
    clear one-line error is shown, never a traceback)."""
    from lib.data.images import MAX_UPLOAD_BYTES, decode_upload

    up = st.file_uploader(f"{what}: a JPEG or PNG (up to {MAX_UPLOAD_BYTES // 2**20} MB)", key=key)
    if up is None:
        return None
    try:
        return up.name, decode_upload(up.getvalue())
    except UserFacingError as err:
        show_error(f"{up.name[:80]}: {err}")
        return None
