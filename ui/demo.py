"""Demo mode, for a hosted demo: ``streamlit run app.py -- --demo`` or ``TLX_DEMO=1``.

Visitors read; nothing they do writes to the shared cache. Two layers:
- every control that would write (extract, train, fine-tune, measure, audit, compute a map, rename, delete,
  save an exclude list, build a zip) is drawn disabled with the reason (:func:`off`);
- the process marks its cache read-only at start (:func:`lib.store.atomic.set_read_only`), so a crafted
  request that reaches a writer anyway gets a :class:`~lib.errors.ReadOnlyError`, shown as a message.
Costs per visitor are bounded too: the data source and backbone are the ones the server was started with
(a URL or the sidebar cannot point it at another path), samples are capped, and t-SNE of a sample (seconds of
CPU each) is off: the stored map of every image has one.
"""

from __future__ import annotations

import os
import sys

ENV = "TLX_DEMO"
WHY = "Off in this read-only demo: visitors can explore everything that is stored, but not compute or change it."
MAX_SAMPLE = 5_000  # points of the quick sample map


def active() -> bool:
    """Whether this server runs as a read-only demo (``--demo`` after ``--``, or ``TLX_DEMO=1``)."""
    return "--demo" in sys.argv[1:] or os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


BACKGROUND = "Runs in the background: it goes on if you leave this page or close the tab."


def off(what: str = "", disabled: bool = False, help: str | None = None) -> dict[str, object]:
    """Keyword arguments for a writing control: disabled, with the reason as its help, in demo mode; otherwise disabled
    only when ``disabled`` (the control's own condition, such as nothing to save yet), with ``help`` if given."""
    if not active():
        return {"disabled": disabled, **({"help": help} if help else {})}
    return {"disabled": True, "help": (f"{what}: " if what else "") + WHY}


def skip_chart_validation() -> None:
    """Demo mode only: Altair charts go to the browser without a JSON-schema validation on every rerun (about a third
    of a second of CPU on the Evaluate page). The same charts are validated in every test run, outside demo mode."""
    import altair as alt

    mixin = alt.TopLevelMixin
    if getattr(mixin.to_dict, "_tlx_unvalidated", False):
        return
    original = mixin.to_dict

    def to_dict(self: object, validate: bool = False, **kwargs: object) -> dict:
        return original(self, validate=validate, **kwargs)  # type: ignore[arg-type]

    to_dict._tlx_unvalidated = True  # type: ignore[attr-defined]
    mixin.to_dict = to_dict  # type: ignore[method-assign]


def note(container: object = None) -> None:
    """A one-line caption saying why the controls around it are disabled (demo mode only)."""
    if active():
        import streamlit as st

        (container or st).caption(":material/lock: " + WHY)  # type: ignore[attr-defined]
