"""Learn page: a guided tour of cross-tokenizer distillation with SRA, each step on the live models."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from sra_viz import figures, geometry
from sra_viz.alignment import align_spans
from sra_viz.extraction import analyze_text
from sra_viz.ui import state
from sra_viz.vocab import shared_vocab

STEPS = [
    "Token alignment is brittle",
    "Spans",
    "Mass and center of mass",
    "Saliency",
    "Geometric regularizer",
    "Span logit distillation",
    "What the paper reports",
]
STEP_KEY = "learn_step"

NOT_NAMED = "not named in the public sources"
RESULTS = pd.DataFrame(
    [
        ("Qwen1.5-1.8B", "GPT2-120M", 15.35, "DSKD", 17.97),
        ("Qwen1.5-1.8B", "GPT2-340M", 15.57, NOT_NAMED, 18.10),
        ("Qwen2.5-7B", "GPT2-1.5B", 19.27, NOT_NAMED, 20.99),
        ("Qwen2.5-7B", "OPT-2.7B", 20.15, NOT_NAMED, 20.92),
        ("Mistral-7B", "TinyLlama-1.1B", 21.33, NOT_NAMED, 22.52),
    ],
    columns=["teacher", "student", "best baseline", "baseline name", "SRA"],
).assign(gain=lambda f: (f["SRA"] - f["best baseline"]).round(2))
ABLATION = pd.DataFrame(
    [
        ("span logit KD only", 17.10),
        ("span logit KD + geometric regularizer", 17.72),
        ("span cosine + geometric, no logit KD", 16.04),
        ("full SRA", 17.97),
        ("no saliency weighting (loss and pooling)", 14.85),
    ],
    columns=["variant (Qwen1.5-1.8B → GPT2-120M)", "average ROUGE-L"],
)
COST = pd.DataFrame(
    [("SRA", 0.275), ("DSKD", 0.352), ("MinED", 0.424), ("ULD", 0.439)],
    columns=["method", "seconds per step"],
)


def _go(delta: int) -> None:
    index = STEPS.index(st.session_state.get(STEP_KEY) or STEPS[0])
    st.session_state[STEP_KEY] = STEPS[min(max(index + delta, 0), len(STEPS) - 1)]


def live_features(text: str):
    """Alignment and span features of ``text`` on the selected pair, computed once per text."""
    store = state.results("learn")
    key = (text, *state.selected_specs())
    if store.get("key") != key:
        pair = state.get_pair()
        with st.spinner("Running both models on the text…"):
            alignment = align_spans(text, pair.teacher.tokenizer, pair.student.tokenizer)
            store.update(
                key=key, alignment=alignment, features=analyze_text(text, pair), pair=pair.teacher.name
            )
    return store["alignment"], store["features"]


def step_brittle(alignment, feats) -> None:
    st.markdown(
        "Classic knowledge distillation compares the teacher's and the student's next-token distributions "
        "**position by position**. That needs one vocabulary and one tokenization. Here the teacher "
        "(SentencePiece-style BPE with byte fallback, adds `<bos>`) and the student (byte-level BPE) cut "
        "the same text differently, so position *i* of one is rarely the same piece of text as position *i* "
        "of the other: a token-level method must guess a matching (edit distance, exact strings, or sorted "
        "probabilities as in ULD) and silently loses what does not match."
    )
    stats = alignment.stats()
    cols = st.columns(4)
    cols[0].metric("teacher tokens", stats["teacher_tokens"], help="text tokens, without special tokens")
    cols[1].metric("student tokens", stats["student_tokens"], help="text tokens, without special tokens")
    cols[2].metric("spans", stats["spans"])
    cols[3].metric("one-to-one spans", f"{stats['one_to_one_share']:.0%}")
    teacher = figures.token_labels(alignment.teacher, alignment.text)  # ␣ for a space, as on other pages
    student = figures.token_labels(alignment.student, alignment.text)
    width = max(len(teacher), len(student))
    side_by_side = pd.DataFrame(
        {
            "teacher token": teacher + [""] * (width - len(teacher)),
            "student token": student + [""] * (width - len(student)),
        }
    )
    st.caption(
        "The two token sequences of the current text, position by position (␣ is a space): the drift is "
        "the problem."
    )
    st.dataframe(side_by_side.head(60), height=260)


def step_spans(alignment, feats) -> None:
    st.markdown(
        "A **span** is the shortest stretch of text that both tokenizations start and end on. Walk the two "
        "lists of token end offsets (in UTF-8 bytes) with two pointers: every place where a teacher token "
        "and a student token end at the same byte is a boundary, and the tokens between two boundaries form "
        "a span. Both sides of a span cover exactly the same bytes, special tokens belong to no span, and "
        "the spans partition the text. Spans are the common units on which SRA compares the two models."
    )
    st.plotly_chart(figures.alignment_figure(alignment), key="learn_alignment")
    st.dataframe(alignment.to_frame().head(40), height=260)


def step_mass(alignment, feats) -> None:
    st.markdown(
        "Inside a span, which token matters? SRA asks the model itself: the **mass** of token *t* is the "
        "attention that the last real token pays to it, summed over heads and normalised (no gradient flows "
        "through it). A span's **center of mass** is the mass-weighted mean of its tokens' hidden states, "
        "one vector per span and per model, whatever the number of tokens in it."
    )
    st.latex(
        r"m_t = \frac{\sum_h A[h, q, t]}{\sum_{t'} \sum_h A[h, q, t']}, \qquad c_k = \frac{\sum_{t \in k} "
        r"m_t h_t}{\sum_{t \in k} m_t}"
    )
    st.plotly_chart(figures.saliency_figure(feats, feats.alignment), key="learn_mass")


def step_saliency(alignment, feats) -> None:
    st.markdown(
        "A span's mass $M_k = \\sum_{t\\in k} m_t$ says how much the model attends to it. Normalising the "
        "**teacher's** span masses gives the saliency weights $\\hat w_k$: SRA spends its effort on the "
        "spans "
        "the teacher finds important, both when pooling and in every loss. The ablation below shows this "
        "weighting matters most for small students."
    )
    st.latex(r"\hat w_k = \frac{(M_k^T)^p}{\sum_{k'} (M_{k'}^T)^p}, \quad p = 1")
    st.plotly_chart(figures.top_spans_figure(feats, feats.alignment, k=12), key="learn_saliency")


def step_geometry(alignment, feats) -> None:
    d_teacher = next(iter(feats.teacher.centers.values())).shape[-1]
    d_student = next(iter(feats.student.centers.values())).shape[-1]
    st.markdown(
        f"The teacher ({d_teacher} dimensions here) and the student ({d_student}) live in different spaces, "
        "but the **shape** of a set of spans can still be compared: the cosine Gram matrix of the span "
        "centers is N×N on both sides. The geometric regularizer makes the student's Gram match the "
        "teacher's, weighting each pair of spans by both saliencies; no projector is needed."
    )
    st.latex(
        r"L_{geo} = \sum_{k \neq k'} \pi_{kk'} \left(\langle \hat c_k^S, \hat c_{k'}^S\rangle - \langle \hat "
        r"c_k^T, \hat c_{k'}^T\rangle\right)^2, \quad \pi_{kk'} \propto \hat w_k \hat w_{k'}"
    )
    teacher = feats.teacher.centers[next(iter(feats.teacher.centers))]
    student = feats.student.centers[next(iter(feats.student.centers))]
    texts = [s.text for s in feats.alignment.spans]
    cols = st.columns(2)
    cols[0].metric(
        "Gram distance (saliency-weighted)", f"{geometry.gram_distance(teacher, student, feats.saliency):.4f}"
    )
    cols[1].metric("linear CKA", f"{geometry.linear_cka(teacher, student):.3f}")
    st.plotly_chart(figures.gram_matrices(teacher, student, texts, weights=feats.saliency), key="learn_gram")


def step_logits(alignment, feats) -> None:
    st.markdown(
        "Each model's own LM head can read a span center as if it were a hidden state: it gives a "
        "next-token distribution per span. The two vocabularies differ, so both distributions are "
        "restricted to **V∩**, the tokens that stand for the same bytes on both sides, and the student is "
        "pulled towards the teacher with a KL divergence at temperature τ = 2 (teacher head frozen)."
    )
    st.latex(
        r"L_{KD} = \sum_k "
        r"\mathrm{KL}\left(\mathrm{softmax}(z_k^T[V_\cap]/\tau)\,\|\,\mathrm{softmax}(z_k^S[V_\cap]/\tau)\right)"
    )
    st.latex(
        r"L = \alpha L_{CE} + (1-\alpha)\,(L_{span} + \lambda_{geo} L_{geo} + L_{KD}), \quad \alpha = "
        r"0.5,\ \lambda_{geo} = 50"
    )
    st.caption(
        "λ_geo = 50 is the default of the public DSKD port of SRA, which calls it the paper's value (an "
        "earlier reading gave 3; both are offered). The public code sums L_KD over spans; sra_viz weights "
        "the spans by saliency: with the sum, the KD gradient is about 30× the CE gradient and 1000× the "
        "geometric one, so a short run never moves the geometry (benchmarks/term_gradients.py measures "
        "this, docs/LOSS_SCALES.md). The Distill page lets you pick either."
    )
    pair = state.get_pair()
    with st.spinner("Matching the two vocabularies (once per pair)…"):
        shared = shared_vocab(pair.teacher.tokenizer, pair.student.tokenizer)
    cols = st.columns(3)
    cols[0].metric("teacher vocabulary", f"{pair.teacher.info.vocab_size:,}")
    cols[1].metric("student vocabulary", f"{pair.student.info.vocab_size:,}")
    cols[2].metric("shared V∩", f"{len(shared):,}")
    sample = pd.DataFrame(
        {
            "teacher token": pair.teacher.tokenizer.convert_ids_to_tokens(
                shared.teacher_ids[1000:1012].tolist()
            ),
            "student token": pair.student.tokenizer.convert_ids_to_tokens(
                shared.student_ids[1000:1012].tolist()
            ),
        }
    )
    st.caption("A few entries of V∩: spelled differently by the two tokenizers, the same bytes.")
    st.dataframe(sample, hide_index=True)


def step_paper(alignment, feats) -> None:
    st.markdown(
        "Reported in *SRA: Span Representation Alignment for Large Language Model Distillation* (ACL 2026): "
        "students trained on databricks-dolly-15k, average ROUGE-L over Dolly, VicunaEval, SelfInst, S-NI "
        "and DialogSum, 5 seeds."
    )
    st.subheader("Average ROUGE-L: best baseline vs SRA")
    st.dataframe(RESULTS, hide_index=True)
    st.subheader("Ablation")
    st.dataframe(ABLATION, hide_index=True)
    st.subheader("Cost per training step (their setup)")
    st.dataframe(COST, hide_index=True)
    st.caption("Try it here on the Distill page: SRA against ULD or exact-token KD on the same data.")


DRAW = dict(
    zip(
        STEPS,
        [step_brittle, step_spans, step_mass, step_saliency, step_geometry, step_logits, step_paper],
        strict=True,
    )
)

st.title("Learn")
st.markdown(
    "A guided tour of cross-tokenizer knowledge distillation with **SRA** (Span Representation Alignment). "
    "Every figure below is computed now, on the loaded teacher and student, for the text you choose."
)
with st.expander("Text for the tour", expanded=False):
    state.text_picker()
state.keep(STEP_KEY, STEPS[0], STEPS)
step = st.segmented_control("Step", STEPS, key=STEP_KEY) or STEPS[0]
index = STEPS.index(step)
st.progress((index + 1) / len(STEPS), text=f"Step {index + 1} of {len(STEPS)}")
st.header(step)
with state.reported("this step"):
    if step == "What the paper reports":
        step_paper(None, None)
    else:
        alignment, feats = live_features(state.check_text(state.current_text()))
        if feats.truncated:
            st.warning(feats.message)
        DRAW[step](alignment, feats)
back, forward, _ = st.columns([1, 1, 6])
back.button(
    "Back", icon=":material/arrow_back:", on_click=_go, args=(-1,), disabled=index == 0, key="learn_back"
)
forward.button(
    "Next",
    icon=":material/arrow_forward:",
    on_click=_go,
    args=(1,),
    disabled=index == len(STEPS) - 1,
    key="learn_next",
)
