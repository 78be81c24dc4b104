"""Alignment page: one text cut into the spans both tokenizers share, as a diagram, a table and statistics;
and, as a second view, SRA's spans next to what the token-level aligners (GOLD, ULD, MinED) pair."""

from __future__ import annotations

import functools

import streamlit as st

from sra_viz import export, figures
from sra_viz.aligner_comparison import compare_aligners
from sra_viz.alignment import align_spans
from sra_viz.ui import share, state

VIEWS = ("Spans", "Aligners compared")
SHARED = (
    share.Param("text", state.TEXT_KEY),
    share.Param("word", "align_word", kind="bool"),
    share.Param("view", "align_view", choices=VIEWS, words={"spans": VIEWS[0], "compare": VIEWS[1]}),
    *share.PAIR,
)
COUNT_COLUMNS = {  # AlignerCounts field -> column title of the counts table
    "title": "aligner",
    "pairs": "pairs",
    "wrong_pairs": "wrong pairs",
    "wrong_bytes": "bytes on one side only",
    "unpaired_teacher": "teacher tokens unpaired",
    "unpaired_student": "student tokens unpaired",
}


def aligned(text: str, granularity: str):
    """The alignment of ``text`` on the selected tokenizers, recomputed only when an input changed."""
    store = state.results("alignment")
    key = (text, granularity, *state.selected_specs())
    if store.get("key") != key:
        teacher_tok, student_tok = state.get_tokenizers()
        alignment = align_spans(text, teacher_tok, student_tok, granularity=granularity)
        store.update(key=key, alignment=alignment, figure=figures.alignment_figure(alignment))
    return store["alignment"], store["figure"]


def compared(alignment):
    """The aligners' pairs of ``alignment`` and their figure, recomputed only when the alignment changed."""
    store = state.results("alignment")
    if store.get("compared_key") != store["key"]:
        comparison = compare_aligners(alignment)
        store.update(
            compared_key=store["key"],
            comparison=comparison,
            comparison_figure=figures.aligner_comparison_figure(comparison),
        )
    return store["comparison"], store["comparison_figure"]


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


def show_spans(alignment, fig) -> None:
    """The span diagram, the span table and the downloads."""
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


def show_comparison(alignment) -> None:
    """SRA's spans next to GOLD's groups, ULD's positions and MinED's pairs, judged by the bytes."""
    comparison, fig = compared(alignment)
    st.markdown(
        "Token-level aligners pair **tokens**; the text is made of **bytes**. A pair is **right** when its "
        "teacher tokens and its student tokens cover the same bytes of the text, **wrong** otherwise. "
        "**ULD** pairs the k-th token of each side, so it drifts after the first word the two tokenizers "
        "split differently; **MinED** pairs tokens whose texts are close in edit distance (one-to-one only); "
        "**GOLD** groups tokens until both sides end at the same byte, as SRA's spans do."
    )
    table = comparison.to_frame()[list(COUNT_COLUMNS)].rename(columns=COUNT_COLUMNS)
    st.dataframe(table, hide_index=True)
    st.plotly_chart(fig, key="alignment_comparison")
    st.caption("Hover a band for the tokens and bytes of both sides. Grey: tokens no pair holds.")
    st.download_button(
        "Pairs of every aligner (CSV)",
        lambda: export.frame_to_csv_bytes(comparison.pairs_frame()),  # built on click
        file_name="aligner_pairs.csv",
        mime="text/csv",
        icon=":material/table:",
        key="alignment_pairs_csv",
        on_click="ignore",
    )


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
    state.keep("align_view", VIEWS[0], VIEWS)
    view = st.segmented_control(
        "View",
        VIEWS,
        key="align_view",
        help="Spans: SRA's spans of the text. Aligners compared: what token-level aligners pair instead.",
    )
    if view == VIEWS[1]:
        show_comparison(alignment)
    else:
        show_spans(alignment, fig)
share.publish("alignment", SHARED)
