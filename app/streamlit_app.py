"""microcnn web app: the entry point only routes (st.navigation); pages display; microcnn computes.

Run from the repository root: ``streamlit run app/streamlit_app.py`` (or ``make demo``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import streamlit as st

APP_DIR = Path(__file__).resolve().parent
if str(APP_DIR) not in sys.path:  # pages import the app's helper modules (state, views) by name
    sys.path.insert(0, str(APP_DIR))

import state  # noqa: E402  (needs APP_DIR on sys.path)

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

# Pages live in app/app_pages/, not app/pages/: a folder named "pages" next to the entry point switches on
# Streamlit's old directory-based navigation (its own sidebar list, pages run without this entry point).
PAGES = [
    st.Page(
        str(APP_DIR / "app_pages" / "analyze.py"), title="Analyze", icon=":material/biotech:", default=True
    ),
    st.Page(str(APP_DIR / "app_pages" / "batch.py"), title="Batch", icon=":material/dataset:"),
    st.Page(str(APP_DIR / "app_pages" / "train.py"), title="Train", icon=":material/model_training:"),
    st.Page(str(APP_DIR / "app_pages" / "learn.py"), title="Learn", icon=":material/school:"),
    st.Page(str(APP_DIR / "app_pages" / "models.py"), title="Models", icon=":material/inventory_2:"),
]


def about() -> None:
    """Sidebar "About" box with the package version."""
    import microcnn

    with st.sidebar.expander("About", expanded=False):
        st.markdown(
            f"**microcnn {microcnn.__version__}**  \n"
            "CNN-based analysis of materials micrographs: phase maps, fractions and sizes in µm.  \n"
            "Lengths are in µm when the pixel size is known, else in px (labelled so)."
        )


st.set_page_config(page_title="microcnn", page_icon=":material/biotech:", layout="wide")
state.init_session()
about()
st.navigation(PAGES).run()
