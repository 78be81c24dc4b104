"""Did distillation help? Held-out evaluation figures: one run before/after, and runs compared.

The figures take plain data: a held-out result is a mapping with the keys of
:meth:`sra_viz.evaluation.EvalResult.to_dict` (``rouge_l``, ``teacher_agreement``, ``vcap_kl``,
``heldout_loss``, ``heldout_ppl``, ``n``; None where a measure does not apply, e.g. the teacher's
agreement with itself) or an ``EvalResult``. One subplot per measure (their scales differ), one bar per
model; teacher blue, student before grey, student after vermillion, runs in the run colours.

    >>> fig = before_after_figure({"teacher": {"rouge_l": 0.3}, "student before": {"rouge_l": 0.1}})
    >>> [t.name for t in fig.data if t.xaxis == "x"]  # the first subplot (ROUGE-L)
    ['teacher', 'student before']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import SraVizError
from .style import PALETTE, styled
from .training import run_colors

# the held-out measures drawn, in this order: key -> subplot title (arrow: which way is better)
EVAL_MEASURES: dict[str, str] = {
    "rouge_l": "ROUGE-L F1 of generations ↑",
    "teacher_agreement": "teacher agreement (top-1 on V∩) ↑",
    "vcap_kl": "KL(teacher ‖ student) on V∩ ↓",
    "heldout_loss": "held-out CE, nats/token ↓",
}
HATCHES = ("", "/", "x", ".", "\\", "+")  # the 1st, 2nd, ... bar of one colour
MODEL_COLORS = {"teacher": PALETTE["teacher"], "before": PALETTE["grey"], "after": PALETTE["student"]}


def _figures(result: Any) -> dict[str, Any]:
    """A held-out result as a plain dict (an EvalResult's ``to_dict()``, a mapping as it is)."""
    if result is None:
        return {}
    if hasattr(result, "to_dict"):
        return dict(result.to_dict())
    if isinstance(result, Mapping):
        return dict(result)
    raise SraVizError(f"a held-out result is a mapping or an EvalResult, got {type(result).__name__}")


def _value(figures: Mapping[str, Any], measure: str) -> float | None:
    value = figures.get(measure)
    return None if value is None else float(value)


def _hover(label: str, measure: str, figures: Mapping[str, Any]) -> str:
    """Hover text of one bar: the value, and what it rests on (n, spans, perplexity)."""
    value = _value(figures, measure)
    shown = "n/a" if value is None else f"{value:.4f}"
    lines = [f"<b>{label}</b>", f"{EVAL_MEASURES[measure]}: {shown}"]
    if measure == "heldout_loss" and figures.get("heldout_ppl") is not None:
        lines.append(f"perplexity: {float(figures['heldout_ppl']):.4g}")
    if measure in ("teacher_agreement", "vcap_kl") and figures.get("n_spans"):
        lines.append(f"over {figures['n_spans']} spans")
    if measure == "rouge_l" and figures.get("rouge_on_chars"):
        lines.append(f"{figures['rouge_on_chars']} of {figures.get('n')} scored on characters")
    if figures.get("n") is not None:
        lines.append(f"n = {figures['n']} held-out examples")
    return "<br>".join(lines)


def _bar_grid(
    bars: Sequence[tuple[str, str, Mapping[str, Any]]],
    markers: Sequence[tuple[str, str, Mapping[str, Any]]] = (),
    marker_name: str = "",
    title: str | None = None,
) -> go.Figure:
    """One subplot per measure, one bar per ``(label, colour, figures)``; ``markers``: a tick per label
    at another value (e.g. the student before training), drawn over the bar of the same label. Bars that
    share a colour (runs of one method) are told apart by a hatch pattern, as in the legend."""
    if not bars:
        raise SraVizError("no held-out results to draw: evaluate at least one model")
    labels = [label for label, _, _ in bars]
    if len(set(labels)) != len(labels):
        raise SraVizError(f"bar labels must be unique, got {labels}")
    fig = make_subplots(1, len(EVAL_MEASURES), subplot_titles=list(EVAL_MEASURES.values()))
    patterns: dict[str, str] = {}
    seen: Counter[str] = Counter()
    for label, color, _ in bars:
        patterns[label] = HATCHES[seen[color] % len(HATCHES)]
        seen[color] += 1
    for col, measure in enumerate(EVAL_MEASURES, start=1):
        for label, color, figures in bars:
            value = _value(figures, measure)
            fig.add_trace(
                go.Bar(
                    x=[label],
                    y=[value],
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    marker=dict(color=color, pattern_shape=patterns[label]),
                    text=["n/a" if value is None else f"{value:.3f}"],
                    textposition="outside",
                    cliponaxis=False,
                    hovertext=[_hover(label, measure, figures)],
                    hoverinfo="text",
                ),
                row=1,
                col=col,
            )
            if value is None:  # no bar: say so where it would stand
                fig.add_annotation(
                    x=label, y=0, text="n/a", showarrow=False, yshift=10, font_color="#777777", row=1, col=col
                )
        for label, color, figures in markers:
            value = _value(figures, measure)
            if value is None:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[label],
                    y=[value],
                    mode="markers",
                    name=marker_name,
                    legendgroup=marker_name,
                    showlegend=col == 1 and label == markers[0][0],
                    marker=dict(symbol="line-ew-open", size=28, color=color, line=dict(width=3)),
                    hovertext=[_hover(f"{label}: {marker_name}", measure, figures)],
                    hoverinfo="text",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(categoryorder="array", categoryarray=labels, showticklabels=False, row=1, col=col)
        fig.update_yaxes(rangemode="tozero", row=1, col=col)
    fig.update_annotations(font_size=12)
    return styled(
        fig,
        title,
        height=380,
        bargap=0.25,
        showlegend=True,
        legend=dict(orientation="h", yanchor="top", y=-0.06, xanchor="left", x=0),
        margin=dict(l=50, r=20, t=80, b=60),
    )


def before_after_figure(
    results: Mapping[str, Any], title: str | None = "Did it help? Held-out evaluation"
) -> go.Figure:
    """Grouped bars of the held-out measures of the teacher, the student before and the student after.

    ``results`` maps a label to a result (None: not evaluated, left out); a label starting with
    "teacher" is drawn blue, "student before" grey, any other vermillion. Values are written on the bars
    and in the hover, with n, spans and (for CE) the perplexity.

        >>> fig = before_after_figure({"student before": {"rouge_l": 0.1}, "student after": {"rouge_l": 0.2}})
        >>> [t.y[0] for t in fig.data if t.xaxis == "x"]
        [0.1, 0.2]
    """
    bars = []
    for label, result in results.items():
        if result is None:
            continue
        kind = "teacher" if label.startswith("teacher") else "before" if "before" in label else "after"
        bars.append((label, MODEL_COLORS[kind], _figures(result)))
    return _bar_grid(bars, title=title)


def run_evaluation_figure(
    evaluations: Any, title: str | None = "Did it help? Held-out evaluation"
) -> go.Figure:
    """:func:`before_after_figure` of a run's saved evaluations (:class:`sra_viz.evaluation.RunEvaluations`):
    the teacher, the student at step 0 and at its last evaluated step (its step in the label)."""
    after = evaluations.after
    last = max(evaluations.steps) if evaluations.steps else 0
    return before_after_figure(
        {
            "teacher": evaluations.teacher,
            "student before (step 0)": evaluations.before,
            f"student after (step {last})": after,
        },
        title=title,
    )


def runs_heldout_figure(
    runs: Mapping[str, Any],
    teacher: Mapping[str, Any] | None = None,
    before: Mapping[str, Any] | None = None,
    title: str | None = "Runs compared on held-out data",
) -> go.Figure:
    """Runs (methods, seeds) side by side on the held-out measures: each run's last evaluation as a bar
    (``runs``: label -> result, in the run colours: labels starting with "sra" green, others the baseline
    colours), the teacher's as the first, blue, bar, and each run's step-0 value (``before``: label ->
    result) as a black tick over its bar.

        >>> fig = runs_heldout_figure({"sra · seed 0": {"rouge_l": 0.2}}, teacher={"rouge_l": 0.3})
        >>> [t.name for t in fig.data if t.xaxis == "x"]
        ['teacher', 'sra · seed 0']
    """
    if not runs:
        raise SraVizError("no runs to compare: choose at least one run with a held-out evaluation")
    if teacher is not None and "teacher" in runs:
        raise SraVizError("a run may not be labelled 'teacher': that label is the reference bar")
    colors = run_colors(list(runs))
    bars = [("teacher", PALETTE["teacher"], _figures(teacher))] if teacher is not None else []
    bars += [(label, colors[label], _figures(result)) for label, result in runs.items()]
    markers = [(label, PALETTE["black"], _figures(r)) for label, r in (before or {}).items() if r is not None]
    unknown = [label for label, _, _ in markers if label not in runs]
    if unknown:
        raise SraVizError(f"step-0 results given for runs that are not drawn: {unknown}")
    return _bar_grid(bars, markers, "student before (step 0)", title)
