"""Distill page: train the student live (SRA or a token-level baseline), watch it converge, compare runs."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import streamlit as st

from sra_viz import figures, geometry, paths
from sra_viz.distill import DistillConfig, DistillSession, list_runs, load_run
from sra_viz.distill.config import KD_WEIGHTINGS, METHODS, VARIANTS, field_defaults
from sra_viz.distill.runs import load_snapshots
from sra_viz.errors import SraVizError
from sra_viz.ui import state
from sra_viz.ui.worker import TrainingWorker

WORKER_KEY = "distill_worker"
METHOD_NAMES = {
    "sra": "SRA (span alignment)",
    "uld": "ULD (token level)",
    "exact": "Exact-token KD (token level)",
}
VARIANT_NAMES = {
    "truncated": "truncated: first k blocks (fast, starts far away)",
    "last_k": "last k blocks train",
    "full": "full fine-tune (slow on a CPU)",
}
# curves worth watching, in this order; whichever the run logs are drawn
CURVES = ["loss", "span", "geo", "kd", "ce", "uld", "exact", "dynamics", "probe_cos", "probe_cka",
          "probe_gram_distance", "probe_retrieval", "heldout_ppl"]  # fmt: skip
ABLATIONS = {
    "use_span": "L_span: span cosine through the projector",
    "use_geo": "L_geo: geometric regularizer",
    "use_kd": "L_KD: span logit distillation on V∩",
    "use_ce": "L_CE: the student's own next-token loss",
    "weighted_pooling": "attention-weighted pooling (off: plain mean)",
    "weighted_loss": "saliency-weighted losses (off: uniform)",
}


def config_from_widgets() -> DistillConfig:
    """The DistillConfig the widgets describe, for the selected pair (validated)."""
    teacher, student = state.selected_specs()
    s = st.session_state
    every = int(s["distill_probe_every"])
    switches: dict[str, Any] = {name: bool(s[f"distill_{name}"]) for name in ABLATIONS}
    run_root = Path(s["distill_root"]).expanduser()
    if run_root.exists() and not run_root.is_dir():
        raise SraVizError(
            f"runs folder {str(run_root)!r} is a file: give a folder (it is created if missing)"
        )
    run_root.mkdir(parents=True, exist_ok=True)
    return DistillConfig(
        teacher=teacher, student=student, method=s["distill_method"], steps=int(s["distill_steps"]),
        batch_size=int(s["distill_batch"]), max_length=int(s["distill_max_length"]), lr=float(s["distill_lr"]),
        student_variant=s["distill_variant"], student_k=int(s["distill_k"]), log_every=every,
        snapshot_every=every, probe_size=int(s["distill_probe"]), seed=int(s["distill_seed"]),
        out=str(run_root / f"{s['distill_method']}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"),
        alpha=float(s["distill_alpha"]), lambda_geo=float(s["distill_lambda_geo"]), tau=float(s["distill_tau"]),
        kd_weighting=s["distill_kd_weighting"], **switches,
    ).validate()  # fmt: skip


def draw_config(student_layers: int) -> None:
    """Every widget of the run configuration (values live in session state)."""
    a, b, c = st.columns(3)
    state.keep("distill_method", "sra", METHODS)
    a.selectbox("Method", list(METHODS), format_func=lambda m: METHOD_NAMES[m], key="distill_method")
    state.keep("distill_variant", "truncated", VARIANTS)
    a.selectbox(
        "Student variant", list(VARIANTS), format_func=lambda v: VARIANT_NAMES[v], key="distill_variant"
    )
    state.keep("distill_k", min(6, student_layers))
    a.slider("k (blocks)", 1, student_layers, key="distill_k")
    state.keep("distill_steps", 20)
    b.number_input("Steps", 1, 2000, key="distill_steps")
    state.keep("distill_batch", 4)
    b.number_input("Batch size", 1, 32, key="distill_batch")
    state.keep("distill_max_length", 64)
    b.number_input("Max tokens per text", 16, 512, step=16, key="distill_max_length")
    lrs = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3]
    state.keep("distill_lr", 1e-4, lrs)
    c.select_slider("Learning rate", lrs, format_func=lambda v: f"{v:g}", key="distill_lr")
    state.keep("distill_probe_every", 5)
    c.number_input(
        "Probe every N steps", 1, 500, key="distill_probe_every", help="probe metrics + geometry snapshot"
    )
    state.keep("distill_probe", 8)
    c.number_input("Probe texts", 2, 64, key="distill_probe", help="fixed texts the geometry is measured on")
    with st.expander("SRA terms and ablations", expanded=False):
        cols = st.columns(2)
        for i, (name, label) in enumerate(ABLATIONS.items()):
            state.keep(f"distill_{name}", True)
            cols[i % 2].toggle(label, key=f"distill_{name}")
        defaults = field_defaults()
        w = st.columns(4)
        state.keep("distill_alpha", defaults["alpha"])
        w[0].number_input("α (CE weight)", 0.0, 1.0, step=0.1, key="distill_alpha",
                          help="L = α·CE + (1−α)·(L_span + λ_geo·L_geo + L_KD)")  # fmt: skip
        state.keep("distill_lambda_geo", defaults["lambda_geo"])
        w[1].number_input("λ_geo", 0.0, 1000.0, step=1.0, key="distill_lambda_geo",
                          help="weight of L_geo; 50 (the DSKD port's default) or e.g. 3 (see the Learn page)")  # fmt: skip
        state.keep("distill_tau", defaults["tau"])
        w[2].number_input("τ (KD temperature)", 0.1, 20.0, step=0.5, key="distill_tau")
        state.keep("distill_kd_weighting", defaults["kd_weighting"], KD_WEIGHTINGS)
        w[3].selectbox("L_KD over spans", list(KD_WEIGHTINGS), key="distill_kd_weighting",
                       format_func=lambda v: {"saliency": "saliency-weighted", "sum": "sum (published)"}[v])  # fmt: skip
        st.caption(
            "ULD and exact-token KD use L_CE and their own token-level term; the other switches are SRA's. "
            "L_KD summed over spans is the public code's form; our saliency weighting and λ_geo = 50 (the "
            "DSKD port's default) keep the three distillation terms on one gradient scale."
        )
    with st.expander("Run folder and seed", expanded=False):
        state.keep("distill_root", str(paths.runs_dir()))
        st.text_input("Runs folder", key="distill_root", help="each run writes a folder here")
        state.keep("distill_seed", 0)
        st.number_input("Seed", 0, 10_000, key="distill_seed")


def start_new() -> None:
    old = st.session_state.get(WORKER_KEY)
    if old is not None and old.progress().active:
        raise SraVizError("a run is already going in this session: stop it before starting another")
    config = config_from_widgets()
    pair = state.get_pair()  # shared and read-only: the engine trains its own deep copy of the student
    worker = TrainingWorker(lambda say: DistillSession(config, pair, progress=say))
    worker.start()
    st.session_state[WORKER_KEY] = worker


def resume_run(run_dir: str, more_steps: int) -> None:
    pair = state.get_pair()
    _, metrics, _ = load_run(run_dir)
    done = int(metrics["step"].max()) if "step" in metrics and len(metrics) else 0
    worker = TrainingWorker(
        lambda say: DistillSession.resume(run_dir, pair=pair, progress=say, steps=done + more_steps)
    )
    worker.start()
    st.session_state[WORKER_KEY] = worker


def geometry_animation(run_dir: str):
    """The probe geometry over the run's snapshots (PCA on shared axes), cached per set of steps."""
    snaps = load_snapshots(run_dir) if run_dir else None
    if snaps is None or not snaps.steps:
        return None
    cache = state.results("distill_geometry")  # run folder -> (steps drawn, figure)
    steps = tuple(snaps.steps)
    if run_dir not in cache or cache[run_dir][0] != steps:
        projection = geometry.project_snapshots(snaps.teacher, snaps.student, snaps.steps, method="pca")
        cache[run_dir] = (steps, figures.snapshots_figure(projection, snaps.span_text))
    return cache[run_dir][1]


