"""The Data quality page's tabs: label issues (worst first, tick to exclude), near-duplicates (test images leaking
from train, the active run's accuracy without them), and the exclude list (save, download, clear)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import streamlit as st

from lib.analysis import audit as au
from lib.data.excludes import save_exclude_list, to_json
from lib.data.images import upscale
from lib.errors import UserFacingError
from lib.safe_text import to_csv
from lib.store.layout import safe_name
from ui import cached, demo, fixes, state
from ui.text import md_escape, show_error

OWN_LABELS = "The dataset's own labels"
SAME_PHOTO = "Same photograph (checked on the pixels)"
SIMILAR = "Similar features (cosine threshold)"


def issues_tab(
    settings: state.Settings, ds: Any, audit: Any, marked: dict[str, bool], features_of: tuple[str, int, str]
) -> None:
    """Flagged images with filters, a CSV download and exclude ticks, and one flag explained (``features_of``: the
    backbone, size and runtime whose features find the nearest training images)."""
    counts = {s: len(v) for s, v in audit.issues.items()}
    cols = st.columns(len(counts) + 1)
    for col, (split, n) in zip(cols, counts.items()):
        col.metric(
            f"Flagged in {split}",
            f"{n:,}",
            help=f"of {len(audit.labels[split]):,} images ({n / max(len(audit.labels[split]), 1):.1%})",
        )
    cols[-1].metric("Audit took", f"{audit.seconds:.0f}s")
    state.bind("dq_class", "all", valid=["all", *ds.classes])
    state.bind("dq_split", "all", valid=["all", *audit.issues])
    f1, f2, f3 = st.columns(3)
    klass = f1.selectbox("Given class", ["all", *ds.classes], key="dq_class")
    split_pick = f2.selectbox("Split", ["all", *audit.issues], key="dq_split")
    shown = f3.select_slider("Show", [24, 48, 96, 192], value=48, key="dq_show")
    table = cached.label_issue_table(
        audit,
        audit.key,
        None if split_pick == "all" else split_pick,
        None if klass == "all" else list(ds.classes).index(klass),
    )
    csv = cached.memo(("issues-csv", audit.key, split_pick, klass), lambda: to_csv(table))
    st.download_button("Download these label issues (CSV)", csv, "label_issues.csv", "text/csv")
    st.caption(
        "Worst first. Score: 1 − the out-of-sample probability of the given label. Tick **exclude** to leave an "
        "image out of training (save the list in the last tab)."
    )
    head = table.head(int(shown)).copy()
    if len(head):
        head.insert(0, "image", "")
        for split in head["split"].unique():
            rows = head.index[head["split"] == split]
            head.loc[rows, "image"] = cached.thumbnails(
                settings.source, settings.layout, split, tuple(int(i) for i in head.loc[rows, "index"])
            )
        head["exclude"] = [marked.get(f"{s}/{i}", False) for s, i in zip(head["split"], head["index"])]
        edited = st.data_editor(
            head,
            hide_index=True,
            width="stretch",
            height=min(38 + 35 * len(head), 700),
            key=f"dq_editor_{klass}_{split_pick}_{shown}",
            disabled=["image", "split", "index", "given", "suggested", "score"],
            column_config={
                "image": st.column_config.ImageColumn("image", width="small"),
                "score": st.column_config.ProgressColumn("score", min_value=0.0, max_value=1.0, format="%.2f"),
            },
        )
        for s, i, x in zip(edited["split"], edited["index"], edited["exclude"]):
            marked[f"{s}/{i}"] = bool(x)
        flagged = [(str(s), int(i)) for s, i in zip(head["split"], head["index"])]
        fixes.fix_form(
            settings,
            ds,
            flagged,
            "dq_fix",
            {(s, i): int(audit.probs[s][i].argmax()) for s, i in flagged},
            expanded=True,
        )
        explain(settings, ds, audit, [(str(s), int(i)) for s, i in zip(head["split"], head["index"])], features_of)
    else:
        st.caption("Nothing flagged with these filters.")


def explain(
    settings: state.Settings, ds: Any, audit: Any, flags: list[tuple[str, int]], features_of: tuple[str, int, str]
) -> None:
    """Why one image is flagged: its given and suggested labels with their calibrated probabilities, and the training
    images that carry the suggested label and look most like it (by the features)."""
    from lib.pipeline.neighbours import nearest_of_class

    st.subheader("Why is it flagged?")
    labels = {f"{s}/{i} · {ds.classes[int(audit.labels[s][i])]}": (s, i) for s, i in flags}
    state.bind("dq_explain", next(iter(labels)), valid=list(labels))
    split, index = labels[st.selectbox("Flagged image (from the table above)", list(labels), key="dq_explain")]
    p = audit.probs[split][index]
    given, suggested = int(audit.labels[split][index]), int(p.argmax())
    a, b, c = st.columns([1, 1, 1])
    a.image(upscale(np.asarray(ds.images(split)[index]), 128), width=128, caption=f"{split}/{index}")
    b.metric("Given label", ds.classes[given], f"p = {p[given]:.1%}", delta_color="off", delta_arrow="off")
    c.metric("Suggested label", ds.classes[suggested], f"p = {p[suggested]:.1%}", delta_color="off", delta_arrow="off")
    st.caption(
        "Out-of-sample probabilities from heads that never trained on this image, calibrated (temperature "
        f"{audit.temperature:.2f})."
    )
    backbone, size, runtime = features_of
    train = cached.features(settings.source, settings.layout, backbone, size, "train", runtime=runtime)
    mine = cached.features(settings.source, settings.layout, backbone, size, split, runtime=runtime)
    if train is None or mine is None:
        st.caption("The nearest training images need this backbone's cached features.")
        return
    near = nearest_of_class(
        train.features, train.labels, mine.features[index], suggested, 6, index if split == "train" else None
    )
    st.write(
        f"The training images labelled **{md_escape(ds.classes[suggested])}** that look most like it"
        + (" (approximate: by this demo's reduced features):" if train.basis is not None else ":")
    )
    cols = st.columns(6)
    for col, (row, sim) in zip(cols, near):
        col.image(upscale(np.asarray(ds.images("train")[row]), 80), width=80, caption=f"train/{row} · {sim:.2f}")


def duplicates_tab(ds: Any, run: Any, audit: Any, marked: dict[str, bool]) -> None:
    """Near-duplicate pairs at a threshold, and what the leaked test images do to the active run's accuracy."""
    modes = [SAME_PHOTO, SIMILAR] if audit.photos_checked else [SIMILAR]
    state.bind("dq_mode", modes[0], valid=modes)
    mode = st.radio(
        "Report",
        modes,
        key="dq_mode",
        horizontal=True,
        help="Candidates come from the features (exact cosine neighbours); each one is then checked on the pixels, "
        "over shifts, crops, mirroring and colour changes, so a different photograph of a similar thing is not "
        "reported.",
    )
    state.bind("dq_threshold", au.DEFAULT_THRESHOLD, float, state.in_range(0.5, 1.0))
    threshold = st.slider(
        "Similarity threshold (cosine)",
        0.70,
        1.0,
        step=0.005,
        key="dq_threshold",
        disabled=mode == SAME_PHOTO,
        help="In the feature mode, two images count as near-duplicates from this cosine similarity of their features.",
    )
    leaked = audit.leaked_test_images(None if mode == SAME_PHOTO else threshold)
    n_test = len(audit.labels.get("test", []))
    a, b = st.columns(2)
    a.metric(
        "Test images with a near-duplicate in train",
        f"{len(leaked):,}",
        help=f"of {n_test:,} ({len(leaked) / max(n_test, 1):.2%})",
    )
    if run is not None and run.manifest.dataset_fingerprint == ds.fingerprint:
        y_true, y_pred, idx = run.y_true, run.y_pred, run.indices
        keep = ~np.isin(idx, leaked)
        acc_all = float((y_true == y_pred).mean())
        acc_clean = float((y_true[keep] == y_pred[keep]).mean()) if keep.any() else float("nan")
        b.metric(
            "Active run's test accuracy without them",
            f"{acc_clean:.2%}",
            delta=f"{100 * (acc_clean - acc_all):+.2f} pts vs all {len(idx):,}",
        )
    else:
        b.caption("Pick a run in the sidebar to see its accuracy without the leaked test images.")
    pairs = (
        cached.memo(("same-photos", audit.key), audit.same_photos)
        if mode == SAME_PHOTO
        else cached.duplicate_pairs(audit, audit.key, float(threshold))
    )
    kinds = st.multiselect(
        "Pairs", ["test ~ train", "train ~ train", "test ~ test"], default=["test ~ train"], key="dq_kinds"
    )
    pairs = [
        p for p in pairs if f"{p['split_a']} ~ {p['split_b']}" in kinds or f"{p['split_b']} ~ {p['split_a']}" in kinds
    ]
    st.caption(
        f"{len(pairs):,} pairs confirmed as the same photograph, surest first."
        if mode == SAME_PHOTO
        else f"{len(pairs):,} pairs at similarity ≥ {threshold:.3f}, closest first."
    )
    if st.button(f"Mark the {len(leaked):,} leaked test images for exclusion", disabled=not len(leaked)):
        marked.update({f"test/{int(i)}": True for i in leaked})
        st.rerun()
    lab = audit.labels
    n_pairs = st.select_slider("Pairs shown", [12, 24, 48, 96], value=12, key="dq_pairs")
    for p in pairs[: int(n_pairs)]:
        c1, c2, c3 = st.columns([1, 1, 3])
        img_a = ds.images(p["split_a"])[p["index_a"]]
        img_b = ds.images(p["split_b"])[p["index_b"]]
        c1.image(
            upscale(np.asarray(img_a), 96),
            width=96,
            caption=f"{p['split_a']}/{p['index_a']} · {ds.classes[int(lab[p['split_a']][p['index_a']])]}",
        )
        c2.image(
            upscale(np.asarray(img_b), 96),
            width=96,
            caption=f"{p['split_b']}/{p['index_b']} · {ds.classes[int(lab[p['split_b']][p['index_b']])]}",
        )
        c3.metric(
            "similarity",
            f"{p['similarity']:.4f}",
            delta=f"pixel match {p['photo_score']:.3f}" if "photo_score" in p else None,
            delta_color="off",
            delta_arrow="off",
        )


