"""Distill page: train the student live (SRA or a token-level baseline), watch it converge, compare runs.

Widget keys are the config field names (``distill.batch_size`` holds ``DistillConfig.batch_size``), so
the widgets become a ``DistillConfig`` in one loop. Runs live in the process-level registry of
``sra_viz.ui.worker``: a reloaded page or another browser session watches the running run.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any

import streamlit as st

from sra_viz import figures, paths, projection
from sra_viz.distill import DistillConfig, DistillSession, list_runs, load_run
from sra_viz.distill import config as config_module
from sra_viz.distill.runs import checkpoint_dir, is_locked, load_snapshots
from sra_viz.errors import SraVizError
from sra_viz.figures.change import change_figures
from sra_viz.ui import heldout, state
from sra_viz.ui.worker import TrainingWorker, WorkerProgress, active_workers, launch, run_key, worker_for

PREFIX = "distill."  # widget key of config field f: PREFIX + f
RUN_KEY = "distill_run"  # the run directory this browser session watches
ROOT_KEY = "distill_runs_root"  # the parent folder of new runs (empty: sra_viz.paths.runs_dir())
# seconds between redraws of the live panel while a run is active: each redraw costs the browser and the
# server CPU that the run needs on a small machine (benchmarks/bench_app_session.py --steps 30
# --probe-every 10, 2 cores, browser on the same machine: app/CLI step time 2.20x at 2 s, 1.28x at 5 s,
# 0.92x at 10 s)
LIVE_EVERY = 10.0
IDLE_EVERY = 5.0  # seconds between looks for a run started from another browser session
# seconds between redraws of Past runs while a run is active: every redraw costs the browser (and so the
# run, on a small machine) a re-render, and the live panel already shows the active run
PAST_EVERY = 30.0
# seconds between redraws of the watched run's views (change since step 0, geometry, held-out) while it
# runs: they change only when a probe snapshot is written (every snapshot_every steps), so the server does
# not serialize and send their five figures again every LIVE_EVERY s; the status, metrics and curves above
# them keep LIVE_EVERY
VIEWS_EVERY = 20.0
CURVES_EVERY = 10.0  # seconds between rebuilds of the curves between probe rows
# The app's run defaults, chosen by measurement on 2 CPU cores (benchmarks/app_defaults.py and
# benchmarks/app_default_session.py; README, "The app's default session"): a truncated student, 100 steps
# at lr 1e-3 move the probe's CKA and Gram distance clearly within about 3 minutes. The held-out
# evaluation is smaller than the CLI's (4 examples, 24 new tokens): it runs at step 0 and at the end.
APP_DEFAULTS: dict[str, Any] = dict(
    method="sra",
    student_variant="truncated",
    student_k=6,
    steps=100,
    batch_size=4,
    max_length=64,
    lr=1e-3,
    log_every=10,
    probe_size=8,
    eval_size=4,
    eval_max_new_tokens=24,
)
METHOD_NAMES = {
    "sra": "SRA (span alignment)",
    "uld": "ULD (token level)",
    "exact": "Exact-token KD (token level)",
    "mined": "MinED (edit-distance token KD)",
    "ce": "CE only (plain fine-tuning)",
}
VARIANT_NAMES = {
    "truncated": "truncated: first k blocks (fast)",
    "last_k": "last k blocks train",
    "full": "full fine-tune (slow on a CPU)",
}
# curves worth watching, in this order; whichever the run logs are drawn
CURVES = [
    "loss",
    "span",
    "geo",
    "kd",
    "ce",
    "uld",
    "exact",
    "mined",
    "dynamics",
    "probe_cos",
    "probe_cka",
    "probe_gram_distance",
    "probe_retrieval",
    "heldout_ppl",
]
ABLATIONS = {
    "use_span": "L_span: span cosine through the projector",
    "use_geo": "L_geo: geometric regularizer",
    "use_kd": "L_KD: span logit distillation on V∩",
    "use_ce": "L_CE: the student's own next-token loss",
    "weighted_pooling": "attention-weighted pooling (off: plain mean)",
    "weighted_loss": "saliency-weighted losses (off: uniform)",
}
FIELDS = {f.name: f for f in fields(DistillConfig)}
DEFAULTS = config_module.field_defaults()


def choices(name: str, fallback: tuple[str, ...]) -> list[str]:
    """The allowed values of config field ``name``: its metadata's ``choices``, else ``fallback``."""
    return list(FIELDS[name].metadata.get("choices", fallback))