def curves(records: list[dict], title: str = "Convergence"):
    present = [c for c in CURVES if any(r.get(c) is not None for r in records)]
    return figures.convergence_curves(records, columns=present, title=title) if present else None


def live_panel() -> None:
    """Progress of this session's run; re-run every second by the fragment while training."""
    worker: TrainingWorker | None = st.session_state.get(WORKER_KEY)
    if worker is None:
        st.info(
            "Configure a run and press **Start**. Training runs in the background; this page stays usable."
        )
        return
    p = worker.progress()
    st.markdown(
        f"**Run {p.status}** · step {p.steps_done} of {p.total_steps}"
        + (f" · `{p.run_dir}`" if p.run_dir else "")
    )
    last = {k: v for r in p.records for k, v in r.items() if v is not None}
    cols = st.columns(5)
    cols[0].metric("Steps done", f"{p.steps_done} / {p.total_steps or '…'}")
    cols[1].metric("loss", f"{last['loss']:.3f}" if "loss" in last else "–")
    cols[2].metric("probe CKA", f"{last['probe_cka']:.3f}" if "probe_cka" in last else "–")
    cols[3].metric("probe cosine", f"{last['probe_cos']:.3f}" if "probe_cos" in last else "–")
    cols[4].metric("s / step", f"{last['step_time_s']:.1f}" if "step_time_s" in last else "–")
    if p.status == "preparing" or (p.active and p.steps_done == 0):
        st.caption(f"{p.message or 'preparing'}…")
    if p.status == "failed":
        st.error(p.error or "the run failed", icon=":material/error:")
    elif p.status == "stopped":
        st.warning(f"Run stopped at step {p.steps_done}: its checkpoint is saved; press **Resume** to go on.")
    method = worker.session.config.method if worker.session is not None else "run"
    fig = curves([{**r, "method": method} for r in p.records])
    if fig is not None:
        st.plotly_chart(fig, key="distill_curves")
    animation = geometry_animation(p.run_dir)
    if animation is not None:
        st.plotly_chart(animation, key="distill_geometry")
    if st.session_state.get("distill_was_active") and not p.active:
        st.session_state["distill_was_active"] = False
        st.rerun(scope="app")  # the buttons outside this fragment change with the status
    st.session_state["distill_was_active"] = p.active


