"""The hosted demo's entry file, for Streamlit Community Cloud (which runs it as is) or any host:

    pip install -r deploy/demo/requirements.txt      # no TensorFlow, TF Hub or Ray
    TLX_BUNDLE=https://…/demo.tar TLX_BUNDLE_SHA256=… streamlit run deploy/demo/streamlit_app.py

It serves app.py read-only (demo mode) from a bundle (``python -m lib bundle``, made where TensorFlow is installed),
installed once per server from ``TLX_BUNDLE`` (a URL or a path; an environment variable, or a Community Cloud secret
of that name) into ``TLX_CACHE_DIR`` (default: the system's temp folder, since a host's app folder may be read-only).
Uploads are classified by the bundle's float LiteRT backbones and the head in numpy.
"""

import os
import runpy
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ["TLX_DEMO"] = "1"
os.environ.setdefault("TLX_CACHE_DIR", str(Path(tempfile.gettempdir()) / "tlx-demo-cache"))
try:  # Community Cloud keeps settings as secrets; an environment variable of the same name wins
    import streamlit as st

    for name in ("TLX_BUNDLE", "TLX_BUNDLE_SHA256"):
        if name not in os.environ and name in st.secrets:
            os.environ[name] = str(st.secrets[name])
except Exception:  # noqa: BLE001 - no secrets file: fine, the environment says it all
    pass
runpy.run_path(str(ROOT / "app.py"), run_name="__main__")