def default(name: str) -> Any:
    """The app's default of config field ``name`` (measured app defaults, then the library's)."""
    return APP_DEFAULTS.get(name, DEFAULTS[name])


def runs_root(text: str | None) -> Path:
    """The runs folder a user typed, checked and created; empty means the cache folder's runs.

    Example:
        >>> runs_root("")  # doctest: +SKIP
        PosixPath('/home/me/.cache/sra_viz/runs')
    """
    text = (text or "").strip()
    if not text:
        return paths.runs_dir()
    root = Path(text).expanduser()
    if root.exists() and not root.is_dir():
        raise SraVizError(f"runs folder {text!r} is a file: give a folder (it is created if missing)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SraVizError(
            f"runs folder {text!r} cannot be created ({exc.strerror or exc}): give a folder you can write "
            "to, or leave it empty for the cache folder's runs"
        ) from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise SraVizError(f"runs folder {text!r} is not writable: give a folder you can write to")
    return root.resolve()


def _as_field_type(name: str, value: Any) -> Any:
    kind = type(DEFAULTS[name]) if DEFAULTS[name] is not None else str
    return kind(value) if kind in (bool, int, float, str) else value


def config_from_widgets() -> DistillConfig:
    """The DistillConfig the widgets describe, for the selected pair (validated): one loop over fields."""
    teacher, student = state.selected_specs()
    s = st.session_state
    values = {name: _as_field_type(name, s[PREFIX + name]) for name in FIELDS if PREFIX + name in s}
    values["snapshot_every"] = values.get("log_every", DEFAULTS["log_every"])  # one probe cadence
    root = runs_root(s.get(ROOT_KEY))
    method = values.get("method", DEFAULTS["method"])
    values["out"] = str(root / f"{method}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}")
    return DistillConfig(**{**values, "teacher": teacher, "student": student}).validate()


def _widget(name: str, draw, options=None, **kwargs) -> None:
    """Draw the widget of config field ``name`` under its key, seeded with the app's default."""
    state.keep(PREFIX + name, default(name), options)
    help_text = kwargs.pop("help", None) or FIELDS[name].metadata.get("help")
    draw(key=PREFIX + name, help=help_text, **kwargs)


