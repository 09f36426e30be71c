"""Train or load: pick a backbone, size and head, train (with live curves), and manage all runs."""

import streamlit as st

from lib.errors import UserFacingError
from lib.store.excludes import saved_exclude_lists
from lib.store.runs import list_runs
from ui import actions, state, widgets
from ui.text import show_error
from views import _train_form, _train_result, _train_runs

settings = state.current()
st.title("Train or load transfer models")
ds = widgets.require_dataset(settings)
exclude_lists = saved_exclude_lists(settings.layout)
_train_form.seed_defaults(settings, exclude_lists)
_train_form.presets_row(settings)
ray_options = widgets.extraction_engine("train")

if _train_form.form(settings, exclude_lists):
    try:
        choice = _train_form.request_from_form(settings, ds, exclude_lists)
    except UserFacingError as err:
        show_error(err)
        st.stop()
    if choice.finetune is not None:
        if ray_options is not None:
            st.info("Fine-tuning trains from the images in this process; the Ray engine applies to feature extraction only.")
        manifest = actions.finetune_with_status(choice.request, choice.finetune, settings)
    else:
        from lib.pipeline.engines import open_engine

        with open_engine(ray_options, settings.layout) as engine:
            manifest = actions.train_with_status(choice.request, settings, engine)
    if manifest is not None:
        if choice.label:
            from lib.store.runs import set_label

            manifest = set_label(settings.layout, manifest.run_id, choice.label)
        state.update(run_id=manifest.run_id, backbone=choice.request.backbone, image_size=manifest.image_size)
        st.session_state["last_run"] = manifest.run_id
        st.rerun()

runs = list_runs(settings.layout)
_train_result.last_result(runs)
st.subheader("All runs")
_train_runs.runs_section(settings, runs)
_train_runs.damaged_section(settings)
