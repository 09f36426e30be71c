"""Untrusted text stays text: anything from a URL, a form, an upload, a file name or an error message
that quotes one is escaped before Streamlit renders it as Markdown.

Streamlit renders labels, captions, alerts and ``st.markdown`` as Markdown (links, images, HTML-like
tags, ``:red[...]`` directives, and bare URLs, e-mail addresses and ``www.`` names, which GFM turns
into links even when their punctuation is escaped). :func:`md_escape` backslash-escapes every ASCII
punctuation mark (CommonMark allows that for all of them), puts an invisible word joiner (U+2060)
inside every ``://``, ``@`` and ``www.`` so no autolink can form, and folds newlines: a crafted
string shows as typed.

    st.warning(f"The data source {md_escape(source)} is not prepared yet.")
    show_error(err)              # st.error with the message escaped
"""

from __future__ import annotations

import re
import string
from typing import Any

import streamlit as st

_PUNCT = re.compile("([" + re.escape(string.punctuation) + "])")
_JOINER = "\u2060"  # invisible, not a space: breaks GFM autolink literals without changing what is shown
_AUTOLINK = re.compile(r"(:|@|\.)")
_SPACE = re.compile(r"\s+")
MAX_SHOWN = 300  # characters of one untrusted string shown; the rest is cut with an ellipsis


def md_escape(text: Any, limit: int = MAX_SHOWN) -> str:
    """``text`` as a Markdown-safe literal: one line, every punctuation mark escaped, at most ``limit`` characters."""
    flat = _SPACE.sub(" ", str(text)).strip()
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return _PUNCT.sub(
        r"\\\1", _AUTOLINK.sub(lambda m: (m.group(1) + _JOINER) if m.group(1) != "." else (_JOINER + "."), flat)
    )


def show_error(err: BaseException | str, container: Any = None) -> None:
    """An error box with the message as literal text (messages quote user paths and handles)."""
    (container or st).error(md_escape(err, limit=2000))


def show_warning(message: Any, container: Any = None) -> None:
    """A warning box with the message as literal text."""
    (container or st).warning(md_escape(message, limit=2000))