def draw_config(student_layers: int) -> None:
    """Every widget of the run configuration (values live in session state under the field names)."""
    a, b, c = st.columns(3)
    methods = [m for m in choices("method", config_module.METHODS)]
    _widget(
        "method",
        lambda **kw: a.selectbox("Method", methods, format_func=lambda m: METHOD_NAMES.get(m, m), **kw),
        methods,
    )
    variants = choices("student_variant", config_module.VARIANTS)
    _widget(
        "student_variant",
        lambda **kw: a.selectbox(
            "Student variant", variants, format_func=lambda v: VARIANT_NAMES.get(v, v), **kw
        ),
        variants,
    )
    APP_DEFAULTS["student_k"] = min(int(APP_DEFAULTS["student_k"]), student_layers)
    _widget("student_k", lambda **kw: a.slider("k (blocks)", 1, student_layers, **kw))
    _widget("steps", lambda **kw: b.number_input("Steps", 1, 2000, **kw))
    _widget("batch_size", lambda **kw: b.number_input("Batch size", 1, 32, **kw))
    _widget("max_length", lambda **kw: b.number_input("Max tokens per text", 16, 512, step=16, **kw))
    lrs = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3]
    _widget(
        "lr", lambda **kw: c.select_slider("Learning rate", lrs, format_func=lambda v: f"{v:g}", **kw), lrs
    )
    _widget(
        "log_every",
        lambda **kw: c.number_input("Probe every N steps", 1, 500, **kw),
        help="probe metrics and a geometry snapshot every N steps (and at step 0 and the end)",
    )
    _widget("probe_size", lambda **kw: c.number_input("Probe texts", 2, 64, **kw))
    _widget("eval_size", lambda **kw: c.number_input("Held-out evaluation examples", 0, 64, **kw))
    _widget("eval_max_new_tokens", lambda **kw: c.number_input("Longest generation (tokens)", 1, 256, **kw))
    with st.expander("SRA terms and ablations", expanded=False):
        cols = st.columns(2)
        for i, (name, label) in enumerate(ABLATIONS.items()):
            _widget(name, lambda label=label, i=i, **kw: cols[i % 2].toggle(label, **kw))
        w = st.columns(4)
        _widget(
            "alpha",
            lambda **kw: w[0].number_input("α (CE weight)", 0.0, 1.0, step=0.1, **kw),
            help="L = α·CE + (1−α)·(L_span + λ_geo·L_geo + L_KD)",
        )
        _widget(
            "lambda_geo",
            lambda **kw: w[1].number_input("λ_geo", 0.0, 1000.0, step=1.0, **kw),
            help="weight of L_geo; 50 (the DSKD port's default) or e.g. 3 (see the Learn page)",
        )
        _widget("tau", lambda **kw: w[2].number_input("τ (KD temperature)", 0.1, 20.0, step=0.5, **kw))
        weightings = choices("kd_weighting", config_module.KD_WEIGHTINGS)
        names = {"saliency": "saliency-weighted", "sum": "sum (published)"}
        _widget(
            "kd_weighting",
            lambda **kw: w[3].selectbox(
                "L_KD over spans", weightings, format_func=lambda v: names.get(v, v), **kw
            ),
            weightings,
        )
        schedules = ["last", "uniform:2", "uniform:3", "uniform:4"]
        _widget(
            "layer_schedule",
            lambda **kw: st.selectbox(
                "Mapped layers",
                schedules,
                format_func=lambda v: (
                    "last layer of each" if v == "last" else f"{v[8:]} layers, evenly spaced"
                ),
                **kw,
            ),
            schedules,
        )
        st.caption(
            "ULD and exact-token KD use L_CE and their own token-level term; the other switches are SRA's. "
            "L_KD summed over spans is the public code's form; our saliency weighting and λ_geo = 50 (the "
            "DSKD port's default) keep the three distillation terms on one gradient scale."
        )
    with st.expander("Run folder and seed", expanded=False):
        state.keep(ROOT_KEY, "")
        st.text_input(
            "Runs folder",
            key=ROOT_KEY,
            placeholder=str(paths.runs_dir()),
            help=f"each run writes a folder here; empty: {paths.runs_dir()}",
        )
        _widget("seed", lambda **kw: st.number_input("Seed", 0, 10_000, **kw))


# ----------------------------------------------------------------------------- which run this session watches


def watched() -> TrainingWorker | None:
    """The run this session watches: its own, or (when it has none running) the newest running one.

    A reloaded page or a second browser session starts with no run of its own and so finds the run
    that is going in this server, with its status, Stop and live curves.
    """
    mine = worker_for(st.session_state.get(RUN_KEY))
    if mine is None or not mine.progress().active:
        running = active_workers()
        if running:
            mine = running[0]
    if mine is not None:
        st.session_state[RUN_KEY] = mine.run_dir
    return mine


def start_new() -> None:
    current = watched()
    if current is not None and current.progress().active:
        raise SraVizError("a run is already going in this app: stop it before starting another")
    config = config_from_widgets()
    state.check_memory(state.selected_specs())
    pair = state.get_pair()  # shared and read-only: the engine trains its own deep copy of the student
    worker = launch(str(config.out), lambda say: DistillSession(config, pair, progress=say))
    st.session_state[RUN_KEY] = worker.run_dir


