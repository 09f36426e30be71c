"""Transfer-learning explorer: `streamlit run app.py [-- --source PATH --backbone PATH --image-size N --demo --bundle
PATH_OR_URL]`.

The entry file is only a router; the pages live in views/, the product in lib/.
"""

import os
import tempfile

import streamlit as st

from lib.process import configure_process
from ui import demo, jobs, state, widgets
from ui.pages import PAGES, page_path

layout = state.startup_layout()  # the one layout every page passes down (as settings.layout)
configure_process(layout.tfhub_cache())
st.set_page_config(page_title="Transfer learning explorer", page_icon=":material/hub:", layout="wide")
if problem := state.argv_problem():
    from ui.text import show_error

    show_error(
        f"The server was started with a flag it cannot use: {problem}. Nothing is served until it is restarted with "
        "a valid one (streamlit run app.py -- --source PATH --backbone PATH --image-size N --cache-dir DIR --demo)."
    )
    st.stop()
state.unpack_bundle_once(layout)  # --bundle: before the first page renders, and before the cache turns read-only
if demo.active():
    from lib.store.atomic import set_read_only

    demo.skip_chart_validation()
    if os.environ.get("TLX_TFHUB_FROM_CACHE") == "1":  # a TF Hub download must not write into the read-only cache
        os.environ["TFHUB_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), "tlx-tfhub")

    set_read_only(
        layout.root,
        "This is a read-only demo: nothing can be computed, changed or deleted here, so nothing was written.",
    )

pg = st.navigation(
    [
        st.Page(page_path(p.path), title=p.title, icon=p.icon, url_path=p.url_path or None, default=p.default)
        for p in PAGES
    ]
)
settings = state.init()
widgets.sidebar(settings)
jobs.panel(settings, pg.url_path)  # every page, every session; never in the demo
pg.run()
