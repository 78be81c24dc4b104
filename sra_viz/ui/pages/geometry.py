"""Geometry page: span centers of mass of many texts, teacher vs student, as pictures and numbers."""

from __future__ import annotations

import numpy as np
import streamlit as st

from sra_viz import export, figures, geometry, projection
from sra_viz.alignment import align_spans
from sra_viz.data import Example, load_bundled_corpus, load_examples
from sra_viz.distill.config import DistillConfig
from sra_viz.errors import SraVizError
from sra_viz.extraction import extract_corpus
from sra_viz.features import MASS_MODES
from sra_viz.samples import GEOMETRY_TEXTS
from sra_viz.ui import share, state

SOURCES = ["Bundled corpus", "Pasted texts", "Uploaded file"]
UPLOAD_MB = 20  # matches server.maxUploadSize in .streamlit/config.toml
MAX_TEXTS = 64  # a 2-core CPU runs both models on ~16 texts in about half a minute
N_TEXTS = range(2, MAX_TEXTS + 1)  # the "Number of texts" slider
SHARED = (
    share.Param("source", "geometry_source", choices=SOURCES),
    share.Param("texts", "geometry_pasted", when=lambda values: values.get("geometry_source") == SOURCES[1]),
    share.Param("n", "geometry_n", kind="int", choices=N_TEXTS),
    share.Param("mode", "geometry_mode", choices=MASS_MODES),
    share.Param("responses", "geometry_responses", kind="bool"),
    *share.PAIR,
)
PROBE_RIDGE = DistillConfig().probe_ridge  # the distillation probe's ridge strength, same measurement
FREE_LABELS = {  # projector-free measures: the two clouds compared as they are
    "cka": "linear CKA",
    "gram_distance": "Gram distance",
    "gram_distance_weighted": "Gram distance (ŵ-weighted)",
}
MAPPED_LABELS = {  # through the cross-fitted student->teacher map
    "cos": "cosine (out-of-sample)",
    "retrieval": "retrieval@1 (out-of-sample)",
}


def chosen_examples(source: str, n: int) -> list[Example]:
    """The first ``n`` examples of the chosen source (pasted texts: one per blank-line-separated block)."""
    if source == "Bundled corpus":
        return load_bundled_corpus()[:n]
    if source == "Pasted texts":
        raw = st.session_state.get("geometry_pasted") or ""
        blocks = [b for b in raw.split("\n\n") if b.strip()]
        if not blocks:
            raise SraVizError("no pasted text: paste at least one text (separate texts with a blank line)")
        return [Example("", state.check_text(b)) for b in blocks[:n]]
    upload = st.session_state.get("geometry_upload")
    if upload is None:
        raise SraVizError("no file uploaded: upload a JSONL, JSON, CSV or TSV file of examples")
    return load_examples(upload, max_bytes=UPLOAD_MB * 1_000_000)[:n]


def compute(examples: list[Example], mode: str, responses_only: bool) -> dict:
    """Span CoMs of every example at each model's last layer, plus the metrics that compare them."""
    pair = state.get_pair()
    items = [
        align_spans(ex.text, pair.teacher.tokenizer, pair.student.tokenizer, prompt_end=ex.prompt_end)
        if responses_only and ex.prompt_end
        else ex.text
        for ex in examples
    ]
    bar = st.progress(0.0, text=f"Running both models on {len(items)} texts…")

    def advance(done: int, total: int) -> None:
        bar.progress(done / total, text=f"{done}/{total} texts")

    corpus = extract_corpus(items, pair, batch_size=4, mass_mode=mode, progress=advance)
    bar.empty()
    teacher, student = corpus.teacher_centers[-1], corpus.student_centers[-1]  # (N, D_T), (N, D_S)
    if len(teacher) < 3:
        raise SraVizError(f"only {len(teacher)} spans in all: give longer or more texts (at least 3 spans)")
    frame = corpus.frame
    if frame["text_id"].nunique() < 2:
        raise SraVizError(
            "only one text: the student->teacher map is fitted on some texts and scored on the others, "
            "so give at least 2 texts"
        )
    # the distillation probe's measurement: map fitted on the other half of the texts (2-fold by text)
    scores, mapped = geometry.crossfit_scores(
        student, teacher, frame["text_id"].to_numpy(), PROBE_RIDGE, weights=frame["saliency"].to_numpy()
    )  # mapped (N, D_T): student in teacher space, out of sample
    return dict(
        corpus=corpus,
        mapped=mapped,
        free={"spans": len(teacher), **{label: scores[key] for key, label in FREE_LABELS.items()}},
        mapped_scores={label: scores[key] for key, label in MAPPED_LABELS.items()},
        pca=projection.project_snapshots(teacher, [mapped], method="pca"),
    )


def scatter(result: dict, projection, color: str):
    frame = result["corpus"].frame
    color_by = frame["text_id"].to_numpy() if color == "text" else frame["saliency"].to_numpy()
    title = (
        f"Span CoMs ({projection.method.upper()}): teacher vs student mapped into teacher space "
        "(out-of-sample map)"
    )
    return figures.com_scatter(
        projection.teacher[0],
        projection.student[0],
        frame["text"].tolist(),
        color_by=color_by,
        color_title="text" if color == "text" else "saliency ŵ",
        categorical=color == "text",
        title=title,
    )