def resume_run(run_dir: str, steps: int) -> None:
    """Go on with a stopped run from its checkpoint, up to ``steps`` steps in all."""
    if checkpoint_dir(run_dir) is None:
        raise SraVizError(
            f"run {run_dir!r} has no checkpoint (it was stopped before its first step): start a new run"
        )
    if worker_for(run_dir) is None and is_locked(run_dir):
        raise SraVizError(
            f"run {run_dir!r} is being written by another process (see its run.lock): stop that one first"
        )
    state.check_memory(state.selected_specs())
    pair = state.get_pair()
    worker = launch(run_dir, lambda say: DistillSession.resume(run_dir, pair=pair, progress=say, steps=steps))
    st.session_state[RUN_KEY] = worker.run_dir


# ----------------------------------------------------------------------------- figures (cached per run)


def curves(records: list[dict], method: str, title: str = "Convergence"):
    rows = [{**r, "method": method} for r in records]
    present = [c for c in CURVES if any(r.get(c) is not None for r in rows)]
    return figures.convergence_curves(rows, columns=present, title=title) if present else None


def live_curves(p: WorkerProgress):
    """The curves of the watched run, rebuilt on a new probe row, at the end, or every CURVES_EVERY s."""
    cache = state.results("distill_curves")
    probes = sum(1 for r in p.records if "probe_cos" in r)
    key = (p.run_dir, probes, p.active)
    old = cache.get("entry")
    fresh = old is not None and old[0] == key and time.monotonic() - old[1] < CURVES_EVERY
    if not fresh or (old is not None and not p.active and old[2] != len(p.records)):
        cache["entry"] = (key, time.monotonic(), len(p.records), curves(p.records, p.method or "run"))
    return cache["entry"][3]


def run_views(run_dir: str, step: int | None = None) -> dict[str, Any]:
    """Geometry over training and the change views (step 0 against ``step``, default the last snapshot)
    of a run, cached per set of snapshots and step."""
    snaps = load_snapshots(run_dir) if run_dir else None
    if snaps is None or not snaps.steps:
        return {}
    cache = state.results("distill_views")  # "run folder@step" -> (snapshot steps drawn, figures)
    steps = tuple(snaps.steps)
    key = f"{run_dir}@{step}"
    entry = cache.get(key)
    if entry is None or entry[0] != steps:
        projected = projection.project_snapshots(snaps.teacher, snaps.student, snaps.steps, method="pca")
        views = {"animation": figures.snapshots_figure(projected, snaps.span_text)}
        views.update(change_figures(snaps, step=step if step in steps else None))
        cache[key] = entry = (steps, views)
    return entry[1]


def draw_views(run_dir: str, key: str, pick_step: bool = False) -> None:
    """The change-since-step-0 views and the geometry animation of a run (with a step picker if asked)."""
    snaps_steps = sorted(int(p.stem.split("_")[1]) for p in (Path(run_dir) / "snapshots").glob("step_*.npz"))
    step = None
    if pick_step and len(snaps_steps) > 1:
        state.keep(f"{key}_step", snaps_steps[-1], snaps_steps)
        step = st.select_slider("Compare step 0 with step", snaps_steps, key=f"{key}_step")
    views = run_views(run_dir, step)
    evaluated = False
    with state.reported("reading the held-out evaluation"):
        evaluated = heldout.run_heldout(run_dir) is not None
    names = (["Change since step 0", "Geometry over training"] if views else []) + (
        ["Held-out: did it help?", "Held-out generations"] if evaluated else []
    )
    if not names:
        return
    tabs = dict(zip(names, st.tabs(names), strict=True))
    if views:
        with tabs["Change since step 0"]:
            for name in ("distances", "gram", "displacement"):
                if name in views:
                    st.plotly_chart(views[name], key=f"{key}_{name}")
            st.caption(
                "Every view compares with step 0. Scales are fixed by step 0 (the change panel spans at "
                "least ±½ sd of the step-0 distances), so noise is not stretched into a trend."
            )
        with tabs["Geometry over training"]:
            st.plotly_chart(views["animation"], key=f"{key}_geometry")
    if evaluated:
        with tabs["Held-out: did it help?"]:
            heldout.draw_heldout(run_dir, key)
        with tabs["Held-out generations"]:
            heldout.draw_generations_of(run_dir, key)