def exclude_list_tab(settings: state.Settings, ds: Any, audit: Any, marked: dict[str, bool]) -> None:
    """The marked images as a named exclude list for training."""
    chosen = sorted(k for k, v in marked.items() if v)
    images: dict[str, list[int]] = {}
    for key in chosen:
        split, index = key.split("/")
        images.setdefault(split, []).append(int(index))
    st.write(
        f"{len(chosen):,} images marked: " + ", ".join(f"{len(v):,} {s}" for s, v in images.items())
        if chosen
        else "No images marked yet."
    )
    name = st.text_input("List name", value="quality-excludes", max_chars=100, key="dq_name")
    if st.button("Save the exclude list", type="primary", **demo.off("Saving an exclude list", disabled=not chosen)):
        try:
            path = save_exclude_list(
                settings.layout, name, ds, {s: np.asarray(v) for s, v in images.items()}, note=f"audit {audit.key}"
            )
            st.success(
                f"Saved {len(chosen):,} images as {md_escape(path.name)}. Train with it on **Train or load**, or "
                f"`python -m lib train --exclude {md_escape(str(path))}`."
            )
        except UserFacingError as err:
            show_error(err)
    if chosen:
        st.download_button(
            "Download it (JSON)",
            json.dumps(to_json(ds, {s: np.asarray(v) for s, v in images.items()})),
            f"{name}.json",
            "application/json",
        )
    if st.button("Clear the marks", disabled=not chosen):
        st.session_state["dq_exclude"] = {}
        st.rerun()