def past_runs(root: str) -> None:
    runs = list_runs(root)
    if not runs:
        st.caption(f"No runs in {root} yet.")
        return
    rows = [
        {"run": r.name, "method": r.method, "student": r.student, "state": r.state,
         "steps": f"{r.steps_done}/{r.steps_planned}", "loss": r.last.get("loss"), "probe CKA": r.last.get("probe_cka")}
        for r in runs
    ]  # fmt: skip
    st.dataframe(rows, hide_index=True, height=min(320, 40 + 35 * len(rows)))
    by_name = {r.name: r for r in runs}
    chosen = st.multiselect(
        "Overlay curves of", list(by_name), default=list(by_name)[:2], key="distill_compare"
    )
    if chosen:
        columns = [c for c in CURVES if any(c in by_name[n].last for n in chosen)]
        st.plotly_chart(
            figures.run_metrics_figure([by_name[n].path for n in chosen], labels=chosen, columns=columns,
                                       title="Runs compared"),
            key="distill_compare_chart",
        )  # fmt: skip
    reopen = st.selectbox("Reopen a run", list(by_name), key="distill_reopen")
    run = by_name[reopen]
    config, metrics, _ = load_run(run.path)
    st.caption(
        f"{run.name}: {config.method}, {config.student_variant} student, {run.state} at step {run.steps_done}"
    )
    if run.message:
        st.caption(run.message)
    animation = geometry_animation(str(run.path))
    if animation is not None:
        st.plotly_chart(animation, key="distill_reopen_geometry")
    more = st.number_input("More steps", 1, 2000, 10, key="distill_more")
    active = (w := st.session_state.get(WORKER_KEY)) is not None and w.progress().active
    if st.button(
        "Resume this run", key="distill_resume_past", disabled=active, icon=":material/restart_alt:"
    ):
        with state.reported("resuming the run"):
            resume_run(str(run.path), int(more))
            st.rerun(scope="app")


st.title("Distill")
teacher_spec, student_spec = state.selected_specs()
st.markdown(
    f"Distill **{teacher_spec}** into a copy of **{student_spec}** with SRA or a token-level baseline. "
    "Every few steps a fixed probe set measures how the student's span geometry approaches the teacher's."
)
pair = None
with state.reported("loading the models"):
    pair = state.get_pair()
if pair is None:
    st.stop()  # the error above says why; nothing below works without the models
draw_config(pair.student.info.layers)

worker = st.session_state.get(WORKER_KEY)
progress = worker.progress() if worker is not None else None
active = progress is not None and progress.active
buttons = st.container(horizontal=True)
if buttons.button(
    "Start", type="primary", icon=":material/play_arrow:", disabled=active, key="distill_start"
):
    with state.reported("starting the run"):
        start_new()
        st.rerun()  # redraw the buttons for a running session
if (
    buttons.button("Stop", icon=":material/stop:", disabled=not active, key="distill_stop")
    and worker is not None
):
    worker.stop()
resumable = progress is not None and progress.status == "stopped" and not active
if buttons.button("Resume", icon=":material/resume:", disabled=not resumable, key="distill_resume"):
    with state.reported("resuming the run"):
        if worker is None:
            raise SraVizError("there is no stopped run in this session: reopen a past run below to resume it")
        worker.start()
        st.rerun()

st.fragment(live_panel, run_every=1.0 if active else None)()

st.divider()
st.subheader("Past runs")
with state.reported("reading past runs"):
    past_runs(st.session_state["distill_root"])
