"""Convergence curves: every loss term and probe metric against step, runs (SRA, baselines) overlaid."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import SraVizError
from .style import PALETTE, styled

# Known columns in display order, with a readable title; other numeric columns follow.
METRIC_TITLES: dict[str, str] = {
    "loss": "total loss L",
    "ce": "L_CE (next token)",
    "span": "L_span (1 − cos, saliency-weighted)",
    "geo": "L_geo (Gram distance)",
    "kd": "L_KD (span logits on V∩)",
    "dynamics": "L_dyn (CoM dynamics)",
    "uld": "ULD (sorted-prob L1)",
    "exact": "exact-token KD on V∩",
    "mined": "MinED (edit-distance token KD)",
    "probe_cos": "probe: mean matched cosine ↑",
    "probe_cos_projector": "probe: cosine via own projector ↑",
    "probe_cka": "probe: linear CKA ↑",
    "probe_gram_distance": "probe: Gram distance ↓",
    "probe_retrieval": "probe: NN retrieval ↑",
    "heldout_loss": "held-out loss ↓",
    "heldout_ppl": "held-out perplexity ↓",
    "grad_norm": "gradient norm",
}
# the same terms under their long names (loss_ce, loss_span, ...) and older probe names
METRIC_TITLES.update(
    {f"loss_{k}": v for k, v in list(METRIC_TITLES.items()) if not k.startswith(("loss", "probe", "held"))}
)
METRIC_TITLES["probe_cosine"] = METRIC_TITLES["probe_cos"]
_NOT_METRICS = {
    "step",
    "epoch",
    "lr",
    "projector_lr",
    "texts",
    "teacher_cached",
    "seed",
    "time",
    "elapsed_s",
    "step_time_s",
    "eval_time_s",
}
# Smallest y range of a metric's subplot, so that noise is not stretched into a trend: measures in [0, 1]
# get an absolute floor, the others a share of their first value (the range still grows with the data).
MIN_RANGE: dict[str, float] = {
    "probe_cos": 0.05,
    "probe_cos_projector": 0.05,
    "probe_cka": 0.05,
    "probe_retrieval": 0.1,
}
MIN_RELATIVE_RANGE: dict[str, float] = {
    "probe_gram_distance": 0.1,
    "probe_gram_distance_weighted": 0.1,
    "heldout_loss": 0.02,
    "heldout_ppl": 0.1,
}
# SRA runs are bluish green; other runs (baselines) take these in order of appearance
BASELINE_COLORS = [PALETTE["baseline"], PALETTE["sky"], PALETTE["purple"], PALETTE["black"], PALETTE["grey"]]


def metrics_frame(rows) -> pd.DataFrame:
    """Rows of metrics (list of dicts, a DataFrame, or a metrics.jsonl path) as a DataFrame.

    >>> metrics_frame([{"step": 1, "loss": 2.0}]).shape
    (1, 2)
    """
    if isinstance(rows, pd.DataFrame):
        return rows.copy()
    if isinstance(rows, str) or hasattr(rows, "read_text"):
        return pd.read_json(str(rows), lines=True)
    return pd.DataFrame(list(rows))


def _run_column(frame: pd.DataFrame, run_column: str | None) -> str | None:
    if run_column is not None:
        if run_column not in frame:
            raise SraVizError(f"run_column {run_column!r} is not a column; columns are {list(frame.columns)}")
        return run_column
    return next((c for c in ("run", "method") if c in frame), None)


def run_colors(names: Sequence[str]) -> dict[str, str]:
    """Colour per run: runs named like SRA are bluish green, others take the baseline colours in order.

    >>> run_colors(["uld", "SRA", "minED"])
    {'uld': '#E69F00', 'SRA': '#009E73', 'minED': '#56B4E9'}
    """
    out, i = {}, 0
    for name in names:
        if str(name).lower().startswith("sra"):
            out[name] = PALETTE["sra"]
        else:
            out[name] = BASELINE_COLORS[i % len(BASELINE_COLORS)]
            i += 1
    return out


def convergence_curves(
    metrics,
    columns: Sequence[str] | None = None,
    run_column: str | None = None,
    smoothing: float = 0.0,
    n_cols: int = 3,
    title: str | None = "Convergence",
) -> go.Figure:
    """One subplot per loss term / metric against ``step``, one line per run (``run`` or ``method``).

    ``smoothing`` in [0, 1): exponential moving average weight; the raw curve stays as a faint line.
    Metrics logged only at some steps (probes) are drawn with markers at those steps.
        >>> fig = convergence_curves(
        ...     [{"step": 0, "loss": 3.0, "method": "sra"}, {"step": 1, "loss": 2.0, "method": "sra"}]
        ... )
    """
    frame = metrics_frame(metrics)
    if "step" not in frame:
        raise SraVizError(f"metrics need a 'step' column; got columns {list(frame.columns)}")
    if not 0.0 <= smoothing < 1.0:
        raise SraVizError(f"smoothing must be in [0, 1), got {smoothing}")
    runs_col = _run_column(frame, run_column)
    if columns is None:
        numeric = [
            c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and c not in _NOT_METRICS
        ]
        numeric = [c for c in numeric if frame[c].notna().any() and c != runs_col]
        order = {name: i for i, name in enumerate(METRIC_TITLES)}  # aliases sort with their short name
        rank = {
            c: order.get(c.removeprefix("loss_") if c != "loss" else c, order.get(c, len(order)))
            for c in numeric
        }
        rank["probe_cosine"] = order["probe_cos"]
        columns = sorted(numeric, key=lambda c: rank[c])  # stable: unknown columns keep their order, last
    if not columns:
        raise SraVizError(f"no numeric metric columns to plot in {list(frame.columns)}")
    rows = math.ceil(len(columns) / n_cols)
    fig = make_subplots(
        rows,
        min(n_cols, len(columns)),
        subplot_titles=[METRIC_TITLES.get(c, c) for c in columns],
        vertical_spacing=min(0.12, 0.6 / max(rows, 1)),
        horizontal_spacing=0.07,
    )
    groups = list(frame.groupby(runs_col, sort=False)) if runs_col else [("run", frame)]
    colors = run_colors([str(run) for run, _ in groups])
    for run, part in groups:
        color = colors[str(run)]
        part = part.sort_values("step")
        for c_i, col in enumerate(columns):
            row, col_pos = divmod(c_i, n_cols)
            data = part[["step", col]].dropna()
            if data.empty:
                continue
            y = data[col].to_numpy(dtype=float)
            sparse = len(data) < 0.5 * len(part)  # probes logged every k steps
            mode = "lines+markers" if sparse or len(data) < 30 else "lines"
            common = dict(x=data["step"], row=row + 1, col=col_pos + 1)
            smooth = 0.0 if sparse else smoothing  # a few probe points: an EMA would only lag
            _add_curve(fig, y, smooth, mode, color, str(run), col, _first_for_run(fig, str(run)), common)
    fig.update_xaxes(title_text="step", row=rows)
    for c_i, col in enumerate(columns):
        row, col_pos = divmod(c_i, n_cols)
        y_range = honest_range(frame.sort_values("step")[col].dropna().to_numpy(dtype=float), col)
        if y_range is not None:
            fig.update_yaxes(range=y_range, row=row + 1, col=col_pos + 1)
    return styled(fig, title, height=int(260 * rows + 80), hovermode="x unified")


def honest_range(values: np.ndarray, metric: str) -> list[float] | None:
    """A y range at least :data:`MIN_RANGE` wide (or a share of the first value), centred on the data;
    None to let plotly autoscale (the data already spans more, or the metric has no floor).

    >>> honest_range(np.array([0.494, 0.491]), "probe_cos")
    [0.4675, 0.5175]
    """
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    floor = MIN_RANGE.get(metric, MIN_RELATIVE_RANGE.get(metric, 0.0) * abs(float(values[0])))
    lo, hi = float(values.min()), float(values.max())
    if floor <= 0 or hi - lo >= floor:
        return None
    mid = (lo + hi) / 2
    return [round(mid - floor / 2, 10), round(mid + floor / 2, 10)]


def _first_for_run(fig: go.Figure, run: str) -> bool:
    return not any(t.legendgroup == run and t.showlegend for t in fig.data)


def _ema(y: np.ndarray, smoothing: float) -> np.ndarray:
    out, acc = np.empty_like(y), y[0]
    for i, v in enumerate(y):
        acc = smoothing * acc + (1 - smoothing) * v
        out[i] = acc
    return out


def _add_curve(fig, y, smoothing, mode, color, run, metric, show_legend, common) -> None:
    row, col = common["row"], common["col"]
    x = common["x"]
    if smoothing > 0 and len(y) > 2:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line=dict(color=color, width=1),
                opacity=0.3,
                showlegend=False,
                legendgroup=run,
                hoverinfo="skip",
                name=f"{run} raw",
            ),
            row=row,
            col=col,
        )
        y = _ema(y, smoothing)
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode=mode,
            name=run,
            legendgroup=run,
            showlegend=show_legend,
            line=dict(color=color, width=2),
            marker=dict(size=5, color=color),
            hovertemplate=f"{run} · {metric}: %{{y:.4g}}<extra></extra>",
        ),
        row=row,
        col=col,
    )


def run_metrics_figure(run_dirs: Sequence, labels: Sequence[str] | None = None, **options) -> go.Figure:
    """Convergence curves of run directories (``metrics.jsonl``), labelled "<method> · <folder>" or
    ``labels``.

    >>> run_metrics_figure(["runs/sra", "runs/uld"])  # doctest: +SKIP
    """
    import json
    from pathlib import Path

    frames = []
    for i, d in enumerate(run_dirs):
        path = Path(d) / "metrics.jsonl"
        if not path.is_file():
            raise SraVizError(f"{path} does not exist: give run directories written by DistillSession")
        f = metrics_frame(path)
        if labels is not None:
            f["run"] = labels[i]
        else:
            config = Path(d) / "config.json"
            method = json.loads(config.read_text()).get("method", "") if config.is_file() else ""
            f["run"] = f"{method} · {Path(d).name}" if method else Path(d).name
        frames.append(f)
    return convergence_curves(pd.concat(frames, ignore_index=True), run_column="run", **options)