def label_list_picker(settings: state.Settings, ds: Any) -> str | None:
    """Which labels to audit: the dataset's own, or a saved label list (CSV ``split,index,label`` or the app's JSON,
    uploaded here and kept under the cache); the chosen list's path, or None."""
    from lib.data.labels import describe_changes, parse_labels, save_label_list, saved_label_lists

    with st.expander("Audit other labels (for example people's re-annotations)"):
        up = st.file_uploader(
            "A label list: CSV with split,index,label (class names), or the app's JSON",
            type=["csv", "json"],
            key="dq_labels_up",
        )
        force = fixes.force_checkbox("dq_labels_force") if up is not None else False
        if up is not None and st.button("Add this list", **demo.off("Adding a label list")):
            try:
                listed = parse_labels(
                    up.getvalue().decode("utf-8-sig", errors="replace"), ds, "The uploaded list", force=force
                )
                name = safe_name(up.name, "labels")
                path = save_label_list(settings.layout, name, ds, listed, note=f"uploaded as {up.name[:100]}")
                st.session_state["dq_labels"] = path.name
                st.success(f"Saved as {md_escape(path.name)}: {md_escape(describe_changes(listed, ds))}")
            except UserFacingError as err:
                show_error(err)
        lists = {p.name: p for p in saved_label_lists(settings.layout)}
        state.bind("dq_labels", OWN_LABELS, valid=[OWN_LABELS, *lists])
        if st.session_state.get("dq_labels") not in (OWN_LABELS, *lists):
            st.session_state["dq_labels"] = OWN_LABELS  # a list deleted since
        pick = st.selectbox("Labels to audit", [OWN_LABELS, *lists], key="dq_labels")
    return str(lists[pick]) if pick in lists else None