st.title("Geometry")
st.markdown(
    "SRA aligns the **shape** of the span space, not just single spans. Here both models read many texts; "
    "every span gets a teacher and a student center of mass (last layer), and the two clouds are compared."
)
share.restore("geometry", SHARED)
state.keep("geometry_source", SOURCES[0], SOURCES)
source = st.radio("Texts", SOURCES, horizontal=True, key="geometry_source")
if source == "Pasted texts":
    state.keep("geometry_pasted", "\n\n".join(GEOMETRY_TEXTS[:6]))
    st.text_area("Texts (blank line between texts)", key="geometry_pasted", height=160)
elif source == "Uploaded file":
    st.file_uploader(
        f"Examples file (JSONL, JSON, CSV or TSV; up to {UPLOAD_MB} MB)",
        type=["jsonl", "json", "csv", "tsv"],
        key="geometry_upload",
        max_upload_size=UPLOAD_MB,
        help="Columns instruction/response (Dolly), prompt/response, text, or chat messages.",
    )
left, mid, right = st.columns(3)
state.keep("geometry_n", 12)
n_texts = left.slider("Number of texts (first N)", N_TEXTS.start, N_TEXTS.stop - 1, key="geometry_n")
state.keep("geometry_mode", MASS_MODES[0], MASS_MODES)
mode = mid.selectbox("Mass mode", list(MASS_MODES), key="geometry_mode")
state.keep("geometry_responses", True)
responses_only = right.toggle(
    "Responses only",
    key="geometry_responses",
    help="Align only the response of prompt/response examples, as distillation does.",
)

state.selected_specs()  # the pair is part of the shared view
share.publish("geometry", SHARED)
store = state.results("geometry")
if st.button("Compute span centers", type="primary", icon=":material/play_arrow:", key="geometry_run"):
    with state.reported("geometry"):
        examples = chosen_examples(source, n_texts)
        computed = compute(examples, mode, responses_only)
        store.clear()
        store.update(result=computed, source=f"{source} · {len(examples)} texts · {mode}")

result = store.get("result")
if result is None:
    st.info("Pick the texts and press **Compute span centers** (about 2 s per text on a CPU).")
    st.stop()

st.caption(f"Showing: {store['source']}")
for message in result["corpus"].messages.values():
    st.warning(message)
st.markdown("**Projector-free**: the two clouds compared as they are (different dimensions).")
for col, (name, value) in zip(st.columns(len(result["free"])), result["free"].items(), strict=True):
    col.metric(name, value if name == "spans" else f"{value:.3f}")
st.markdown("**Through a student→teacher map, out of sample**")
for col, (name, value) in zip(st.columns(4), result["mapped_scores"].items(), strict=False):
    col.metric(name, f"{value:.3f}")
st.info(
    "CKA and the Gram distances (unweighted, and weighted by the teacher's saliency ŵ as L_geo is) need "
    "no map. For cosine, retrieval and the scatter, the student is mapped into the teacher's space by a "
    "ridge-regression map (a stand-in for SRA's trained projector) **fitted on the other half of the "
    "texts**: the odd-numbered texts are scored by a map fitted on the even-numbered ones and vice "
    "versa, so every number is **out-of-sample** — the same cross-fitted measurement as the "
    "distillation probe. Retrieval@1 asks, within each text, whether a mapped student span's nearest "
    "teacher span is its own counterpart.",
    icon=":material/info:",
)

state.keep("geometry_color", "text")
color = st.radio("Colour by", ["text", "saliency"], horizontal=True, key="geometry_color")
st.plotly_chart(scatter(result, result["pca"], color), key="geometry_pca")
if "umap" not in store:
    st.caption("UMAP keeps local neighbourhoods better than PCA but takes longer: it is computed on request.")
    if st.button("Compute UMAP", icon=":material/bubble_chart:", key="geometry_umap"):
        with (
            state.reported("UMAP"),
            st.spinner("Fitting UMAP (the first fit compiles numba kernels: up to a minute)…"),
        ):
            teacher = result["corpus"].teacher_centers[-1]
            store["umap"] = projection.project_snapshots(teacher, [result["mapped"]], method="umap")
if "umap" in store:
    st.plotly_chart(scatter(result, store["umap"], color), key="geometry_umap_chart")

st.subheader("Gram matrices of one text")
frame = result["corpus"].frame
text_ids = sorted(frame["text_id"].unique().tolist())
state.keep("geometry_text", text_ids[0], text_ids)
chosen = st.selectbox("Text", text_ids, key="geometry_text")
rows = np.flatnonzero(frame["text_id"].to_numpy() == chosen)
st.plotly_chart(
    figures.gram_matrices(
        result["corpus"].teacher_centers[-1][rows],
        result["corpus"].student_centers[-1][rows],
        frame["text"].iloc[rows].tolist(),
        weights=frame["saliency"].to_numpy()[rows],
    ),
    key="geometry_gram",
)
st.download_button(
    "Span table (CSV)",
    export.frame_to_csv_bytes(frame),
    file_name="span_centers.csv",
    mime="text/csv",
    key="geometry_csv",
    on_click="ignore",
    icon=":material/table:",
)
