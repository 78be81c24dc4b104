"""Change since step 0: views that make small, real movement of the student's span geometry visible.

A short CPU run moves the probe averages in the second or third decimal; these views show where it
moves, span by span, always against step 0 and on scales fixed by step 0 (never autoscaled noise):

* :func:`span_distance_figure`: each span's distance to its teacher counterpart, its change since
  step 0, and the share of spans that are closer than at step 0 (0.5 = no net movement);
* :func:`gram_change_figure`: |G_S − G_T| of one probe text at step 0 and now, on one colour scale,
  and their difference;
* :func:`displacement_figure`: each span's move in a shared PCA plane from step 0 to now.

``change_figures(load_snapshots(run_dir))`` builds all three from a run's probe snapshots.

    >>> figs = change_figures(load_snapshots("runs/sra"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import SraVizError
from .style import DIVERGING, PALETTE, esc, styled, visible_text

CLOSER, FARTHER = PALETTE["sra"], PALETTE["student"]


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=-1, keepdims=True), 1e-12)


def matched_distances(teacher: np.ndarray, students: Sequence[np.ndarray]) -> np.ndarray:
    """Cosine distance ``1 − cos(s_k, t_k)`` of every span k to its teacher counterpart, per snapshot.

    teacher (N, D), students [(N, D)] per step (projected to teacher space) -> (steps, N).
        >>> matched_distances(np.eye(2), [np.eye(2), np.ones((2, 2))]).round(3).tolist()
        [[0.0, 0.0], [0.293, 0.293]]
    """
    T = _unit(np.asarray(teacher, np.float64))  # (N, D)
    if not len(students):
        raise SraVizError("matched_distances got no student snapshots")
    S = _unit(np.stack([np.asarray(s, np.float64) for s in students]))  # (steps, N, D)
    if S.shape[1:] != T.shape:
        raise SraVizError(f"student snapshots {S.shape[1:]} do not match the teacher {T.shape}")
    return 1.0 - np.einsum("snd,nd->sn", S, T)


def _cos_gram(X: np.ndarray) -> np.ndarray:
    U = _unit(np.asarray(X, np.float64))
    return U @ U.T  # (n, n)


def span_distance_figure(
    steps: Sequence[int],
    distances: np.ndarray,
    title: str | None = "Distance of each span to its teacher span",
) -> go.Figure:
    """Three panels against step: the distance distribution, the change since step 0, the share closer.

    ``distances`` (steps, N) from :func:`matched_distances`, the first row at step 0. The change panel's
    range is at least ±½ sd of the step-0 distances, so a shift smaller than the spread between spans
    is drawn small, not stretched into a trend.
        >>> fig = span_distance_figure([0, 10], np.array([[0.5, 0.6], [0.4, 0.6]])); len(fig.data) > 0
        True
    """
    D = np.asarray(distances, np.float64)
    if D.ndim != 2 or D.shape[0] != len(steps) or D.shape[0] == 0:
        raise SraVizError(
            f"distances must be (steps, N) with one row per step; got {D.shape} for {len(steps)} steps"
        )
    delta = D - D[0]  # (steps, N) change since step 0, per span
    closer = (delta < 0).mean(axis=1)  # share of spans closer than at step 0
    fig = make_subplots(
        1,
        3,
        horizontal_spacing=0.08,
        subplot_titles=[
            "1 − cos to the teacher span (all spans)",
            "change since step 0, per span (↓ closer)",
            "share of spans closer than at step 0",
        ],
    )
    x = [str(s) for s in steps]
    for i, label in enumerate(x):
        fig.add_trace(
            go.Box(
                y=D[i],
                name=label,
                marker_color=PALETTE["student"],
                boxpoints=False,
                showlegend=False,
                hoverinfo="y",
            ),
            1,
            1,
        )
        fig.add_trace(
            go.Box(
                y=delta[i],
                name=label,
                marker_color=PALETTE["sra"],
                boxpoints=False,
                showlegend=False,
                hoverinfo="y",
            ),
            1,
            2,
        )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=closer,
            mode="lines+markers",
            line=dict(color=CLOSER, width=2),
            showlegend=False,
            hovertemplate="step %{x}: %{y:.0%} of spans closer<extra></extra>",
        ),
        1,
        3,
    )
    floor = 0.5 * float(np.std(D[0])) or 0.01
    reach = max(floor, float(np.nanmax(np.abs(delta)))) * 1.05
    fig.update_yaxes(range=[0, max(1e-6, float(np.nanmax(D))) * 1.05], row=1, col=1)
    fig.update_yaxes(
        range=[-reach, reach], zeroline=True, zerolinecolor="#555555", zerolinewidth=1, row=1, col=2
    )
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=3)
    fig.add_hline(y=0.5, line=dict(color=PALETTE["grey"], dash="dash"), row=1, col=3)
    fig.update_xaxes(title_text="step", type="category")
    return styled(fig, title, height=380, margin=dict(t=90))


def gram_change_figure(
    teacher: np.ndarray,
    student_start: np.ndarray,
    student_now: np.ndarray,
    span_texts: Sequence[str] | None = None,
    steps: tuple[int, int] = (0, 0),
    title: str | None = "Gram difference |G_S − G_T| of one probe text",
) -> go.Figure:
    """|G_S − G_T| (cosine Grams of one text's spans) at step 0 and now on one scale, and now − step 0.

    teacher (n, D_T), student_start / student_now (n, D) of the same n spans; blue in the third panel
    is where the student's relations between spans got closer to the teacher's.
        >>> fig = gram_change_figure(np.eye(3), np.ones((3, 2)), np.eye(3)); len(fig.data)
        3
    """
    G_T = _cos_gram(teacher)
    before, after = np.abs(_cos_gram(student_start) - G_T), np.abs(_cos_gram(student_now) - G_T)
    if before.shape != G_T.shape or after.shape != G_T.shape:
        raise SraVizError(
            f"student spans {before.shape}/{after.shape} do not match the teacher's {G_T.shape}"
        )
    n = G_T.shape[0]
    labels = [f"{i}·{visible_text(t)[:12]}" for i, t in enumerate(span_texts or [""] * n)]
    top = float(max(before.max(), after.max(), 1e-6))
    change = after - before
    reach = float(max(np.abs(change).max(), 1e-6))
    first, now = steps
    fig = make_subplots(
        1,
        3,
        horizontal_spacing=0.09,
        subplot_titles=[
            f"step {first}: mean {before.mean():.4f}",
            f"step {now}: mean {after.mean():.4f}",
            "now − step 0 (blue: closer to the teacher)",
        ],
    )
    hover = "%{y} × %{x}: %{z:.4f}<extra></extra>"
    fig.add_trace(
        go.Heatmap(
            z=before,
            x=labels,
            y=labels,
            zmin=0,
            zmax=top,
            colorscale="Viridis",
            colorbar=dict(x=0.62, len=0.9, title="|ΔG|"),
            hovertemplate=hover,
        ),
        1,
        1,
    )
    fig.add_trace(
        go.Heatmap(
            z=after,
            x=labels,
            y=labels,
            zmin=0,
            zmax=top,
            colorscale="Viridis",
            showscale=False,
            hovertemplate=hover,
        ),
        1,
        2,
    )
    fig.add_trace(
        go.Heatmap(
            z=change,
            x=labels,
            y=labels,
            zmin=-reach,
            zmax=reach,
            colorscale=DIVERGING,
            colorbar=dict(x=1.0, len=0.9, title="Δ"),
            hovertemplate=hover,
        ),
        1,
        3,
    )
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    return styled(fig, title, height=400, margin=dict(t=90))


def displacement_figure(
    teacher_xy: np.ndarray,
    start_xy: np.ndarray,
    now_xy: np.ndarray,
    span_texts: Sequence[str] | None = None,
    closer: np.ndarray | None = None,
    steps: tuple[int, int] = (0, 0),
    title: str | None = "Per-span displacement in the projection",
) -> go.Figure:
    """Each span's student point moving from step 0 to now (segment + end marker), teachers in light blue.

    Green moves end closer to the span's teacher point than they started (``closer``, default: in the
    plane), vermillion ones farther, grey points did not move (e.g. "now" is step 0).
    All arrays (N, 2) on shared axes (e.g. one PCA fit).
        >>> fig = displacement_figure(np.zeros((2, 2)), np.ones((2, 2)), np.full((2, 2), 0.5)); len(fig.data)
        3
    """
    T, A, B = (np.asarray(a, np.float64) for a in (teacher_xy, start_xy, now_xy))
    if not (T.shape == A.shape == B.shape and T.ndim == 2 and T.shape[1] == 2):
        raise SraVizError(f"teacher_xy {T.shape}, start_xy {A.shape}, now_xy {B.shape} must all be (N, 2)")
    if closer is None:
        closer = np.linalg.norm(B - T, axis=1) < np.linalg.norm(A - T, axis=1)
    unchanged = np.all(A == B, axis=1)  # (N,) e.g. every span when "now" is step 0 itself
    closer = np.asarray(closer, bool) & ~unchanged
    farther = ~closer & ~unchanged
    texts = [esc(visible_text(t)) for t in (span_texts or [""] * len(T))]
    fig = go.Figure()
    fig.add_trace(
        go.Scattergl(
            x=T[:, 0],
            y=T[:, 1],
            mode="markers",
            name="teacher spans",
            marker=dict(color=PALETTE["teacher"], size=6, opacity=0.35),
            hovertext=texts,
            hoverinfo="text",
        )
    )
    first, now = steps
    for mask, color, name in (
        (closer, CLOSER, "closer"),
        (farther, FARTHER, "farther"),
        (unchanged, PALETTE["grey"], "unchanged"),
    ):
        idx = np.flatnonzero(mask)
        if not len(idx):
            continue
        label = (
            f"{len(idx)} spans unchanged (step {now} = step {first})"
            if name == "unchanged"
            else f"{len(idx)} spans {name} at step {now} than at step {first}"
        )
        xs = np.column_stack([A[idx, 0], B[idx, 0], np.full(len(idx), np.nan)]).ravel()
        ys = np.column_stack([A[idx, 1], B[idx, 1], np.full(len(idx), np.nan)]).ravel()
        fig.add_trace(
            go.Scattergl(
                x=xs,
                y=ys,
                mode="lines",
                line=dict(color=color, width=1.5),
                hoverinfo="skip",
                legendgroup=name,
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scattergl(
                x=B[idx, 0],
                y=B[idx, 1],
                mode="markers",
                legendgroup=name,
                marker=dict(color=color, size=6),
                name=label,
                hovertext=[texts[i] for i in idx],
                hoverinfo="text",
            )
        )
    moved = np.linalg.norm(B - A, axis=1)
    gap = np.linalg.norm(A - T, axis=1)
    note = (
        f"median move {np.median(moved):.3g} vs median distance to teacher {np.median(gap):.3g} (same units)"
    )
    legend = dict(orientation="h", y=1.02, yanchor="bottom", x=0.0, xanchor="left")
    fig.update_xaxes(title="PC 1")
    fig.update_yaxes(title="PC 2", scaleanchor="x", scaleratio=1)
    return styled(fig, f"{title} · {note}" if title else None, height=560, legend=legend, margin=dict(t=100))


def change_figures(snapshots: Any, text: int = 0, step: int | None = None) -> dict[str, go.Figure]:
    """The three change views of a run's ``RunSnapshots``: step 0 (the first snapshot) against ``step``
    (default: the last snapshot; at step 0 itself every change is 0).

    ``text`` is the probe text whose Gram matrices are drawn. The Gram view uses the student's own CoMs
    where the snapshot holds them (``student`` arrays), else its projection to teacher space.
        >>> sorted(change_figures(load_snapshots("runs/sra")))  # doctest: +SKIP
        ['displacement', 'distances', 'gram']
    """
    from ..projection import PcaProjector

    if snapshots is None or not snapshots.steps:
        raise SraVizError("the run has no probe snapshots yet")
    if step is not None and step not in snapshots.steps:
        raise SraVizError(f"step {step} has no snapshot; snapshot steps are {list(snapshots.steps)}")
    upto = len(snapshots.steps) if step is None else list(snapshots.steps).index(step) + 1
    steps = list(snapshots.steps)[:upto]
    students = list(snapshots.student)[:upto]
    T = np.asarray(snapshots.teacher)  # (N, D_T)
    S0, S1 = np.asarray(students[0]), np.asarray(students[-1])  # (N, D_T) projected
    D = matched_distances(T, students)  # (steps, N)
    figs = {"distances": span_distance_figure(steps, D)}
    rows = np.flatnonzero(np.asarray(snapshots.text_id) == text)
    if len(rows) >= 2:
        own0 = snapshots.extra.get(steps[0], {}).get("student")
        own1 = snapshots.extra.get(steps[-1], {}).get("student")
        start, now = (own0, own1) if own0 is not None and own1 is not None else (S0, S1)
        figs["gram"] = gram_change_figure(
            T[rows],
            np.asarray(start)[rows],
            np.asarray(now)[rows],
            [snapshots.span_text[i] for i in rows],
            (steps[0], steps[-1]),
            title=f"Gram difference |G_S − G_T| of probe text {text} ({len(rows)} spans)",
        )
    pca = PcaProjector(2).fit(np.vstack([T, S0, S1]))
    figs["displacement"] = displacement_figure(
        pca.transform(T),
        pca.transform(S0),
        pca.transform(S1),
        snapshots.span_text,
        D[-1] < D[0],
        (steps[0], steps[-1]),
    )
    return figs
