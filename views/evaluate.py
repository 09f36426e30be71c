"""Evaluate the active run: accuracy, confusion matrix (click a cell to see its images), per-class metrics,
calibration, a comparison with another run, and classifying your own image."""

import streamlit as st

from lib.models.metrics import misclassified, percent
from ui import cached, fixes, state, widgets
from ui.text import md_escape
from views import _evaluate_charts, _evaluate_upload

settings = state.current()
st.title("Evaluate")
run = widgets.active_run(settings)
if run is None:
    st.info("No active run. Pick one in the sidebar, or train one on **Train or load**.")
    st.stop()
report = cached.report(settings.layout, run.run_id)
classes = run.classes
m = run.manifest
st.caption(
    f"Run **{md_escape(m.display_name())}** · {md_escape(m.backbone_summary())}px · {m.head.head} head · "
    f"{report['count']:,} test images · {md_escape(m.source)}"
)

a, b, c, d, *e = st.columns(5 if run.y_fixed is not None else 4)
a.metric("Accuracy" if run.y_fixed is None else "Accuracy (given labels)", f"{report['accuracy']:.2%}")
if run.y_fixed is not None and m.relabel:
    fixed_acc = float((run.y_pred == run.y_fixed).mean())
    e[0].metric(
        "Accuracy (fixed labels)",
        f"{fixed_acc:.2%}",
        delta=f"{fixed_acc - report['accuracy']:+.2%}",
        help=f"Against the test labels after the run's label fixes ({m.relabel.get('changed', {}).get('test', 0):,} "
        "test labels changed).",
    )
    st.caption(
        f"Trained with the label fixes **{md_escape(m.relabel.get('name', ''))}** (sha256 "
        f"{md_escape(str(m.relabel.get('sha256', ''))[:12])}…): {m.relabel.get('changed', {}).get('train', 0):,} "
        f"training and {m.relabel.get('changed', {}).get('test', 0):,} test labels changed."
    )
b.metric(
    "Top-5 accuracy",
    percent(report["top5_accuracy"]),
    help="Shown for more than five classes (with five or fewer it is always 100%).",
)
before = report.get("calibration_before")
ece_change = report["calibration"]["ece"] - before["ece"] if before else 0.0
c.metric(
    "ECE (calibrated)" if before else "ECE",
    f"{report['calibration']['ece']:.4f}",
    # No arrow for a change that rounds to nothing (calibration left the probabilities as they were).
    delta=f"{ece_change:+.4f} vs before" if before and round(ece_change, 4) != 0 else None,
    delta_color="inverse",
    help="Expected calibration error: how far confidence is from accuracy (0 is perfect).",
)
d.metric("Errors", f"{round((1 - report['accuracy']) * report['count']):,}")

state.bind("ev_norm", "counts", valid=["counts", "row-normalized"])
state.bind("ev_true", 0, int, state.in_range(0, len(classes) - 1))
state.bind("ev_pred", min(1, len(classes) - 1), int, state.in_range(0, len(classes) - 1))
per = _evaluate_charts.confusion_and_per_class(report, classes)

st.subheader("Images of one cell: most confident mistakes first")
s1, s2, s3 = st.columns([1, 1, 2])
true_cls = s1.selectbox("True class", range(len(classes)), key="ev_true", format_func=lambda i: classes[i])
pred_cls = s2.selectbox("Predicted class", range(len(classes)), key="ev_pred", format_func=lambda i: classes[i])
state.publish("ev_norm", "ev_true", "ev_pred")
rows = misclassified(run.y_true, run.probs, true_cls, pred_cls)
s3.markdown(
    f"**{len(rows)}** test images of *{md_escape(classes[true_cls])}* predicted as *{md_escape(classes[pred_cls])}*"
    + (" (first 40 shown)" if len(rows) > 40 else "")
)
ds = cached.dataset_if_ready(m.source, settings.layout)
if ds is None or ds.fingerprint != m.dataset_fingerprint:
    st.info("The run's dataset is not prepared in this cache, so its images cannot be shown.")
else:
    images = ds.images(m.test_split)
    show = rows[:40]
    widgets.image_grid(
        [images[int(run.indices[r])] for r in show],
        [f"#{run.indices[r]} p={run.probs[r, pred_cls]:.2f}" for r in show],
        columns=10,
        side=72,
    )
    cell = [(m.test_split, int(run.indices[r])) for r in show]
    fixes.fix_form(settings, ds, cell, "ev_fix", {w: int(pred_cls) for w in cell})

_evaluate_charts.pairs_and_reliability(report)
_evaluate_charts.compare_with_another_run(settings, run, per, classes)

st.subheader("Classify your own image")
_evaluate_upload.upload_ui(settings, run)
