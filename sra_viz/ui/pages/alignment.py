"""Alignment page: one text cut into the spans both tokenizers share, as a diagram, a table and statistics."""

from __future__ import annotations

import functools

import streamlit as st

from sra_viz import export, figures
from sra_viz.alignment import align_spans
from sra_viz.ui import share, state

SHARED = (
    share.Param("text", state.TEXT_KEY),
    share.Param("word", "align_word", kind="bool"),
    *share.PAIR,
)


def aligned(text: str, granularity: str):
    """The alignment of ``text`` on the selected tokenizers, recomputed only when an input changed."""
    store = state.results("alignment")
    key = (text, granularity, *state.selected_specs())
    if store.get("key") != key:
        teacher_tok, student_tok = state.get_tokenizers()
        alignment = align_spans(text, teacher_tok, student_tok, granularity=granularity)
        store.update(key=key, alignment=alignment, figure=figures.alignment_figure(alignment))
    return store["alignment"], store["figure"]


def show_stats(stats: dict) -> None:
    """The alignment statistics as two rows of metrics."""
    top = st.columns(4)
    top[0].metric("spans", stats["spans"])
    top[1].metric("teacher tokens", stats["teacher_tokens"])
    top[2].metric("student tokens", stats["student_tokens"])
    top[3].metric(
        "one-to-one spans", f"{stats['one_to_one_share']:.1%}", help="spans of exactly one token per side"
    )
    low = st.columns(4)
    low[0].metric("teacher tokens / span", f"{stats['teacher_tokens_per_span']:.2f}")
    low[1].metric("student tokens / span", f"{stats['student_tokens_per_span']:.2f}")
    low[2].metric("teacher fertility", f"{stats['teacher_fertility']:.2f}", help="tokens per whitespace word")
    low[3].metric("student fertility", f"{stats['student_fertility']:.2f}", help="tokens per whitespace word")


st.title("Alignment")
share.restore("alignment", SHARED)
teacher_spec, student_spec = state.selected_specs()
st.markdown(
    f"The teacher **{teacher_spec}** and the student **{student_spec}** tokenize the same text differently. "
    "SRA cuts it into **spans**: the finest pieces both tokenizations start and end on (in UTF-8 bytes). "
    "Hover a token for its id and bytes, or a band for its span."
)
text = state.text_picker()
state.keep("align_word", False)
word_level = st.toggle(
    "Word-level spans",
    key="align_word",
    help="Merge spans up to whitespace and character-class changes: a coarser, easier-to-read view.",
)

with state.reported("alignment"):
    alignment, fig = aligned(state.check_text(text), "word" if word_level else "token")
    show_stats(alignment.stats())
    st.plotly_chart(fig, key="alignment_diagram")
    frame = alignment.to_frame()
    st.subheader("Span table")
    st.dataframe(frame, hide_index=True, height=320)
    downloads = st.container(horizontal=True)
    downloads.download_button(
        "Span table (CSV)",
        export.frame_to_csv_bytes(frame),
        file_name="spans.csv",
        mime="text/csv",
        icon=":material/table:",
        key="alignment_csv",
        on_click="ignore",
    )
    downloads.download_button(
        "Diagram (offline HTML)",
        lambda: export.figure_to_html_bytes(fig, title="sra_viz span alignment"),
        file_name="alignment.html",
        mime="text/html",
        icon=":material/download:",
        key="alignment_html",
        on_click="ignore",
    )
    for fmt in export.IMAGE_FORMATS:  # rendered on click: a few seconds in a headless Chromium
        downloads.download_button(
            f"Diagram ({fmt.upper()})",
            functools.partial(export.figure_to_image_bytes, fig, fmt),
            file_name=f"alignment.{fmt}",
            mime="image/png" if fmt == "png" else "image/svg+xml",
            icon=":material/image:",
            key=f"alignment_{fmt}",
            on_click="ignore",
        )
share.publish("alignment", SHARED)
