"""Two runs side by side on the test images they share: accuracy, ECE, per-class differences, the confusion-matrix
difference, the images one gets right and the other wrong, and McNemar's test. Opened from the runs table (select
two) or with ``?cmp_a=RUN&cmp_b=RUN``."""

import pandas as pd
import streamlit as st

from lib.analysis.compare import compare_runs, verdict
from lib.errors import UserFacingError
from lib.runs.registry import list_runs
from ui import cached, state, widgets
from ui.text import md_escape, show_error
from views import _compare_sections

settings = state.current()
st.title("Compare two runs")
runs = {m.run_id: m for m in list_runs(settings.layout)}
if len(runs) < 2:
    st.info("Compare needs two runs: train another on **Train or load**, then select two rows of the runs table.")
    st.stop()
ids = list(runs)
for key, default in (("cmp_a", ids[1]), ("cmp_b", ids[0])):
    # A run deleted since it was chosen (or named by a link) is said to be gone, never silently replaced by another
    asked = st.session_state.get(key, st.session_state.get(state.kept_key(key), st.query_params.get(key)))
    if asked is not None and asked not in runs:
        st.warning(
            f"Run {md_escape(str(asked), 80)} is gone (deleted, or not in this cache); run "
            f"{'A' if key == 'cmp_a' else 'B'} is {md_escape(runs[default].display_name(), 120)} instead.",
            icon=":material/warning:",
        )
        for stale in (key, state.kept_key(key)):
            st.session_state.pop(stale, None)
        st.query_params.pop(key, None)
state.bind("cmp_a", ids[1], valid=ids)
state.bind("cmp_b", ids[0], valid=ids)
c1, c2 = st.columns(2)
c1.selectbox("Run A", ids, key="cmp_a", format_func=lambda r: runs[r].display_name())
c2.selectbox("Run B", ids, key="cmp_b", format_func=lambda r: runs[r].display_name())
state.publish("cmp_a", "cmp_b")
try:
    a, b = (
        cached.run(settings.layout, st.session_state["cmp_a"]),
        cached.run(settings.layout, st.session_state["cmp_b"]),
    )
    result = cached.memo(
        ("compare", a.run_id, b.run_id, str(a.path.stat().st_mtime_ns), str(b.path.stat().st_mtime_ns)),
        lambda: compare_runs(a, b),
    )
except (UserFacingError, OSError) as err:
    show_error(err)
    st.stop()
for col, run, name in ((c1, a, "A"), (c2, b, "B")):
    col.caption(
        f"{name}: {md_escape(run.manifest.backbone_summary())}px · {run.manifest.head.head} head · "
        f"{md_escape(run.manifest.protocol or 'custom')}"
    )

acc, ece, m = result["accuracy"], result["ece"], result["mcnemar"]
k1, k2, k3, k4 = st.columns(4)
k1.metric("Accuracy A", f"{acc['a']:.2%}")
k2.metric("Accuracy B", f"{acc['b']:.2%}", delta=f"{acc['b'] - acc['a']:+.2%}")
k3.metric("ECE A → B", f"{ece['a']:.3f} → {ece['b']:.3f}")
k4.metric(
    "McNemar p", f"{m['p_value']:.2g}", help="Exact two-sided binomial test on the images exactly one run gets right."
)
st.text(verdict(result))  # plain text: it carries no Markdown
if any(result["skipped"].values()):
    skipped = result["skipped"]
    st.caption(
        f"Scored on the {result['images']:,} test images both runs kept ({skipped['a']:,} of A's and "
        f"{skipped['b']:,} of B's are not shared)."
    )

t1, t2 = st.columns(2)
with t1:
    _compare_sections.per_class_difference(result, list(a.classes))
with t2:
    _compare_sections.confusion_difference(result, list(a.classes))

ds = cached.dataset_if_ready(a.manifest.source, settings.layout)
for key, title in (("only_a", "A right, B wrong"), ("only_b", "B right, A wrong")):
    rows = result[key]
    st.subheader(f"{title}: {len(rows):,} images, the wrong run's most confident mistakes first")
    table = pd.DataFrame(rows)
    if ds is not None and ds.fingerprint == a.manifest.dataset_fingerprint and rows:
        images = ds.images(a.manifest.test_split)
        widgets.image_grid(
            [images[r["index"]] for r in rows[:20]],
            [f"#{r['index']} {r['label']}→{r['wrong_prediction']} p={r['wrong_confidence']:.2f}" for r in rows[:20]],
            columns=10,
            side=72,
        )
    if rows:
        widgets.csv_download(
            st, f"Download all {len(rows):,} (CSV)", table, f"{key}-{a.run_id}-vs-{b.run_id}.csv", key=f"cmp_csv_{key}"
        )
