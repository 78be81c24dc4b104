"""Geometry views: CoM scatter (2-D/3-D), geometry over training (step slider), Gram matrices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import geometry, projection
from ..errors import SraVizError
from .style import DIVERGING, PALETTE, SEQUENTIAL, category_color, esc, styled, visible_text


def _coords(x, name: str) -> np.ndarray:
    arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise SraVizError(f"{name} must be (N, 2) or (N, 3) projected coordinates, got shape {arr.shape}")
    return arr


def _links(t: np.ndarray, s: np.ndarray) -> list[list]:
    """Per axis: teacher_k, student_k, None, ... (one polyline trace for all N links)."""
    out = []
    for d in range(t.shape[1]):
        seg = np.full((t.shape[0], 3), np.nan)
        seg[:, 0], seg[:, 1] = t[:, d], s[:, d]
        out.append([None if np.isnan(v) else float(v) for v in seg.reshape(-1)])
    return out


def _hover(
    span_texts: Sequence[str] | None, n: int, side: str, extra: Sequence[str] | None = None
) -> list[str]:
    texts = span_texts if span_texts is not None else [""] * n
    return [
        f"{side} · span {k}: “{esc(visible_text(str(texts[k])))}”"
        + (f"<br>{extra[k]}" if extra is not None else "")
        for k in range(n)
    ]


def com_scatter(
    teacher_xy,
    student_xy,
    span_texts: Sequence[str] | None = None,
    color_by=None,
    color_title: str = "",
    categorical: bool | None = None,
    title: str | None = "Span centers of mass: teacher vs projected student",
) -> go.Figure:
    """Teacher CoMs (circles) and projected student CoMs (diamonds), a grey link per span pair.

    ``color_by`` (N,): text id (categorical) or saliency (continuous) fills the markers; the marker
    outline keeps the teacher/student hue. 3 columns give a 3-D scatter.
        >>> com_scatter(np.zeros((3, 2)), np.ones((3, 2)), ["a", "b", "c"]).data[0].name
        'span pairs'
    """
    t, s = _coords(teacher_xy, "teacher_xy"), _coords(student_xy, "student_xy")
    if t.shape != s.shape:
        raise SraVizError(f"teacher_xy {t.shape} and student_xy {s.shape} must match (same spans)")
    n, three_d = t.shape[0], t.shape[1] == 3
    if span_texts is not None and len(span_texts) != n:
        raise SraVizError(f"{len(span_texts)} span texts for {n} points")
    extra = None
    if color_by is not None:
        c = np.asarray(color_by).reshape(-1)
        if c.shape[0] != n:
            raise SraVizError(f"color_by has {c.shape[0]} values for {n} spans")
        if categorical is None:
            categorical = not np.issubdtype(c.dtype, np.floating)
        extra = [f"{color_title or 'colour'}: {v}" for v in c]
    Scatter = go.Scatter3d if three_d else go.Scatter
    axes = ("x", "y", "z") if three_d else ("x", "y")
    link = dict(zip(axes, _links(t, s), strict=True))
    fig = go.Figure()
    fig.add_trace(
        Scatter(
            **link,
            mode="lines",
            line=dict(color=PALETTE["link"], width=1),
            hoverinfo="skip",
            name="span pairs",
        )
    )
    for side, pts, symbol in (("teacher", t, "circle"), ("student", s, "diamond")):
        marker: dict[str, Any] = dict(
            symbol=symbol,
            size=5 if three_d else 9,
            color=PALETTE[side],
            line=dict(color=PALETTE[side], width=1.5),
        )
        if color_by is not None and categorical:
            _, codes = np.unique(c, return_inverse=True)
            marker["color"] = [category_color(int(i)) for i in codes]
        elif color_by is not None:
            marker.update(
                color=c.astype(float),
                colorscale=SEQUENTIAL,
                showscale=side == "teacher",
                colorbar=dict(title=color_title or "value", thickness=12),
            )
        fig.add_trace(
            Scatter(
                **dict(zip(axes, pts.T, strict=True)),
                mode="markers",
                name=side,
                marker=marker,
                hovertext=_hover(span_texts, n, side, extra),
                hoverinfo="text",
            )
        )
    if not three_d:
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    legend = dict(itemsizing="constant", orientation="h", y=1.02, yanchor="bottom", x=0.0, xanchor="left")
    return styled(fig, title, hovermode="closest", height=620, legend=legend, margin=dict(t=90))


def _padded_range(values: np.ndarray) -> list[float]:
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    return [lo - pad, hi + pad]


def geometry_over_training(
    teacher_xy,
    student_xy,
    steps: Sequence[int],
    span_texts: Sequence[str] | None = None,
    frame_notes: Sequence[str] | None = None,
    title: str | None = "Span geometry over training",
) -> go.Figure:
    """Animated teacher/student CoM layout with a step slider; axes fixed over all frames (WebGL).

    ``teacher_xy``: (N, 2) fixed or (S, N, 2) per step; ``student_xy``: (S, N, 2) — every span in every
    frame. ``frame_notes``: a line per step shown in the title (e.g. probe metrics).
        >>> fig = geometry_over_training(np.zeros((2, 3, 2)), np.ones((2, 3, 2)), [0, 10]); len(fig.frames)
        2
    """
    S = np.asarray(student_xy, dtype=np.float64)
    T = np.asarray(teacher_xy, dtype=np.float64)
    if S.ndim != 3 or S.shape[2] != 2:
        raise SraVizError(f"student_xy must be (steps, N, 2), got shape {S.shape}")
    T = np.repeat(T[None], S.shape[0], axis=0) if T.ndim == 2 else T
    if T.shape != S.shape:
        raise SraVizError(f"teacher_xy {T.shape} must be (N, 2) or match student_xy {S.shape}")
    if len(steps) != S.shape[0]:
        raise SraVizError(f"{len(steps)} steps for {S.shape[0]} frames")
    n = S.shape[1]
    t_hover, s_hover = _hover(span_texts, n, "teacher"), _hover(span_texts, n, "student")

    def traces(i: int) -> list:
        lx, ly = _links(T[i], S[i])
        return [
            go.Scattergl(
                x=lx,
                y=ly,
                mode="lines",
                line=dict(color=PALETTE["link"], width=1),
                hoverinfo="skip",
                name="span pairs",
            ),
            go.Scattergl(
                x=T[i, :, 0],
                y=T[i, :, 1],
                mode="markers",
                name="teacher",
                hovertext=t_hover,
                hoverinfo="text",
                marker=dict(color=PALETTE["teacher"], size=7, symbol="circle"),
            ),
            go.Scattergl(
                x=S[i, :, 0],
                y=S[i, :, 1],
                mode="markers",
                name="student",
                hovertext=s_hover,
                hoverinfo="text",
                marker=dict(color=PALETTE["student"], size=7, symbol="diamond"),
            ),
        ]

    def heading(i: int) -> str:
        note = f" · {frame_notes[i]}" if frame_notes is not None else ""
        return f"{title or ''} — step {steps[i]}{note}"

    frames = [
        go.Frame(data=traces(i), name=str(steps[i]), layout=dict(title_text=heading(i)))
        for i in range(len(steps))
    ]
    fig = go.Figure(data=traces(0), frames=frames)
    both = np.concatenate([T.reshape(-1, 2), S.reshape(-1, 2)])
    fig.update_xaxes(range=_padded_range(both[:, 0]), autorange=False, title="dim 1")
    fig.update_yaxes(range=_padded_range(both[:, 1]), autorange=False, title="dim 2")
    play = dict(frame=dict(duration=400, redraw=True), transition=dict(duration=0), fromcurrent=True)
    still = dict(frame=dict(duration=0, redraw=True), mode="immediate", transition=dict(duration=0))
    fig.update_layout(
        sliders=[
            dict(
                active=0,
                currentvalue=dict(prefix="step "),
                x=0.14,
                len=0.86,
                y=0,
                yanchor="top",
                pad=dict(t=50, b=10),
                steps=[dict(label=str(s), method="animate", args=[[str(s)], still]) for s in steps],
            )
        ],
        updatemenus=[
            dict(
                type="buttons",
                direction="left",
                x=0.13,
                y=0,
                xanchor="right",
                yanchor="top",
                pad=dict(t=72, r=10),
                showactive=False,
                buttons=[
                    dict(label="▶", method="animate", args=[None, play]),
                    dict(label="❚❚", method="animate", args=[[None], still]),
                ],
            )
        ],
    )
    return styled(fig, heading(0), hovermode="closest", height=650, margin=dict(b=140))


def snapshots_figure(
    snapshots,
    span_texts: Sequence[str] | None = None,
    method: str = "pca",
    fit_on: str = "all",
    metrics=None,
    **options,
) -> go.Figure:
    """Geometry over training of a run's ``RunSnapshots`` (teacher (N, D_T), student [(N, D_T)] per step),
    or of an already projected ``projection.SnapshotProjection``.

    ``metrics`` (the run's metrics frame) puts the probe cosine/CKA of each step in the frame title.
        >>> snapshots_figure(load_run("runs/sra")[2], method="umap")  # doctest: +SKIP
    """
    if isinstance(snapshots, projection.SnapshotProjection):
        proj = snapshots
    else:
        proj = projection.project_snapshots(
            snapshots.teacher, snapshots.student, snapshots.steps, method, fit_on
        )
        span_texts = span_texts if span_texts is not None else getattr(snapshots, "span_text", None)
    notes = None
    if metrics is not None and "step" in metrics:
        by_step = metrics.drop_duplicates("step", keep="last").set_index("step")
        cols = [c for c in ("probe_cos", "probe_cka", "probe_gram_distance") if c in by_step]
        notes = [
            " · ".join(
                f"{c.removeprefix('probe_')} {by_step.at[s, c]:.3f}"
                for c in cols
                if s in by_step.index and pd.notna(by_step.at[s, c])
            )
            for s in proj.steps
        ]
    options.setdefault("title", f"Span geometry over training ({proj.method.upper()})")
    return geometry_over_training(proj.teacher, proj.student, proj.steps, span_texts, notes, **options)


def gram_matrices(
    teacher_coms,
    student_coms,
    span_texts: Sequence[str] | None = None,
    weights=None,
    title: str | None = None,
) -> go.Figure:
    """Cosine Gram matrices of teacher and student span CoMs side by side, and student − teacher.

    Student CoMs may be raw (own dimension) or projected: the N x N Grams compare either way.
        >>> gram_matrices(np.eye(3), np.eye(3)).data[2].name
        'student − teacher'
    """
    Gt, Gs = geometry.cosine_gram(teacher_coms), geometry.cosine_gram(student_coms)
    if Gt.shape != Gs.shape:
        raise SraVizError(f"teacher has {Gt.shape[0]} spans and student {Gs.shape[0]}: give the same spans")
    n = Gt.shape[0]
    dist = geometry.gram_distance(teacher_coms, student_coms, weights)
    labels = (
        [f"{k}: {esc(visible_text(str(span_texts[k])))[:24]}" for k in range(n)]
        if span_texts
        else list(map(str, range(n)))
    )
    fig = make_subplots(
        1,
        3,
        subplot_titles=("teacher Gram", "student Gram", f"student − teacher (distance {dist:.4f})"),
        horizontal_spacing=0.08,
    )
    diff = Gs - Gt
    span = max(0.1, float(np.abs(diff).max()))
    custom = np.array([[f"{labels[i]} ↔ {labels[j]}" for j in range(n)] for i in range(n)], dtype=object)
    for col, (name, z, scale, lo, hi) in enumerate(
        [
            ("teacher", Gt, SEQUENTIAL, -1, 1),
            ("student", Gs, SEQUENTIAL, -1, 1),
            ("student − teacher", diff, DIVERGING, -span, span),
        ],
        start=1,
    ):
        bar = dict(thickness=10, x=0.645 if col == 2 else 1.0, xanchor="left", len=0.9)
        fig.add_trace(
            go.Heatmap(
                z=np.round(z, 4),
                colorscale=scale,
                zmin=lo,
                zmax=hi,
                zmid=0 if col == 3 else None,
                name=name,
                customdata=custom,
                hovertemplate="%{customdata}<br>cos %{z:.3f}<extra>" + name + "</extra>",
                colorbar=bar,
                showscale=col != 1,
            ),
            1,
            col,
        )
    fig.update_yaxes(autorange="reversed", showgrid=False, showticklabels=n <= 40)
    fig.update_xaxes(showgrid=False, showticklabels=False)
    for col, x in ((1, "x"), (2, "x2"), (3, "x3")):
        fig.update_yaxes(scaleanchor=x, constrain="domain", row=1, col=col)
    fig.update_xaxes(constrain="domain")
    for ann, color in zip(
        fig.layout.annotations, (PALETTE["teacher"], PALETTE["student"], "#222222"), strict=True
    ):
        ann.font = dict(color=color)
    return styled(fig, title or f"Span CoM Gram matrices ({n} spans)", height=460, width=1250)


def _numpy(x) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)


def corpus_scatter(
    corpus,
    layer: int = -1,
    method: str = "pca",
    student_map="procrustes",
    color_by: str | None = None,
    random_state: int | None = 0,
    **options,
) -> go.Figure:
    """CoM scatter of ``CorpusFeatures`` (``.frame``, ``.teacher_centers``, ``.student_centers``) or of one
    text's ``SpanFeatures``; coloured by ``color_by`` (default: text id, or saliency for one text).

    ``student_map``: a (D_S, D_T) projector (e.g. SRA's trained W); "procrustes" (default: rigid fit
    that keeps the student's shape, ``geometry.procrustes_align``); or "least_squares" (a linear map
    fitted on these very spans: flatters the student). ``method``: "pca" or "umap".
        >>> corpus_scatter(extract_corpus(texts, pair), color_by="saliency")  # doctest: +SKIP
    """
    if hasattr(corpus, "teacher_centers"):
        T, S, frame = (
            _numpy(corpus.teacher_centers[layer]),
            _numpy(corpus.student_centers[layer]),
            corpus.frame,
        )
    else:  # SpanFeatures of one text
        T, S, frame = (
            _numpy(corpus.teacher.centers[layer]),
            _numpy(corpus.student.centers[layer]),
            corpus.to_frame(),
        )
    color_by = color_by or ("text_id" if "text_id" in frame else "saliency")
    if isinstance(student_map, str):
        if student_map == "procrustes":
            S_proj, T = geometry.procrustes_align(S, T)
        elif student_map == "least_squares":
            S_proj = S @ geometry.fit_linear_map(S, T)
        else:
            raise SraVizError(
                f"student_map={student_map!r}; expected a matrix, 'procrustes' or 'least_squares'"
            )
        how = student_map.replace("_", "-")
    else:
        S_proj, how = S @ np.asarray(student_map, dtype=np.float64), "given projector"  # (N, D_T)
    both = np.vstack([T, S_proj])
    if method == "pca":
        xy = projection.project_pca(both)
    elif method == "umap":
        xy = projection.UmapProjector(random_state=random_state).fit_transform(both)
    else:
        raise SraVizError(f"method={method!r}; expected 'pca' or 'umap'")
    colors = frame[color_by].to_numpy() if color_by in frame else None
    options.setdefault("title", f"Span CoMs, layer {layer}, {method.upper()} (student via {how})")
    return com_scatter(
        xy[: len(T)],
        xy[len(T) :],
        frame["text"].tolist() if "text" in frame else None,
        colors,
        color_by,
        **options,
    )