# ----------------------------------------------------------------------------- the live panel


def status_line(p: WorkerProgress) -> None:
    if p.status == "failed":
        st.error(p.error or "the run failed", icon=":material/error:")
    elif p.status == "stopping" and p.steps_done == 0 and not p.records:
        st.warning(
            "Stopping: the run ends as soon as its set-up is done; no step has been taken, nothing is saved."
        )
    elif p.status == "stopped" and not p.saved:
        st.warning(
            "Run stopped while preparing: no step was taken and nothing was saved. Press **Start** for a "
            "new run."
        )
    elif p.status == "stopped":
        st.warning(f"Run stopped at step {p.steps_done}: its checkpoint is saved; press **Resume** to go on.")
    elif p.status == "preparing" or (p.active and p.steps_done == 0):
        st.caption(f"{p.message or 'preparing'}…")


def teacher_cache_line(records: list[dict]) -> str | None:
    """ "used the teacher cache for X of Y texts" from the run's rows (None: the run did not use it)."""
    rows = [
        r for r in records if isinstance(r.get("teacher_cached"), (int, float)) and r["teacher_cached"] >= 0
    ]
    if not rows:  # absent, or NaN in a table of runs mixed with and without the cache
        return None
    cached, texts = sum(int(r["teacher_cached"]) for r in rows), sum(int(r.get("texts") or 0) for r in rows)
    return (
        f"Used the teacher cache: the teacher side of {cached} of {texts} texts was read from it, "
        "the rest computed and stored (`sra-viz cache info`)."
    )


def live_panel() -> None:
    """Progress of the watched run; re-run by the fragment every LIVE_EVERY s while a run is active."""
    worker = watched()
    p = worker.progress() if worker is not None else None
    drawn = st.session_state.get("distill_drawn")
    now = (p.run_dir, p.active) if p is not None else None
    st.session_state["distill_drawn"] = now
    if drawn is not None and drawn != now:
        st.rerun(scope="app")  # the buttons outside this fragment change with the run and its status
    if p is None:
        st.info(
            "Configure a run and press **Start**. Training runs in the background; this page stays usable."
        )
        st.caption(state.memory_readout())
        return
    st.markdown(f"**Run {p.status}** · step {p.steps_done} of {p.total_steps or '…'} · `{p.run_dir}`")
    last = {k: v for r in p.records for k, v in r.items() if v is not None}
    first = next((r for r in p.records if r.get("step") == 0), {})
    cols = st.columns(5)
    cols[0].metric("Steps done", f"{p.steps_done} / {p.total_steps or '…'}")
    cols[1].metric("loss", f"{last['loss']:.3f}" if "loss" in last else "–")
    for col, name, label in ((cols[2], "probe_cka", "probe CKA"), (cols[3], "probe_cos", "probe cosine")):
        change = f"{last[name] - first[name]:+.3f} since step 0" if name in first and name in last else None
        col.metric(label, f"{last[name]:.3f}" if name in last else "–", change)
    cols[4].metric("s / step", f"{last['step_time_s']:.2f}" if "step_time_s" in last else "–")
    status_line(p)
    cache_line = teacher_cache_line(p.records)
    if cache_line is not None:
        st.caption(cache_line)
    fig = live_curves(p)
    if fig is not None:
        st.plotly_chart(fig, key="distill_curves")
    st.caption(state.memory_readout())


def live_views() -> None:
    """The watched run's views; re-run by its own fragment every VIEWS_EVERY s while the run is active
    (the page reruns whole when the run starts or ends, so the last snapshot is always drawn)."""
    worker = watched()
    if worker is not None:
        draw_views(worker.run_dir, "distill_live")


# ----------------------------------------------------------------------------- past runs


