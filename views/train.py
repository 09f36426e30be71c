"""Train or load: pick a backbone, size and head, train (with live curves), and manage all runs."""

import streamlit as st

from lib.data.excludes import saved_exclude_lists
from lib.errors import UserFacingError
from lib.jobs.commands import train_job
from lib.runs.registry import list_runs
from ui import jobs, state, widgets
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
    if choice.finetune is not None and ray_options is not None:
        st.info(
            "Fine-tuning trains from the images in its own process; the Ray engine applies to feature extraction only."
        )
    spec = train_job(
        choice.request, choice.finetune, choice.label, choice.exclude_file, ray_options, choice.relabel_file
    )
    if jobs.start(settings, spec):
        state.update(
            backbone=choice.request.backbone, image_size=(choice.request.image_sizes or (settings.image_size,))[0]
        )
        st.rerun()
finetune = _train_form.finetune_section(settings)
if finetune is not None and jobs.start(settings, finetune):
    st.rerun()
jobs.live(settings, ("train",))

runs = list_runs(settings.layout)
_train_result.last_result(runs)
st.subheader("All runs")
_train_runs.runs_section(settings, runs)
_train_runs.damaged_section(settings)
