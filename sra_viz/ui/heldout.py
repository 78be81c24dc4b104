"""The Distill page's answer to "did it help?": held-out evaluation before/after, the generations side
by side, runs compared on held-out data, and the Export button of a run.

The logic is in pure functions (``sra_viz.evaluation.side_by_side`` / ``compare_runs``,
``sra_viz.figures.evaluation``, ``sra_viz.distill.export.export_run``); this module only draws them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from sra_viz.distill.export import export_run
from sra_viz.distill.runs import EVALUATION, RunSummary, checkpoint_dir
from sra_viz.errors import SraVizError
from sra_viz.evaluation import RunEvaluations, compare_runs, load_run_evaluations, side_by_side
from sra_viz.figures.evaluation import run_evaluation_figure, runs_heldout_figure
from sra_viz.ui import state

SIDE_BY_SIDE = ("reference", "teacher", "student before", "student after")
PROMPT_CHARS = 90  # a prompt's length in the prompt picker
NOT_KEPT = (
    "This run's evaluation files did not keep the generations (a run made before they were saved): "
    "only the figures are shown."
)


def evaluation_files(run_dir: str) -> tuple[tuple[str, int], ...]:
    """(name, mtime) of every evaluation file of a run: a new or rewritten file changes it."""
    folder = Path(run_dir) / EVALUATION
    return (
        tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.json")))
        if folder.is_dir()
        else ()
    )


def run_heldout(run_dir: str) -> tuple[RunEvaluations, Any, list[dict]] | None:
    """(evaluations, before/after figure, side-by-side rows) of a run, cached per set of evaluation files;
    None while the run has no student evaluation."""
    files = evaluation_files(run_dir)
    if not any(name.startswith("step_") for name, _ in files):
        return None
    cache = state.results("distill_heldout")  # run folder -> (files read, evaluations, figure, rows)
    entry = cache.get(run_dir)
    if entry is None or entry[0] != files:
        evaluations = load_run_evaluations(run_dir)
        entry = (files, evaluations, run_evaluation_figure(evaluations), side_by_side(evaluations))
        cache[run_dir] = entry
    return entry[1], entry[2], entry[3]


def _generation(cell: dict | None) -> tuple[str, str]:
    """(ROUGE-L caption, text) of one model's generation."""
    if cell is None:
        return "not evaluated", "—"
    score = cell.get("rouge_l")
    return (f"ROUGE-L {score:.3f}" if score is not None else ""), (cell.get("generation") or "(empty)")


def draw_generations(rows: list[dict], key: str, after_step: int | None = None) -> None:
    """One held-out prompt (picked) with the reference and the three generations side by side
    (``after_step``: the step of the student after, named in its header)."""
    if not rows:
        st.caption(NOT_KEPT)
        return
    picks = list(range(len(rows)))
    state.keep(f"{key}_prompt", 0, picks)

    def name(i: int) -> str:
        prompt = " ".join(str(rows[i]["prompt"]).split())
        return f"{rows[i]['id']}: {prompt[:PROMPT_CHARS]}{'…' if len(prompt) > PROMPT_CHARS else ''}"

    i = st.selectbox("Held-out prompt", picks, format_func=name, key=f"{key}_prompt")
    row = rows[i]
    st.markdown("**Prompt**")
    st.text(row["prompt"])
    for col, column in zip(st.columns(len(SIDE_BY_SIDE)), SIDE_BY_SIDE, strict=True):
        box = col.container(border=True)
        step = f" · step {after_step}" if column == "student after" and after_step is not None else ""
        box.markdown(f"**{column}**{step}")
        if column == "reference":
            box.caption("the corpus's response")
            box.text(row["reference"])
        else:
            caption, text = _generation(row[column])
            box.caption(caption)
            box.text(text)
    st.caption("Greedy generations of the held-out evaluation, cut where the next corpus prompt would begin.")


