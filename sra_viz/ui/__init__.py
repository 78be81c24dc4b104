"""The Streamlit user interface of sra_viz: the only part of the package that imports Streamlit.

``app.py`` at the repository root routes to one page per file in ``sra_viz/ui/pages/``; pages call
library functions and draw, ``state`` holds the shared models and per-session results, and
``worker`` runs distillation in a thread that never touches Streamlit.

Run: ``streamlit run app.py``
"""
