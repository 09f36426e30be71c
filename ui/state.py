"""App-wide settings (data source, backbone, input size, active run) and URL state.

Defaults come from ``streamlit run app.py -- --source ... --backbone ...``, then the
``TLX_*`` environment variables, then official CIFAR-10 and ``mobilenet_v1_100_128``.
A URL's query parameters override them at session start, and every rerun writes the
current choices back, so a copied link reopens the same run, page and view.

    settings = current()                 # Settings(source, backbone, image_size, run_id, layout)
    bind("ev_true", 0, int)              # a page widget that round-trips through the URL
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, NoReturn

import streamlit as st

from lib import config
from lib.bounds import BOUNDS
from lib.data.sources import MAX_SOURCE_CHARS
from lib.models.specs import MAX_BACKBONE_CHARS
from lib.store.layout import RUN_ID, CacheLayout

GLOBAL_KEYS = {"source": "source", "backbone": "backbone", "image_size": "size", "run_id": "run"}
_KEEP = "_kept_"  # session-state prefix of page widgets' last values (see bind)


@dataclass(frozen=True)
class Settings:
    """The active choices every page works on."""

    source: str
    backbone: str
    image_size: int
    run_id: str
    layout: CacheLayout  # the one layout of this server's cache, passed to every lib call


class _FlagError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _FlagError(message)


def _parse_argv() -> tuple[dict[str, Any], str]:
    """The app's flags after ``--``, and the first problem with them ("" if none)."""
    from lib.bounds import flag

    parser = _Parser(add_help=False, prog="streamlit run app.py --")
    parser.add_argument("--source")
    parser.add_argument("--backbone")
    parser.add_argument("--image-size", type=flag("image_size"))
    parser.add_argument("--cache-dir")
    parser.add_argument("--bundle")
    parser.add_argument("--bundle-sha256")
    parser.add_argument("--demo", action="store_true")
    try:
        args, _ = parser.parse_known_args(sys.argv[1:])
    except _FlagError as err:
        return {}, str(err)
    return {k: v for k, v in vars(args).items() if v not in (None, False)}, ""


def _argv_defaults() -> dict[str, Any]:
    return _parse_argv()[0]


def argv_problem() -> str:
    """What is wrong with the flags the server was started with ("" if nothing): app.py refuses to serve with a bad
    one rather than drop every flag and serve the default cache."""
    return _parse_argv()[1]


def startup_cache_dir() -> str:
    """The cache directory this server was started with (``--cache-dir``, then ``$TLX_CACHE_DIR``, then ./cache)."""
    return str(_argv_defaults().get("cache_dir") or config.default_cache_dir())


def startup_layout() -> CacheLayout:
    """The layout of :func:`startup_cache_dir`: what app.py and every page pass down."""
    return CacheLayout(startup_cache_dir())


def defaults() -> dict[str, Any]:
    """Defaults from the command line, then the environment, then an installed demo bundle, then the project's own."""
    from lib.defaults import choose_defaults

    argv = _argv_defaults()
    d = choose_defaults(startup_layout(), argv.get("source"), argv.get("backbone"), argv.get("image_size"))
    return {
        "source": d.source,
        "backbone": d.backbone,
        "image_size": d.image_size,
        "run_id": d.run_id,
        "cache_dir": startup_cache_dir(),
    }


@st.cache_resource(show_spinner=False)
def _installed(layout: CacheLayout, bundle: str, sha256: str) -> dict[str, Any]:
    """Install the bundle once per server process (every session waits for the first)."""
    from lib.bundles.install import install_bundle
    from ui.scatter_map import THUMBS_ROOT

    bar = st.progress(0.0, text="Installing the demo bundle…")
    info = install_bundle(
        bundle,
        layout,
        lambda stage, f: bar.progress(min(max(f, 0.0), 1.0), text=stage[:200]),
        sha256 or None,
        THUMBS_ROOT,
    )
    bar.empty()
    return info


def unpack_bundle_once(layout: CacheLayout) -> None:
    """``--bundle PATH_OR_URL`` (or ``$TLX_BUNDLE``): unpack it into the cache before the first page renders, once per
    process; then point the bundled runs' backbone paths at the copies it brought. A bad bundle stops the app with
    a message (nothing of it is installed)."""
    from lib.errors import UserFacingError
    from lib.models.specs import set_aliases
    from lib.store.installed import backbone_aliases, backbone_stand_ins

    argv = _argv_defaults()
    bundle = argv.get("bundle") or os.environ.get("TLX_BUNDLE", "")
    if bundle:
        try:
            _installed(layout, bundle, argv.get("bundle_sha256") or os.environ.get("TLX_BUNDLE_SHA256", ""))
        except UserFacingError as err:
            from ui.text import show_error

            show_error(f"The demo bundle could not be installed: {err}")
            st.stop()
    set_aliases(backbone_aliases(layout), backbone_stand_ins(layout))


