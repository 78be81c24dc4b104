"""sra_viz app: a router over the pages in ``sra_viz/ui/pages/`` (each page is one short file).

Run: ``streamlit run app.py`` (settings in ``.streamlit/config.toml``: localhost, headless).
``SRA_VIZ_TEACHER=DIR SRA_VIZ_STUDENT=DIR streamlit run app.py`` opens every session on another pair.
"""

import os
from pathlib import Path

# Before anything imports torch (PyTorch reads it once, at its first allocation): the Distill page trains
# in a worker thread, where glibc maps every block above 64 MB afresh at each step; huge pages make those
# page faults cheap (sra_viz/distill/perf.py says why and what it measured).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import streamlit as st  # noqa: E402

from sra_viz.ui.state import carry_over  # noqa: E402

PAGES = Path(__file__).parent / "sra_viz" / "ui" / "pages"


def main() -> None:
    """Build the navigation and run the chosen page (a function so tests can drive the app)."""
    st.set_page_config(page_title="sra_viz · cross-tokenizer distillation", page_icon="🔀", layout="wide")
    carry_over()  # widget values of pages not shown in this run survive the page switch
    page = st.navigation(
        {
            "Explore": [
                st.Page(PAGES / "models.py", title="Models", icon=":material/memory:", default=True),
                st.Page(PAGES / "alignment.py", title="Alignment", icon=":material/join_inner:"),
                st.Page(PAGES / "saliency.py", title="Saliency", icon=":material/visibility:"),
                st.Page(PAGES / "geometry.py", title="Geometry", icon=":material/scatter_plot:"),
            ],
            "Train": [st.Page(PAGES / "distill.py", title="Distill", icon=":material/model_training:")],
            "Understand": [st.Page(PAGES / "learn.py", title="Learn", icon=":material/school:")],
        }
    )
    page.run()


main()
