"""Export figures and tables: offline standalone HTML (plotly.js embedded), PNG/SVG images, CSV and parquet.

Images are plotly's static export (kaleido), which renders in a headless Chromium: the one
``scripts/install_browser.sh`` (``make browser``) installs at /usr/bin/chromium.

Every writer has a ``*_bytes`` twin for Streamlit download buttons.

    >>> html = figure_to_html(go.Figure())  # doctest: +SKIP
    >>> "<script src=\\"http" in html  # doctest: +SKIP
    False
"""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from .errors import SraVizError

PathLike = str | os.PathLike


def figure_to_html(fig: go.Figure, path: PathLike | None = None, title: str | None = None) -> str:
    """A standalone HTML page with plotly.js inlined (works offline, no CDN); written to ``path`` if given.

    >>> "plotly" in figure_to_html(go.Figure())  # doctest: +SKIP
    True
    """
    if not isinstance(fig, go.Figure):
        raise SraVizError(f"figure_to_html needs a plotly go.Figure, got {type(fig).__name__}")
    html = fig.to_html(
        full_html=True,
        include_plotlyjs=True,
        include_mathjax=False,
        auto_play=False,  # animated figures open on their first frame; the slider drives them
        config={"displaylogo": False, "responsive": True},
    )
    if title:
        html = html.replace("<head>", f"<head><title>{_escape(title)}</title>", 1)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(html, encoding="utf-8")
    return html


def figure_to_html_bytes(fig: go.Figure, title: str | None = None) -> bytes:
    """UTF-8 bytes of :func:`figure_to_html` (for ``st.download_button``)."""
    return figure_to_html(fig, title=title).encode("utf-8")


IMAGE_FORMATS = ("png", "svg")
# kaleido 1.x can call into its page before the page's script has run (seen on a loaded 2-core machine:
# "ReferenceError: kaleido_scopes is not defined"): that error, and only it, is tried again
_PAGE_NOT_READY = "kaleido_scopes is not defined"
EXPORT_TRIES = 3


def figure_to_image_bytes(fig: go.Figure, fmt: str = "png", scale: float = 2.0) -> bytes:
    """The figure as a PNG (``scale`` x its layout size, for sharp pictures) or an SVG, via kaleido.

    Takes a few seconds (kaleido starts a headless Chromium). SraVizError when kaleido or the browser is
    missing, saying how to install them.
        >>> figure_to_image_bytes(go.Figure(), "png")[:4]  # doctest: +SKIP
        b'\x89PNG'
    """
    if not isinstance(fig, go.Figure):
        raise SraVizError(f"figure_to_image_bytes needs a plotly go.Figure, got {type(fig).__name__}")
    if fmt not in IMAGE_FORMATS:
        raise SraVizError(f"image format {fmt!r} is not one of {', '.join(IMAGE_FORMATS)}")
    if importlib.util.find_spec("kaleido") is None:  # plotly's static export engine
        raise SraVizError(
            "PNG/SVG export needs the kaleido package: pip install 'kaleido>=1.0' (make setup installs it)"
        )
    import plotly.io as pio

    for attempt in range(1, EXPORT_TRIES + 1):
        try:
            return pio.to_image(fig, format=fmt, scale=scale if fmt == "png" else 1.0)
        except Exception as exc:  # kaleido reports a missing or broken browser with its own error types
            if attempt < EXPORT_TRIES and _PAGE_NOT_READY in str(exc):
                continue  # each call starts its own browser: the next one gets a fresh page
            raise SraVizError(
                f"{fmt.upper()} export failed ({type(exc).__name__}: {str(exc)[:200]}); it renders in a "
                "headless Chromium: run `make browser` (scripts/install_browser.sh) to install one"
            ) from None
    raise AssertionError("unreachable: the last try returns or raises")


def figure_to_image(fig: go.Figure, path: PathLike, scale: float = 2.0) -> Path:
    """Write :func:`figure_to_image_bytes` to ``path``; the format is the file's suffix (.png or .svg)."""
    out = Path(path)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise SraVizError(f"{out.name}: give a .png or .svg file name for an image")
    data = figure_to_image_bytes(fig, fmt, scale)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def _frame(frame) -> pd.DataFrame:
    if hasattr(frame, "to_frame") and not isinstance(frame, pd.DataFrame | pd.Series):
        frame = frame.to_frame()  # SpanAlignment, SpanFeatures, ...
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    return frame


def frame_to_csv(frame, path: PathLike | None = None) -> str:
    """CSV text of a DataFrame (or rows, or an object with ``.to_frame()``); written to ``path`` if given.

    >>> frame_to_csv([{"a": 1}])
    'a\\n1\\n'
    """
    text = _frame(frame).to_csv(index=False)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def frame_to_csv_bytes(frame) -> bytes:
    """UTF-8 CSV bytes (for download buttons)."""
    return frame_to_csv(frame).encode("utf-8")


def frame_to_parquet_bytes(frame) -> bytes:
    """Parquet bytes (pyarrow); list/array cells are kept as lists.

    >>> pd.read_parquet(io.BytesIO(frame_to_parquet_bytes([{"a": 1}]))).a.tolist()
    [1]
    """
    buffer = io.BytesIO()
    frame = _frame(frame)
    # numpy arrays in object columns -> lists, which pyarrow stores as list columns
    for col in frame.columns:
        if frame[col].dtype == object and frame[col].map(lambda v: hasattr(v, "tolist")).any():
            frame = frame.assign(**{col: frame[col].map(lambda v: v.tolist() if hasattr(v, "tolist") else v)})
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()


def frame_to_parquet(frame, path: PathLike) -> Path:
    """Write a parquet file; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(frame_to_parquet_bytes(frame))
    return path


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