def _valid_global(key: str, value: str) -> bool:
    from ui import demo

    if key in ("source", "backbone") and demo.active():
        return value.strip() == str(defaults()[key])  # a demo serves only what it was started with: no path from a URL
    if key == "image_size":
        return value.isdigit() and BOUNDS["image_size"].accepts(int(value))
    if key == "run_id":
        return value == "" or bool(RUN_ID.match(value))
    limit = MAX_SOURCE_CHARS if key == "source" else MAX_BACKBONE_CHARS
    return 0 < len(value.strip()) <= limit and "\x00" not in value


def notice(text: str) -> None:
    """Show a one-line notice where it arises (for example a refused URL value)."""
    st.warning(text, icon=":material/link_off:")


def init() -> Settings:
    """Fill session state once per session (URL first, then defaults) and publish it to the URL."""
    if "settings_ready" not in st.session_state:
        base = defaults()
        params = st.query_params
        for key, param in GLOBAL_KEYS.items():
            raw = params.get(param)
            value: Any = base[key]
            if raw is not None and _valid_global(key, raw):
                value = int(raw) if key == "image_size" else raw.strip()
            elif raw is not None:
                notice(f"The link's {param}= value was not usable, so the default is used instead.")
            st.session_state[key] = value
        st.session_state["cache_dir"] = base["cache_dir"]
        st.session_state["settings_ready"] = True
    publish_globals()
    return current()


def current() -> Settings:
    """The active settings."""
    s = st.session_state
    return Settings(s["source"], s["backbone"], int(s["image_size"]), s.get("run_id", ""), CacheLayout(s["cache_dir"]))


def update(**changes: Any) -> None:
    """Change active settings (and the URL)."""
    for key, value in changes.items():
        st.session_state[key] = value
    publish_globals()


def publish_globals() -> None:
    """Write the global settings into the URL's query parameters."""
    s = st.session_state
    for key, param in GLOBAL_KEYS.items():
        value = s.get(key)
        if value in (None, ""):
            st.query_params.pop(param, None)
        elif st.query_params.get(param) != str(value):
            st.query_params[param] = str(value)


def bind(
    key: str,
    default: Any,
    cast: Callable[[str], Any] = str,
    valid: Callable[[Any], bool] | Collection[Any] | None = None,
) -> None:
    """Seed a widget's session-state value from the URL (once), else from ``default``.

    ``valid`` (a predicate or the allowed values) guards the URL value: one that does not cast or
    is out of range falls back to ``default`` with a notice, instead of crashing the widget.
    """
    if key in st.session_state:
        return
    if _KEEP + key in st.session_state:
        # Streamlit drops a widget's state on a page that does not draw it: coming back restores the last choice.
        st.session_state[key] = st.session_state[_KEEP + key]
        return
    raw = st.query_params.get(key)
    if raw is not None:
        try:
            value = cast(raw)
            ok = valid is None or (valid(value) if callable(valid) else value in valid)
        except (TypeError, ValueError):
            ok = False
        if ok:
            st.session_state[key] = value
            return
        notice(f"The link's {key}= value was not usable, so the default is used instead.")
    st.session_state[key] = default


def kept_key(key: str) -> str:
    """Where a widget's last value is kept while its page is not drawn (see :func:`bind`)."""
    return _KEEP + key


def in_range(low: float, high: float) -> Callable[[Any], bool]:
    """A ``valid`` predicate for :func:`bind`: a number in ``[low, high]``."""
    return lambda v: low <= v <= high


def bind_list(key: str, default: list[str], allowed: list[str]) -> None:
    """Like :func:`bind` for a multiselect: a comma-separated URL value, filtered to ``allowed``."""
    if key in st.session_state:
        return
    if _KEEP + key in st.session_state:
        st.session_state[key] = [v for v in st.session_state[_KEEP + key] if v in allowed]
        return
    raw = st.query_params.get(key)
    st.session_state[key] = [v for v in raw.split(",") if v in allowed] if raw else default


def publish(*keys: str) -> None:
    """Write page widget values to the URL so a shared link reproduces the view."""
    for key in keys:
        value = st.session_state.get(key)
        st.session_state[_KEEP + key] = value
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else ("" if value is None else str(value))
        if text == "":
            st.query_params.pop(key, None)
        elif st.query_params.get(key) != text:
            st.query_params[key] = text


def open_page(page: str, **params: str) -> None:
    """Switch to ``page`` with ``params`` in its URL; the page's bound widgets take them (a value kept from an earlier
    visit is dropped, so the link wins)."""
    for key in params:
        st.session_state.pop(key, None)
        st.session_state.pop(_KEEP + key, None)
    from ui.pages import page_path

    st.switch_page(page_path(page), query_params=params)
