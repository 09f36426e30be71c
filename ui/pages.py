"""The one table of pages: the router (app.py) and the visitor benchmark (bench/visitors.py) both read it.

    pages = [st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path, default=p.default) for p in PAGES]

Adding a page: its file in views/, and a row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def page_path(path: str) -> str:
    """A page's script as an absolute path: Streamlit resolves relative ones against the entry file's folder, and the
    hosted demo's entry file (deploy/demo/streamlit_app.py) is not app.py's."""
    return str(ROOT / path)


@dataclass(frozen=True)
class PageSpec:
    """One page: where its script is, how the navigation shows it, and what a visitor waits for once it is drawn."""

    path: str
    title: str
    icon: str
    url_path: str  # "" for the default page
    heading: str  # the page's title as drawn (a visitor waits for it)
    wait_for: str | None = None  # a CSS locator that appears only when the page has finished drawing

    @property
    def default(self) -> bool:
        """The page a bare URL opens."""
        return self.url_path == ""


PAGES: tuple[PageSpec, ...] = (
    PageSpec("views/home.py", "Home", ":material/home:", "", "Transfer learning explorer"),
    PageSpec("views/browse.py", "Browse data", ":material/grid_view:", "browse", "Browse data"),
    PageSpec("views/train.py", "Train or load", ":material/model_training:", "train", "Train or load transfer models"),
    PageSpec(
        "views/feature_space.py",
        "Feature space",
        ":material/scatter_plot:",
        "features",
        "Feature space: PCA and t-SNE",
        ".tlx-map[data-draw-ms]",
    ),
    PageSpec(
        "views/evaluate.py", "Evaluate", ":material/fact_check:", "evaluate", "Evaluate", '[data-testid="stMetric"]'
    ),
    PageSpec("views/compare.py", "Compare runs", ":material/compare_arrows:", "compare", "Compare two runs"),
    PageSpec("views/quality.py", "Data quality", ":material/rule:", "quality", "Data quality"),
    PageSpec("views/speed.py", "Speed vs accuracy", ":material/speed:", "speed", "Speed vs accuracy"),
)