def draw_heldout(run_dir: str, key: str) -> bool:
    """The held-out tab content of a run; False when the run has no student evaluation yet."""
    found = run_heldout(run_dir)
    if found is None:
        return False
    evaluations, figure, rows = found
    st.plotly_chart(figure, key=f"{key}_heldout")
    after = evaluations.after
    st.caption(
        f"{evaluations.before.n if evaluations.before else after.n if after else 0} held-out examples that "
        "no run trains or probes on. ROUGE-L of greedy generations; top-1 agreement and KL with the "
        "teacher at span level on the shared vocabulary V∩; CE of the response tokens, each model on its "
        "own tokens (hover: perplexity)."
        + ("" if after is not None else " The student after training is evaluated when the run ends.")
    )
    return True


def draw_generations_of(run_dir: str, key: str) -> None:
    found = run_heldout(run_dir)
    if found is not None:
        draw_generations(found[2], key, max(found[0].steps) if found[0].after is not None else None)


def draw_comparison(runs: list[RunSummary]) -> None:
    """Chosen runs on the held-out measures in one chart (last evaluation, teacher as reference)."""
    evaluated = [r for r in runs if any(n.startswith("step_") for n, _ in evaluation_files(str(r.path)))]
    if not evaluated:
        st.caption(
            "No run here has a held-out evaluation yet (a run with eval_size > 0 evaluates at step 0)."
        )
        return
    by_name = {r.name: r for r in evaluated}
    names = list(by_name)
    chosen = st.multiselect(
        "Compare on held-out data", names, default=names[:4], key="distill_heldout_compare"
    )
    if not chosen:
        return
    with state.reported("comparing the runs"):  # a broken file: one line, the rest of the page is drawn
        compared = compare_runs([by_name[n].path for n in chosen])
        figure = runs_heldout_figure(
            {label: r.to_dict() for label, r in compared.last.items()},
            teacher=compared.teacher.to_dict() if compared.teacher is not None else None,
            before={label: r.to_dict() for label, r in compared.before.items()},
        )
        _draw_comparison(figure, compared.notes)


def _draw_comparison(figure: Any, notes: list[str]) -> None:
    st.plotly_chart(figure, key="distill_heldout_compare_chart")
    st.caption(
        "Each run's last held-out evaluation (bar; black tick: the same student at step 0), the teacher "
        "as reference. " + " ".join(note[0].upper() + note[1:] + "." for note in notes)
    )


def draw_export(run: RunSummary, running: bool) -> None:
    """Export the run's student as a transformers folder (finished or stopped runs with a checkpoint)."""
    has_checkpoint = checkpoint_dir(run.path) is not None
    why_not = (
        "the run is still going: stop it or let it finish"
        if running or run.state == "running"
        else "the run has no checkpoint (it was stopped before its first step)"
        if not has_checkpoint
        else f"the run {run.state}: only a finished or stopped run is exported"
        if run.state not in ("finished", "stopped")
        else None
    )
    folder_key, replace_key = f"distill_export_dir:{run.name}", f"distill_export_replace:{run.name}"
    state.keep(folder_key, str(Path(run.path) / "export"))
    state.keep(replace_key, False)
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    left.text_input("Export the student to", key=folder_key, help="a new or empty folder")
    replace = right.checkbox("replace", key=replace_key, help="replace the folder if it is not empty")
    if st.button(
        "Export", key="distill_export", icon=":material/download:", disabled=why_not is not None, help=why_not
    ):
        with state.reported("exporting the student"):
            folder = str(st.session_state[folder_key]).strip()
            if not folder:
                raise SraVizError("the export folder is empty: give a folder to write the model to")
            with st.spinner("writing the student as a transformers folder…"):
                out = export_run(
                    run.path,
                    Path(folder).expanduser(),
                    force=replace,
                    what="export folder",
                    replace_hint="tick **replace** to overwrite it",
                )
            st.success(
                f"Exported to `{out.resolve()}`: load it with `AutoModelForCausalLM.from_pretrained` "
                "(its README.md is the model card).",
                icon=":material/check_circle:",
            )
