"""The Data quality page's *Label fixes* tab: the fix list (which, what it holds, remove, download, import) and the
curated dataset exported from it (a background job: ``export-dataset``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from lib.errors import UserFacingError
from lib.jobs.commands import export_dataset_job
from lib.store.layout import safe_name
from ui import demo, fixes, jobs, state, widgets
from ui.text import show_error

NO_EXCLUDE = "(leave nothing out)"


def fixes_tab(settings: state.Settings, ds: Any) -> None:
    """The session's fix list: its rows, removal, downloads and import; then the export of the curated dataset."""
    from lib.data.labels import read_saved, saved_label_lists, to_csv_rows, to_json

    name = fixes.list_name()
    st.text_input(
        "Fix list",
        key="fix_list",
        max_chars=80,
        help="Fixes saved anywhere in the app go to this list (letters, digits, _ . -).",
    )
    state.publish("fix_list")
    others = [p.stem for p in saved_label_lists(settings.layout) if p.stem != name]
    if others:
        st.caption("Other saved label lists: " + ", ".join(others[:20]))
    try:
        current = read_saved(settings.layout, name, ds)
    except UserFacingError as err:
        show_error(err)
        return
    rows = pd.DataFrame(to_csv_rows(ds, current), columns=["split", "index", "label", "given"])
    if rows.empty:
        st.info(
            "No fixes in this list yet. Pick images under Label issues (or on Browse, Evaluate, Feature space) and "
            "save their right class."
        )
    else:
        st.write(f"{len(rows):,} fixed labels in {name!r}.")
        st.dataframe(rows, hide_index=True, width="stretch", height=min(38 + 35 * len(rows), 320))
        a, b, c = st.columns(3)
        widgets.csv_download(a, "Download (CSV)", rows, f"{name}.csv", key="fix_csv")
        b.download_button(
            "Download (JSON)",
            json.dumps(to_json(ds, current, "fixed in the app")),
            f"{name}.json",
            "application/json",
            key="fix_json",
        )
        drop = c.multiselect("Remove fixes", [f"{s}/{i}" for s, i in zip(rows["split"], rows["index"])], key="fix_drop")
        if c.button("Remove", **demo.off("Changing a fix list", disabled=not drop)):
            _update(settings, ds, name, remove=[(k.split("/")[0], int(k.split("/")[1])) for k in drop])
    up = st.file_uploader(
        "Import fixes into this list: CSV split,index,label (class names) or the app's JSON",
        type=["csv", "json"],
        key="fix_up",
    )
    force = fixes.force_checkbox("fix_up_force") if up is not None else False
    if up is not None and st.button("Import", **demo.off("Importing fixes")):
        from lib.data.labels import parse_labels

        try:
            got = parse_labels(
                up.getvalue().decode("utf-8-sig", errors="replace"), ds, "The uploaded list", force=force
            )
        except UserFacingError as err:
            show_error(err)
        else:
            _update(
                settings,
                ds,
                name,
                add={(s, int(i)): int(v) for s, (idx, lab) in got.items() for i, v in zip(idx, lab, strict=True)},
            )
    export_section(settings, ds, name if not rows.empty else None)


def _update(settings: state.Settings, ds: Any, name: str, **change: Any) -> None:
    from lib.data.labels import update_saved

    try:
        update_saved(settings.layout, name, ds, note="fixed in the app", **change)
    except UserFacingError as err:
        show_error(err)
        return
    st.session_state.pop("fix_drop", None)
    st.rerun()


def export_section(
    settings: state.Settings, ds: Any, fix_list: str | None, selection: pd.DataFrame | None = None, key: str = "xd"
) -> None:
    """Export the dataset less an exclude list, with the fix list's labels (only the ``selection`` rows' images, split
    and index, if given), as a zip of PNGs under the cache, then offer it for download."""
    from lib.data.excludes import saved_exclude_lists
    from lib.data.labels import read_saved

    st.subheader("Export the curated dataset")
    layout = settings.layout
    excludes = {p.stem: p for p in saved_exclude_lists(settings.layout)}
    a, b = st.columns(2)
    leave_out = a.selectbox("Exclude list", [NO_EXCLUDE, *excludes], key=f"{key}_exclude")
    name = safe_name(
        b.text_input(
            "Export name",
            value=f"{safe_name(Path(settings.source).name, 'dataset')}-curated",
            max_chars=80,
            key=f"{key}_name",
        ),
        "dataset-curated",
    )
    target = layout.dataset_export(name)
    st.caption(
        f"Writes {target.name}: every image as a lossless PNG in <split>/<class>/, with the fixed labels"
        + (f" of {fix_list!r}" if fix_list else " (no fixes in this list)")
        + ", and curation.json saying what changed. "
        "Load it back as a source by its path. The same: "
        "python -m lib export-dataset --out FILE.zip [--exclude] [--relabel] [--selection]."
    )
    jobs.live(settings, ("export-dataset",))
    if target.exists():
        st.download_button(
            f"Download {target.name} ({target.stat().st_size / 1e6:,.1f} MB)",
            lambda: target.read_bytes(),
            target.name,
            "application/zip",
            key=f"{key}_download",
        )
        st.caption("An export of that name exists; pick another name to export again.")
        return
    try:
        relabel = str(layout.label_file(fix_list)) if fix_list and read_saved(settings.layout, fix_list, ds) else None
    except UserFacingError:
        relabel = None  # a list made for another dataset: the tab above says so
    exclude = str(excludes[leave_out]) if leave_out in excludes else None
    if st.button("Export the dataset", type="primary", key=f"{key}_go", **demo.off("Exporting", help=demo.BACKGROUND)):
        chosen = None
        if selection is not None:  # the job reads the selection from a file beside the export
            from lib.safe_text import to_csv
            from lib.store.atomic import atomic_path

            chosen = target.with_name(target.stem + ".selection.csv")
            try:
                with atomic_path(chosen) as tmp:
                    tmp.write_text(to_csv(selection))
            except UserFacingError as err:
                show_error(err)
                return
        if jobs.start(
            settings,
            export_dataset_job(settings.source, str(target), exclude, relabel, str(chosen) if chosen else None),
        ):
            st.rerun()
