"""Data quality: likely label errors and near-duplicate images, from the active backbone's features; mark
images to exclude and save the list for training."""

import streamlit as st

from lib.analysis import audit as au
from lib.analysis.inventory import settled_runtime
from lib.errors import UserFacingError
from lib.jobs.commands import audit_job
from lib.runtimes import entry_default
from ui import cached, demo, jobs, state, widgets
from ui.text import md_escape, show_error
from views import _quality_fixes, _quality_tabs

settings = state.current()
st.title("Data quality")
ds = widgets.require_dataset(settings)
run = widgets.active_run(settings)
backbone, size, more = settings.backbone, settings.image_size, ()
try:
    runtime = settled_runtime(settings.layout, ds, cached.backbone_spec(backbone), size, entry_default())
except UserFacingError:
    runtime = entry_default()
if run is not None and not run.manifest.finetuned:
    m = run.manifest
    backbone, size, runtime = m.backbone, m.image_sizes[0], m.runtime
    more = tuple(
        (h, sizes[0]) for h, _identity, sizes in m.backbones()[1:]
    )  # every backbone of the run, each at its first size
parts = " + ".join(f"{b.rstrip('/').split('/')[-1]} at {s}px" for b, s in ((backbone, size), *more))
st.caption(
    f"Features of {md_escape(parts)} ({runtime}; original and mirrored images) on every image of "
    f"{md_escape(settings.source)}"
    + (f", the backbones of the active run {md_escape(run.manifest.display_name())}" if run else "")
)

labels = _quality_tabs.label_list_picker(settings, ds)
try:
    audit = cached.audit(settings.source, settings.layout, backbone, size, runtime, more, labels)
except UserFacingError as err:
    show_error(err)
    st.stop()

if audit is None:
    st.info(
        "No audit of these features yet. The audit gives every image probabilities from heads that never saw it "
        f"({au.DEFAULT_FOLDS} folds over train and test together); cleanlab ranks the images whose given label "
        "disagrees. It also finds each image's most similar image, exactly (cosine on the features): test images "
        "that nearly duplicate a training image, and duplicates within a split. About 3 minutes with features "
        "cached; the same as `python -m lib audit`."
    )
    demo.note()
    jobs.live(settings, ("audit",))
    if st.button("Run the audit", type="primary", **demo.off("Running an audit", help=demo.BACKGROUND)):
        if jobs.start(settings, audit_job(settings.source, backbone, size, runtime, more, labels)):
            st.rerun()
    st.subheader("Label fixes")  # fixes made elsewhere (Browse, Evaluate, the map) and the export need no audit
    _quality_fixes.fixes_tab(settings, ds)
    st.stop()

assert audit is not None
st.session_state.setdefault("dq_exclude", {})  # "split/index" -> True for images the user marked
marked: dict[str, bool] = st.session_state["dq_exclude"]
tab_issues, tab_dups, tab_save, tab_fix = st.tabs(
    ["Label issues", "Near-duplicates", f"Exclude list ({sum(marked.values())})", "Label fixes"]
)

with tab_issues:
    _quality_tabs.issues_tab(settings, ds, audit, marked, (backbone, size, runtime))
with tab_dups:
    _quality_tabs.duplicates_tab(ds, run, audit, marked)
with tab_save:
    _quality_tabs.exclude_list_tab(settings, ds, audit, marked)
with tab_fix:
    _quality_fixes.fixes_tab(settings, ds)
