"""Transfer-learning explorer: `streamlit run app.py [-- --source PATH --backbone PATH --image-size N]`.

The entry file is only a router; the pages live in views/, the product in lib/.
"""

import streamlit as st

from lib.process import configure_process
from ui import state, widgets

configure_process(state.startup_cache_dir())
st.set_page_config(page_title="Transfer learning explorer", page_icon=":material/hub:", layout="wide")

pages = [
    st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("views/browse.py", title="Browse data", icon=":material/grid_view:", url_path="browse"),
    st.Page("views/train.py", title="Train or load", icon=":material/model_training:", url_path="train"),
    st.Page("views/feature_space.py", title="Feature space", icon=":material/scatter_plot:", url_path="features"),
    st.Page("views/evaluate.py", title="Evaluate", icon=":material/fact_check:", url_path="evaluate"),
    st.Page("views/quality.py", title="Data quality", icon=":material/rule:", url_path="quality"),
    st.Page("views/speed.py", title="Speed vs accuracy", icon=":material/speed:", url_path="speed"),
]
pg = st.navigation(pages)
widgets.sidebar(state.init())
pg.run()
