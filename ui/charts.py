"""Altair charts built once per content for the whole server, drawn with ``st.vega_lite_chart``.

    charts.altair("balance", [df], (), lambda: alt.Chart(df).mark_bar().encode(...), width="stretch")

Building an Altair chart and turning it into a Vega-Lite spec (``to_dict``, under a lock Streamlit holds for every
session) costs tenths of a second of CPU per chart and rerun; on a shared demo server that is most of a page's time.
Here the spec is made once per (tag, the data's content hash, params) and cached; each draw sends a copy, so no
session can change another's chart. Selections (``on_select``) work as with ``st.altair_chart``.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from ui import cached


def content_key(frames: list[pd.DataFrame]) -> str:
    """A digest of the frames' values, index and column names."""
    h = hashlib.sha1()
    for f in frames:
        h.update(repr(list(f.columns)).encode())
        h.update(pd.util.hash_pandas_object(f, index=True).values.tobytes())
    return h.hexdigest()


def to_spec(chart: Any) -> dict[str, Any]:
    """The chart's Vega-Lite spec without Altair's default-theme view size (300 x 300), as ``st.altair_chart`` does,
    so the chart fills its container like every other chart on the page."""
    spec = chart.to_dict()
    view = spec.get("config", {}).get("view", {})
    for k in ("continuousWidth", "continuousHeight"):
        view.pop(k, None)
    if "view" in spec.get("config", {}) and not view:
        del spec["config"]["view"]
    if "config" in spec and not spec["config"]:
        del spec["config"]
    return spec


def altair(tag: str, frames: list[pd.DataFrame], params: tuple, build: Callable[[], Any], **kwargs: Any) -> Any:
    """Draw the chart ``build()`` returns; it is built and converted once per (tag, frames' content, params)."""
    spec = cached.memo(("vega-lite", tag, content_key(frames), params), lambda: to_spec(build()))
    return st.vega_lite_chart(spec=copy.deepcopy(spec), **kwargs)
