"""Saliency page: where each model puts its attention mass, span by span, for one text."""

from __future__ import annotations

import streamlit as st

from sra_viz import figures
from sra_viz.extraction import analyze_text
from sra_viz.features import MASS_MODES
from sra_viz.ui import share, state

MODE_HELP = {
    "last_token": "attention the last real token pays to each token, summed over heads (SRA's choice)",
    "received": "attention each token receives, averaged over the queries that can see it",
    "uniform": "every token weighs the same: plain mean pooling (the paper's ablation)",
}
ALL_HEADS = "all heads"
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


def features_for(text: str, mode: str, teacher: tuple, student: tuple):
    """Span features of ``text`` on the pair, recomputed only when an input changed."""
    store = state.results("saliency")
    key = (text, mode, teacher, student, *state.selected_specs())
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
            )
        store.update(key=key, features=feats)
    return store["features"]


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
    feats = features_for(state.check_text(text), mode, teacher_choice, student_choice)
    if feats.truncated:
        st.warning(feats.message)
    st.plotly_chart(figures.saliency_figure(feats, feats.alignment), key="saliency_text")
    heat, top = st.tabs(["Attention heatmap", "Top salient spans"])
    with heat:
        state.keep("saliency_side", "teacher")
        side = st.radio("Model", ["teacher", "student"], horizontal=True, key="saliency_side")
        layer, head = teacher_choice if side == "teacher" else student_choice
        label = f"layer {layer}" + ("" if head is None else f" · mass from head {head}")
        st.plotly_chart(
            figures.attention_figure(feats, feats.alignment, side=side, layer_label=label),
            key="saliency_heat",
        )
    with top:
        state.keep("saliency_k", 15)
        k = st.slider("How many spans", TOP_K.start, TOP_K.stop - 1, key="saliency_k")
        st.plotly_chart(figures.top_spans_figure(feats, feats.alignment, k=k), key="saliency_top")
        st.dataframe(feats.to_frame().sort_values("saliency", ascending=False), hide_index=True, height=280)
share.publish("saliency", SHARED)
