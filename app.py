"""Transfer-learning explorer: `streamlit run app.py [-- --source PATH --backbone PATH --image-size N]`.

The entry file is only a router; the pages live in pages/, the product in lib/.
"""

import streamlit as st

from ui import state, widgets

st.set_page_config(page_title="Transfer learning explorer", page_icon=":material/hub:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/browse.py", title="Browse data", icon=":material/grid_view:", url_path="browse"),
    st.Page("pages/train.py", title="Train or load", icon=":material/model_training:", url_path="train"),
    st.Page("pages/feature_space.py", title="Feature space", icon=":material/scatter_plot:", url_path="features"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/fact_check:", url_path="evaluate"),
]
pg = st.navigation(pages)
widgets.sidebar(state.init())
pg.run()