def past_runs(root: Path) -> None:
    runs = list_runs(root)
    if not runs:
        st.caption(f"No runs in {root} yet.")
        return
    rows = [
        {
            "run": r.name,
            "method": r.method,
            "student": r.student,
            "state": "running" if (w := worker_for(r.path)) is not None and w.progress().active else r.state,
            "steps": f"{r.steps_done}/{r.steps_planned}",
            "loss": r.last.get("loss"),
            "probe CKA": r.last.get("probe_cka"),
        }
        for r in runs
    ]
    st.dataframe(rows, hide_index=True, height=min(320, 40 + 35 * len(rows)))
    by_name = {r.name: r for r in runs}
    logged = [r.name for r in runs if "step" in r.last]  # a run still setting up has no metrics row yet
    chosen = st.multiselect("Overlay curves of", logged, default=logged[:2], key="distill_compare")
    columns = [c for c in CURVES if any(c in by_name[n].last for n in chosen)]
    if len({by_name[n].method for n in chosen}) > 1 and "loss" in columns:
        columns.remove("loss")  # each method's total loss is a different objective: not one axis
        st.caption("The total loss is left out: the chosen runs train different objectives.")
    if chosen and columns:
        st.plotly_chart(
            figures.run_metrics_figure(
                [by_name[n].path for n in chosen], labels=chosen, columns=columns, title="Runs compared"
            ),
            key="distill_compare_chart",
        )
    heldout.draw_comparison(runs)
    reopen = st.selectbox("Reopen a run", list(by_name), key="distill_reopen")
    run = by_name[reopen]
    config, metrics, _ = load_run(run.path)
    st.caption(
        f"{run.name}: {config.method}, {config.student_variant} student, {run.state} at step {run.steps_done}"
    )
    cache_line = teacher_cache_line(metrics.to_dict("records") if "teacher_cached" in metrics else [])
    if cache_line is not None:
        st.caption(cache_line)
    if run.message:
        st.caption(run.message)
    live = watched()
    if live is not None and live.progress().active and Path(live.run_dir) == run.path:
        st.caption("This run is training: its views are shown live above.")
    else:
        draw_views(str(run.path), "distill_reopen", pick_step=True)
    more = st.number_input("More steps", 1, 2000, 10, key="distill_more")
    running = (w := worker_for(run.path)) is not None and w.progress().active
    if st.button(
        "Resume this run",
        key="distill_resume_past",
        disabled=running,
        icon=":material/restart_alt:",
        help="already running in this app" if running else None,
    ):
        with state.reported("resuming the run"):
            resume_run(run_key(run.path), run.steps_done + int(more))
            st.rerun(scope="app")
    heldout.draw_export(run, running)


st.title("Distill")
teacher_spec, student_spec = state.selected_specs()
st.markdown(
    f"Distill **{teacher_spec}** into a copy of **{student_spec}** with SRA or a token-level baseline. Every "
    "few steps a fixed probe set measures how the student's span geometry approaches the teacher's."
)
pair = None
with state.reported("loading the models"):
    pair = state.get_pair()
if pair is None:
    st.stop()  # the error above says why; nothing below works without the models
draw_config(pair.student.info.layers)

worker = watched()
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
resumable = progress is not None and progress.status == "stopped" and progress.saved
if buttons.button("Resume", icon=":material/resume:", disabled=not resumable, key="distill_resume"):
    with state.reported("resuming the run"):
        if progress is None or not progress.saved:
            raise SraVizError(
                "there is no stopped run with a checkpoint here: reopen a past run below to resume it"
            )
        resume_run(progress.run_dir, progress.total_steps)
        st.rerun()

st.fragment(live_panel, run_every=LIVE_EVERY if active else IDLE_EVERY)()
st.fragment(live_views, run_every=VIEWS_EVERY if active else None)()

st.divider()
st.subheader("Past runs")
with state.reported("reading past runs"):
    typed = (st.session_state.get(ROOT_KEY) or "").strip()  # checked (and created) only when a run starts
    st.fragment(past_runs, run_every=PAST_EVERY if active else None)(
        Path(typed).expanduser() if typed else paths.runs_dir()
    )
