"""Label fixes wherever images are shown with their label: pick one image or many, pick the right class (or each
image's suggested one), and the fixes go straight into a named list under the cache's ``labels/`` (so a closed tab
loses nothing). ``train --relabel`` and the Train page's *Label fixes* read the same lists.

    fixes.fix_form(settings, ds, [("test", 12), ("test", 40)], key="ev_fix", suggested={("test", 12): 3})
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from lib.errors import UserFacingError
from lib.store.layout import check_name
from ui import demo, state
from ui.text import show_error

DEFAULT_LIST = "label-fixes"
SUGGESTED = "each image's suggested label"


def force_checkbox(key: str) -> bool:
    """The confirmation an uploaded list needs when it looks made for another dataset (the CLI's ``--force``)."""
    return st.checkbox(
        "Use it even if it looks made for another dataset (it changes more than half of the labels it names)", key=key
    )


def list_name() -> str:
    """The fix list this session writes to (a name the layout accepts, else the default)."""
    state.bind("fix_list", DEFAULT_LIST)
    name = str(st.session_state.get("fix_list") or DEFAULT_LIST).strip()
    try:
        return check_name(name, "label list name")
    except UserFacingError:
        return DEFAULT_LIST


def fix_form(
    settings: state.Settings,
    ds: Any,
    items: list[tuple[str, int]],
    key: str,
    suggested: dict[tuple[str, int], int] | None = None,
    expanded: bool = False,
) -> None:
    """Under a grid of ``items`` (split, index): mark labels as wrong and save the right class into the fix list."""
    if not items:
        return
    with st.expander(f"Fix labels of these {len(items):,} images", expanded=expanded, icon=":material/edit:"):
        given = {s: ds.labels(s) for s in {s for s, _i in items}}  # each split's labels read once, not once per image
        labels = {
            f"{s}/{i} · {ds.classes[int(given[s][i])]}"
            + (f" → {ds.classes[suggested[(s, i)]]}" if suggested and (s, i) in suggested else ""): (s, int(i))
            for s, i in items
        }
        a, b = st.columns([3, 2])
        every = b.checkbox(f"All {len(items):,} shown", key=f"{key}_all")
        picked = (
            list(labels)
            if every
            else a.multiselect(
                "Images whose label is wrong", list(labels), key=f"{key}_pick", placeholder="pick images"
            )
        )
        options = ([SUGGESTED] if suggested else []) + list(ds.classes)
        right = b.selectbox("Right class", options, key=f"{key}_class")
        name = list_name()
        st.caption(
            f"Fixes are saved at once to the label list {name!r} (change it, download it or export the fixed dataset "
            "on Data quality → Label fixes; train with it on Train or load)."
        )
        if st.button(
            f"Save {len(picked):,} fix(es)",
            key=f"{key}_save",
            type="primary",
            **demo.off("Fixing labels", disabled=not picked),
        ):
            add = {}
            for label in picked:
                where = labels[label]
                cls = (suggested or {}).get(where) if right == SUGGESTED else list(ds.classes).index(right)
                if cls is not None and cls != int(given[where[0]][where[1]]):
                    add[where] = int(cls)
            save(settings, ds, name, add)


def save(settings: state.Settings, ds: Any, name: str, add: dict[tuple[str, int], int]) -> None:
    """Merge ``add`` into the list and say what was saved (fixes equal to the given label are not listed)."""
    from lib.data.labels import update_saved

    if not add:
        st.warning("Nothing to save: the chosen class is each image's given label.")
        return
    try:
        path, fixes = update_saved(settings.layout, name, ds, add=add, note="fixed in the app")
    except UserFacingError as err:
        show_error(err)
        return
    total = sum(len(v[0]) for v in fixes.values())
    st.success(
        f"Saved {len(add):,} fix(es); the list {name!r} now holds {total:,} ({path.name}).", icon=":material/check:"
    )
