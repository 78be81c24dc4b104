"""Saliency page: where each model puts its attention mass, span by span, for one text; and, over the
sample texts, which kinds of spans the teacher's mass goes to."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from sra_viz import figures
from sra_viz.corpus_saliency import corpus_saliency
from sra_viz.extraction import analyze_text
from sra_viz.features import MASS_MODES
from sra_viz.figures.saliency import COLOUR_SCALES
from sra_viz.samples import SAMPLES
from sra_viz.ui import share, state

MODE_HELP = {
    "last_token": "attention the last real token pays to each token, summed over heads (SRA's choice)",
    "received": "attention each token receives, averaged over the queries that can see it",
    "uniform": "every token weighs the same: plain mean pooling (the paper's ablation)",
}
SCALE_HELP = {
    "linear": "colour = mass share",
    "log": "colour = log10 of the mass share: small masses differ visibly",
    "rank": "colour = the span's rank by mass: every step of the order shows",
}
ALL_HEADS = "all heads"
TEXT_WIDTH = 960  # px of the coloured text: drawn at this size, so span labels fit their cells
TOP_K = range(5, 41)  # the "How many spans" slider
SHARED = (
    share.Param("text", state.TEXT_KEY),
    share.Param("mode", "saliency_mode", choices=MASS_MODES),
    *(
        share.Param(f"{role}_{what}", f"saliency_{role}_{what}", kind="int", words=words)
        for role in ("teacher", "student")
        for what, words in (("layer", {}), ("head", {"all": ALL_HEADS}))
    ),
    share.Param("side", "saliency_side", choices=("teacher", "student")),
    share.Param("k", "saliency_k", kind="int", choices=TOP_K),
    share.Param("scale", "saliency_scale", choices=COLOUR_SCALES),
    share.Param("sinks", "saliency_sinks", kind="bool"),
    share.Param("windowed", "saliency_windowed", kind="bool"),
    *share.PAIR,
)


def layer_and_head(column, role: str, info) -> tuple[int, int | None]:
    """Layer and head pickers for one side (each model has its own depth and head count)."""
    layers, heads = list(range(info.layers)), [ALL_HEADS, *range(info.heads)]
    state.keep(f"saliency_{role}_layer", layers[-1], layers)
    layer = column.selectbox(
        f"{role} layer",
        layers,
        key=f"saliency_{role}_layer",
        help="the output of this block gives the hidden states; its attention gives the mass",
    )
    state.keep(f"saliency_{role}_head", ALL_HEADS, heads)
    head = column.selectbox(
        f"{role} head", heads, key=f"saliency_{role}_head", help="sum over heads (SRA) or one head only"
    )
    return int(layer), None if head == ALL_HEADS else int(head)


def features_for(text: str, mode: str, teacher: tuple, student: tuple, windowed: bool):
    """Span features of ``text`` on the pair, recomputed only when an input changed."""
    store = state.results("saliency")
    key = (text, mode, teacher, student, windowed, *state.selected_specs())
    if store.get("key") != key:
        pair = state.get_pair()
        with st.spinner("Running the teacher and the student on the text…"):
            feats = analyze_text(
                text,
                pair,
                teacher_layers=(teacher[0],),
                student_layers=(student[0],),
                mass_mode=mode,
                head=(teacher[1], student[1]),
                keep_attention=True,
                windowed=windowed,
            )
        store.update(key=key, features=feats)
    return store["features"]


def show_corpus(mode: str, teacher: tuple) -> None:
    """Teacher mass by span kind over the sample texts, computed on request (both models on every text)."""
    st.markdown(
        f"Over the **{len(SAMPLES)} sample texts**: which kinds of spans the teacher's mass goes to, with "
        "the mass mode, teacher layer and head chosen above. Each text weighs the same; a kind whose mass "
        "share outgrows its share of spans draws more attention than its frequency."
    )
    state.keep("saliency_corpus_sinks", True)
    drop = st.toggle(
        "Leave out the sink spans",
        key="saliency_corpus_sinks",
        help="The first and the last span of each text (the attention sinks) are left out and the other "
        "masses renormalised, so the sinks do not swamp every other kind.",
    )
    store = state.results("saliency_corpus")
    key = (mode, teacher, drop, *state.selected_specs())
    if st.button("Analyse the sample texts", key="saliency_corpus_run", icon=":material/analytics:"):
        pair = state.get_pair()
        with st.spinner(f"Running the teacher and the student on {len(SAMPLES)} texts…"):
            result = corpus_saliency(
                list(SAMPLES.values()),
                pair,
                layer=teacher[0],
                head=teacher[1],
                mass_mode=mode,
                drop_sinks=drop,
            )
        store.update(key=key, corpus=result)
    if store.get("key") != key:
        st.info("Press **Analyse the sample texts** to run both models on every sample (a few seconds).")
        return
    result = store["corpus"]
    st.plotly_chart(figures.corpus_saliency_figure(result), key="saliency_corpus_figure")
    kinds = [table.assign(axis=axis) for axis, table in result.kinds.items()]
    frame = pd.concat(kinds, ignore_index=True)[["axis", "kind", "mass", "spans", "n_spans"]]
    st.dataframe(frame, hide_index=True, height=280)


st.title("Saliency")
st.markdown(
    "SRA weighs every token by its **mass**, the attention the model pays to it, and every span by the sum "
    "of its tokens' masses. The teacher's span masses, normalised, are the **saliency** weights ŵ that "
    "steer pooling and every loss."
)
share.restore("saliency", SHARED)
text = state.text_picker()
with state.reported("saliency"):
    pair = state.get_pair()
    state.keep("saliency_mode", MASS_MODES[0], MASS_MODES)
    mode = st.segmented_control("Mass mode", list(MASS_MODES), key="saliency_mode") or MASS_MODES[0]
    st.caption(MODE_HELP[mode])
    left, right = st.columns(2)
    teacher_choice = layer_and_head(left, "teacher", pair.teacher.info)
    student_choice = layer_and_head(right, "student", pair.student.info)
    scale_col, sinks_col, window_col = st.columns(3)
    state.keep("saliency_scale", COLOUR_SCALES[0], COLOUR_SCALES)
    scale = scale_col.segmented_control("Colour scale", COLOUR_SCALES, key="saliency_scale") or "linear"
    scale_col.caption(SCALE_HELP[scale])
    state.keep("saliency_sinks", True)
    sinks = sinks_col.toggle(
        "Sinks out of the colour range",
        key="saliency_sinks",
        help="Attention sinks: the first and the last span take most of the mass. Left out of the colour "
        "range, they saturate and the other spans' differences show (the colour bar says so).",
    )
    state.keep("saliency_windowed", False)
    windowed = window_col.toggle(
        "Windowed analysis",
        key="saliency_windowed",
        help="A text longer than the models' window (512 tokens) is cut; windowed analysis covers all of "
        "it with consecutive windows of whole spans (no attention heatmap then).",
    )
    feats = features_for(state.check_text(text), mode, teacher_choice, student_choice, windowed)
    if feats.truncated:
        st.warning(feats.message.replace("pass windowed=True", "turn on **Windowed analysis**"))
    st.plotly_chart(
        figures.saliency_figure(feats, feats.alignment, scale=scale, exclude_sinks=sinks, width=TEXT_WIDTH),
        key="saliency_text",
        width="content",
    )
    heat, top, corpus = st.tabs(["Attention heatmap", "Top salient spans", "Corpus"])
    with heat:
        state.keep("saliency_side", "teacher")
        side = st.radio("Model", ["teacher", "student"], horizontal=True, key="saliency_side")
        layer, head = teacher_choice if side == "teacher" else student_choice
        if getattr(feats, side).attention is None:
            st.info("The heatmap shows one window: turn off **Windowed analysis** to see it.")
        else:
            st.plotly_chart(
                figures.attention_figure(
                    feats,
                    feats.alignment,
                    side=side,
                    layer_label=f"layer {layer}" + ("" if head is None else f" · head {head}"),
                    head=head,
                ),
                key="saliency_heat",
            )
    with top:
        state.keep("saliency_k", 15)
        k = st.slider("How many spans", TOP_K.start, TOP_K.stop - 1, key="saliency_k")
        st.plotly_chart(figures.top_spans_figure(feats, feats.alignment, k=k), key="saliency_top")
        st.dataframe(feats.to_frame().sort_values("saliency", ascending=False), hide_index=True, height=280)
    with corpus:
        show_corpus(mode, teacher_choice)
share.publish("saliency", SHARED)
