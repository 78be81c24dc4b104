"""Saliency views: text coloured by span mass (teacher | student), attention heatmaps, top-k spans."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import SraVizError
from .style import MONO, PALETTE, SEQUENTIAL, display_width, esc, styled, token_labels, visible_text


def _vector(x, name: str, n: int | None = None) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    if n is not None and v.shape[0] != n:
        raise SraVizError(f"{name} has {v.shape[0]} values but there are {n} spans")
    return v


COLOUR_SCALES = ("linear", "log", "rank")  # how span masses map to colours (span_mass_text)
LOG_FLOOR = 1e-6  # smallest mass share drawn on the log scale (masses below share its colour)


def sink_spans(n: int) -> list[int]:
    """The spans where attention sinks sit: the first and the last (none for texts under 4 spans).

    The first token collects attention whatever it says, and the last one (often the final
    punctuation) attends to itself, so their masses dwarf the rest (see METHOD.md, saliency).
        >>> sink_spans(5), sink_spans(3)
        ([0, 4], [])
    """
    return [0, n - 1] if n >= 4 else []


def mass_colours(
    masses: Sequence, scale: str = "linear", sinks: Sequence[int] = ()
) -> tuple[list[np.ndarray], float, float, str]:
    """Colour values of span-mass vectors (one colour scale for all), their range and the colour bar title.

    ``linear``: the mass, range 0 .. the largest mass outside ``sinks`` (sink spans saturate).
    ``log``: log10 of the mass (floored at ``LOG_FLOOR``), range over the spans outside ``sinks``.
    ``rank``: the rank of each span's mass within its vector, 0 (least) .. 1 (most): every step of the
    order is visible, however skewed the masses.
        >>> values, lo, hi, title = mass_colours([np.array([0.7, 0.1, 0.05, 0.15])], "linear", sinks=[0])
        >>> lo, hi, title
        (0.0, 0.15, 'mass<br>(span 0 saturates)')
        >>> [v.tolist() for v in mass_colours([np.array([0.7, 0.1, 0.05])], "rank")[0]]
        [[1.0, 0.5, 0.0]]
    """
    if scale not in COLOUR_SCALES:
        raise SraVizError(f"colour scale {scale!r} is not one of {', '.join(COLOUR_SCALES)}")
    vectors = [np.asarray(m, dtype=np.float64) for m in masses]
    if scale == "rank":
        ranks = [
            np.argsort(np.argsort(v, kind="stable"), kind="stable") / max(len(v) - 1, 1) for v in vectors
        ]
        return ranks, 0.0, 1.0, "rank of mass<br>(0 least, 1 most)"
    values = [np.log10(np.maximum(v, LOG_FLOOR)) for v in vectors] if scale == "log" else vectors
    keep = [np.setdiff1d(np.arange(len(v)), sinks) for v in values]
    ranged = np.concatenate([v[k] for v, k in zip(values, keep, strict=True)] or [np.zeros(0)])
    ranged = ranged if ranged.size else np.concatenate(values or [np.zeros(1)])
    lo = 0.0 if scale == "linear" else float(ranged.min())
    hi = max(float(ranged.max()), lo + 1e-12)
    title = "mass" if scale == "linear" else "log10 mass"
    if len(sinks):
        title += f"<br>(span{'s' if len(sinks) > 1 else ''} {' & '.join(map(str, sinks))} saturate"
        title += ")" if len(sinks) > 1 else "s)"
    return values, lo, hi, title


def _wrap_cells(labels: Sequence[str], capacity: float) -> tuple[list[float], list[float], list[int]]:
    """x0, width and line of each cell, breaking lines between cells."""
    x0s, widths, lines, x, line = [], [], [], 0.0, 0
    for lab in labels:
        w = min(capacity, display_width(lab) + 1.0)
        if x > 0 and x + w > capacity:
            line, x = line + 1, 0.0
        x0s.append(x)
        widths.append(w)
        lines.append(line)
        x += w
    return x0s, widths, lines


def span_mass_text(
    span_texts: Sequence[str],
    teacher_mass,
    student_mass,
    normalize: bool = True,
    width: int = 1200,
    font_size: int = 12,
    max_label: int = 24,
    title: str | None = "Span mass: teacher | student",
    scale: str = "linear",
    exclude_sinks: bool = False,
) -> go.Figure:
    """The text as a strip of span cells coloured by span mass, teacher and student side by side.

    ``normalize``: divide each side by its total span mass, so colours read as each model's share of
    attention over spans (special tokens such as ``<bos>`` hold the rest). One colour scale for both:
    ``scale`` "linear", "log" or "rank" (:func:`mass_colours`); ``exclude_sinks``: the first and last
    span (:func:`sink_spans`) are left out of the colour range and saturate, as the colour bar says.
        >>> fig = span_mass_text(["Hi", " there"], [0.2, 0.8], [0.5, 0.5])
    """
    n = len(span_texts)
    masses = {
        "teacher": _vector(teacher_mass, "teacher_mass", n),
        "student": _vector(student_mass, "student_mass", n),
    }
    if normalize:
        masses = {k: v / v.sum() if v.sum() > 0 else v for k, v in masses.items()}
    labels = [
        visible_text(t)[:max_label] + ("…" if len(visible_text(t)) > max_label else "") for t in span_texts
    ]
    capacity = max(10.0, (width / 2 - 60) / (font_size * 0.62))
    x0s, widths, lines = _wrap_cells(labels, capacity)
    n_lines = (max(lines) + 1) if lines else 1
    sinks = sink_spans(n) if exclude_sinks else []
    colours, cmin, cmax, colour_title = mass_colours([masses["teacher"], masses["student"]], scale, sinks)
    colour_of = dict(zip(("teacher", "student"), colours, strict=True))
    fig = make_subplots(
        1, 2, subplot_titles=("teacher span mass", "student span mass"), horizontal_spacing=0.03
    )
    for col, side in enumerate(("teacher", "student"), start=1):
        m = masses[side]
        hover = [
            f"span {k}: “{esc(visible_text(span_texts[k]))}”<br>{side} mass {m[k]:.4f}"
            f"<br>teacher {masses['teacher'][k]:.4f} · student {masses['student'][k]:.4f}"
            for k in range(n)
        ]
        fig.add_trace(
            go.Bar(
                orientation="h",
                y=[-ln for ln in lines],
                x=[w - 0.12 for w in widths],
                base=x0s,
                width=0.86,
                marker=dict(
                    color=colour_of[side],
                    colorscale=SEQUENTIAL,
                    cmin=cmin,
                    cmax=cmax,
                    line=dict(width=0),
                    showscale=col == 2,
                    colorbar=dict(title=colour_title, thickness=12),
                ),
                hovertext=hover,
                hoverinfo="text",
                name=f"{side} span mass",
                showlegend=False,
            ),
            1,
            col,
        )
        fig.add_trace(
            go.Scatter(
                x=[x + w / 2 for x, w in zip(x0s, widths, strict=True)],
                y=[-ln for ln in lines],
                mode="text",
                text=[esc(lab) for lab in labels],
                hoverinfo="skip",
                showlegend=False,
                name=f"{side} span text",
                textfont=dict(
                    family=MONO,
                    size=font_size,
                    color=[
                        "white" if (c - cmin) < 0.55 * (cmax - cmin) else "black" for c in colour_of[side]
                    ],
                ),
            ),
            1,
            col,
        )
    fig.update_xaxes(visible=False, range=[-0.3, capacity + 0.3])
    fig.update_yaxes(visible=False, range=[-n_lines + 0.4, 0.6], fixedrange=True)
    for ann, side in zip(fig.layout.annotations, ("teacher", "student"), strict=True):
        ann.font = dict(color=PALETTE[side])
    height = int(max(190, 110 + 32 * n_lines))
    return styled(
        fig, title, width=width, height=height, barmode="overlay", bargap=0, margin=dict(t=80, b=20)
    )


def attention_heatmap(
    attention,
    labels: Sequence[str],
    max_tokens: int = 160,
    side: str = "teacher",
    layer_label: str = "",
    title: str | None = None,
    head: int | None = None,
    special: Sequence[bool] | None = None,
) -> go.Figure:
    """Attention (H, L, L) or (L, L) as a heatmap (query rows, key columns).

    ``head=None``: the mean of the heads first, with a menu of single heads; ``head=h``: that head only,
    no menu (the head the mass was computed from). Texts longer than ``max_tokens`` show their last
    ``max_tokens`` tokens (where the last-token mass is read). Colours saturate at the 99.5th
    percentile of the attention to non-special keys (``special``: one flag per token, e.g. ``<bos>``,
    whose column would otherwise wash out the rest), as the colour bar says.
        >>> fig = attention_heatmap(np.tril(np.ones((2, 3, 3))) / 3, ["a", "b", "c"])
    """
    A = attention.detach().cpu().numpy() if hasattr(attention, "detach") else np.asarray(attention)
    A = A[None] if A.ndim == 2 else A
    if A.ndim != 3 or A.shape[1] != A.shape[2] or A.shape[1] != len(labels):
        raise SraVizError(f"attention must be (H, L, L) with L = {len(labels)} labels, got shape {A.shape}")
    start = max(0, A.shape[1] - max_tokens)
    A = A[:, start:, start:].astype(np.float32)  # (H, L', L')
    ticks = [esc(lab) for lab in labels[start:]]
    pos = list(range(start, start + A.shape[1]))
    if head is not None and not 0 <= head < A.shape[0]:
        raise SraVizError(
            f"head {head} does not exist: the attention has {A.shape[0]} heads (0..{A.shape[0] - 1})"
        )
    if head is None:
        views = [("all heads (mean)", A.mean(0))] + [(f"head {h}", A[h]) for h in range(A.shape[0])]
    else:
        views = [(f"head {head}", A[head])]
    flags = np.zeros(len(labels), bool) if special is None else np.asarray(special, bool)[start:]
    shown = np.stack([z for _, z in views])[:, :, ~flags]  # (V, L', keys that are not special)
    positive = shown[shown > 0]
    zmax = float(np.quantile(positive, 0.995)) if positive.size else 1.0
    colour_title = "attention" + ("<br>(range without<br>special keys)" if flags.any() else "")
    fig = go.Figure()
    for i, (name, z) in enumerate(views):
        fig.add_trace(
            go.Heatmap(
                z=np.round(z, 5),
                x=pos,
                y=pos,
                colorscale=SEQUENTIAL,
                zmin=0.0,
                zmax=zmax,
                name=name,
                visible=i == 0,
                customdata=np.array(ticks, dtype=object)[None, :].repeat(len(pos), 0),
                hovertemplate="query %{y}<br>key %{x} %{customdata}<br>attention %{z:.4f}<extra>"
                + name
                + "</extra>",
                colorbar=dict(title=colour_title, thickness=12),
            )
        )
    buttons = [
        dict(label=name, method="update", args=[{"visible": [j == i for j in range(len(views))]}])
        for i, (name, _) in enumerate(views)
    ]
    step = max(1, len(pos) // 80)  # at most ~80 tick labels
    axis = dict(
        tickvals=pos[::step], ticktext=ticks[::step], tickfont=dict(family=MONO, size=9), showgrid=False
    )
    fig.update_xaxes(title="key token", tickangle=-60, **axis)
    fig.update_yaxes(title="query token", autorange="reversed", **axis)
    size = int(min(900, max(420, 8 * len(pos) + 220)))
    default_title = f"{side} attention{' · ' + layer_label if layer_label else ''}"
    if len(views) > 1:
        fig.update_layout(
            updatemenus=[dict(buttons=buttons, x=0.0, xanchor="left", y=1.01, yanchor="bottom")]
        )
    return styled(
        fig,
        title or default_title,
        width=size + 80,
        height=size + 40,
        margin=dict(t=100),
        title_font_color=PALETTE.get(side),
    )


def top_spans_bar(
    span_texts: Sequence[str],
    saliency,
    teacher_mass=None,
    student_mass=None,
    k: int = 15,
    title: str | None = None,
) -> go.Figure:
    """Top-k spans by saliency ŵ; with masses given, teacher and student span-mass shares side by side.

    >>> top_spans_bar(["a", "b", "c"], [0.5, 0.3, 0.2], k=2).data[0].y
    ('0: a', '1: b')
    """
    n = len(span_texts)
    w = _vector(saliency, "saliency", n)
    order = np.argsort(-w, kind="stable")[:k]
    names = [f"{i}: {esc(visible_text(span_texts[i]))[:40]}" for i in order]
    fig = go.Figure()
    if teacher_mass is None and student_mass is None:
        fig.add_trace(
            go.Bar(orientation="h", y=names, x=w[order], name="saliency ŵ", marker_color=PALETTE["sra"])
        )
    else:
        for side, mass in (("teacher", teacher_mass), ("student", student_mass)):
            if mass is None:
                continue
            m = _vector(mass, f"{side}_mass", n)
            share = m / m.sum() if m.sum() > 0 else m
            fig.add_trace(
                go.Bar(
                    orientation="h",
                    y=names,
                    x=share[order],
                    name=f"{side} mass share",
                    marker_color=PALETTE[side],
                )
            )
        fig.add_trace(
            go.Scatter(
                y=names,
                x=w[order],
                mode="markers",
                name="saliency ŵ",
                marker=dict(symbol="line-ns-open", size=18, color=PALETTE["black"], line=dict(width=2)),
            )
        )
    fig.update_yaxes(autorange="reversed", tickfont=dict(family=MONO))
    fig.update_xaxes(title="share of span mass")
    return styled(
        fig, title or f"Top {len(order)} salient spans", barmode="group", height=int(120 + 28 * len(order))
    )


# ---------------------------------------------------------------- wrappers on the dataclasses


def _span_texts(alignment) -> list[str]:
    return [sp.text for sp in alignment.spans]


def saliency_figure(features, alignment=None, **options) -> go.Figure:
    """Span-mass text view of ``SpanFeatures`` (``.teacher/.student.span_mass``); alignment defaults to
    its own.

    >>> saliency_figure(analyze_text("The cat sat.", pair))  # doctest: +SKIP
    """
    alignment = alignment if alignment is not None else features.alignment
    return span_mass_text(
        _span_texts(alignment), features.teacher.span_mass, features.student.span_mass, **options
    )


def attention_figure(features, alignment=None, side: str = "teacher", **options) -> go.Figure:
    """Attention heatmap of one side's mass layer, token labels from the alignment.

    >>> attention_figure(analyze_text("The cat sat.", pair), side="student")  # doctest: +SKIP
    """
    if side not in ("teacher", "student"):
        raise SraVizError(f"side must be 'teacher' or 'student', got {side!r}")
    alignment = alignment if alignment is not None else features.alignment
    feats = getattr(features, side)
    if getattr(feats, "attention", None) is None:
        raise SraVizError(f"features.{side}.attention is None: extract features with keep_attention=True")
    labels = token_labels(getattr(alignment, side), alignment.text)
    layer = getattr(feats, "mass_layer", None)
    options.setdefault("layer_label", f"layer {layer}" if layer is not None else "")
    options.setdefault("special", getattr(alignment, side).special)
    return attention_heatmap(feats.attention, labels, side=side, **options)


def top_spans_figure(features, alignment=None, k: int = 15, **options) -> go.Figure:
    """Top-k salient spans of ``SpanFeatures`` with teacher and student mass shares.

    >>> top_spans_figure(analyze_text("The cat sat.", pair), k=5)  # doctest: +SKIP
    """
    alignment = alignment if alignment is not None else features.alignment
    return top_spans_bar(
        _span_texts(alignment),
        features.saliency,
        features.teacher.span_mass,
        features.student.span_mass,
        k,
        **options,
    )


# ---------------------------------------------------------------- corpus-level saliency

AXIS_TITLES = {"script": "by script", "length": "by span length", "position": "by place in the text"}


def corpus_saliency_figure(
    corpus, title: str | None = "Where the teacher's last token looks, over the corpus", width: int = 1000
):
    """Teacher mass share vs. span share per span kind (script, length, place), and the top span texts.

    ``corpus``: a `sra_viz.corpus_saliency.CorpusSaliency`. A kind whose mass bar outgrows its span bar
    gets more attention than its frequency.
        >>> corpus_saliency_figure(aggregate_span_mass(frame))   # doctest: +SKIP
    """
    axes = ("script", "length", "position")
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=[*(AXIS_TITLES[a] for a in axes), f"top {len(corpus.top)} span texts"],
        horizontal_spacing=0.2,
        vertical_spacing=0.16,
    )
    cells = ((1, 1), (1, 2), (2, 1))
    for (row, col), axis in zip(cells, axes, strict=True):
        table = corpus.kinds[axis]
        hover = [
            f"{axis} {esc(kind)}<br>mass share {m:.3f}<br>span share {s:.3f}<br>{n} spans"
            for kind, m, s, n in zip(
                table["kind"], table["mass"], table["spans"], table["n_spans"], strict=True
            )
        ]
        for column, name, color in (
            ("mass", "teacher mass share", PALETTE["teacher"]),
            ("spans", "span share", PALETTE["grey"]),
        ):
            fig.add_trace(
                go.Bar(
                    x=table["kind"],
                    y=table[column],
                    name=name,
                    marker_color=color,
                    legendgroup=column,
                    showlegend=axis == "script",
                    hovertext=hover,
                    hoverinfo="text",
                ),
                row=row,
                col=col,
            )
    top = corpus.top
    labels = [f"{esc(visible_text(t))[:24]} ×{c}" for t, c in zip(top["text"], top["count"], strict=True)]
    fig.add_trace(
        go.Bar(
            orientation="h",
            y=labels,
            x=top["mass"],
            name="teacher mass share",
            marker_color=PALETTE["teacher"],
            legendgroup="mass",
            showlegend=False,
            hovertext=[
                f"“{esc(visible_text(t))}” ×{c}<br>mass share {m:.3f}"
                for t, c, m in zip(top["text"], top["count"], top["mass"], strict=True)
            ],
            hoverinfo="text",
        ),
        row=2,
        col=2,
    )
    fig.update_yaxes(autorange="reversed", tickfont=dict(family=MONO, size=11), row=2, col=2)
    fig.update_yaxes(title="share", row=1, col=1)
    fig.update_yaxes(title="share", row=2, col=1)
    sinks = "first and last span of each text left out" if corpus.drop_sinks else "sink spans included"
    styled(
        fig,
        title,
        barmode="group",
        width=width,
        height=780,
        margin=dict(l=70, r=30, t=130, b=60),
        legend=dict(orientation="h", y=1.1, yanchor="bottom", x=1.0, xanchor="right"),
    )
    if title is not None:
        fig.update_layout(title=dict(y=0.98, yanchor="top"))  # the line below it holds counts and legend
    fig.add_annotation(  # under the title, left of the legend
        text=f"{corpus.texts} texts · {corpus.n_spans} spans · {sinks}",
        xref="paper",
        yref="paper",
        x=0,
        y=1.1,
        yanchor="bottom",
        showarrow=False,
        xanchor="left",
        font=dict(size=12, color=PALETTE["grey"]),
    )
    return fig
