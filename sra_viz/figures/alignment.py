"""Alignment diagram: teacher tokens above, student tokens below, one shaded band per span.

Layout decision: long texts are **wrapped into lines** (like a paragraph) rather than scrolled
sideways. Each span is one column whose width fits the wider of its two token runs, so the tokens
of a span sit exactly above/below each other; lines break only between spans. The figure keeps a
fixed width (``width`` px) and grows in height with the number of lines, so it fits a page column
and a printed report; hundreds of tokens give a few dozen lines. Tokens outside every span
(``<bos>``, an unaligned prompt) get their own grey one-sided column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import plotly.graph_objects as go

from ..errors import SraVizError
from .style import (
    MONO,
    PALETTE,
    display_width,
    esc,
    hex_bytes,
    styled,
    token_labels,
    token_side,
    visible_text,
)

ROW_H = 1.0  # height of a token row, in y units
GAP = 0.7  # between the teacher and the student row of one line
LINE_GAP = 0.9  # between two lines
PITCH = 2 * ROW_H + GAP + LINE_GAP
PX_PER_Y = 24  # pixels per y unit
PAD = 0.8  # extra cells around a token label


@dataclass
class _Column:
    span: int | None  # span index, or None for a token outside every span
    teacher: list[int] = field(default_factory=list)
    student: list[int] = field(default_factory=list)
    width: float = 0.0
    line: int = 0
    x0: float = 0.0


def span_ranges(spans: Sequence) -> list[tuple[int, int, int, int, str | None]]:
    """(teacher_start, teacher_end, student_start, student_end, text) per span; Span-like or tuples.

    >>> span_ranges([(1, 2, 0, 1)])
    [(1, 2, 0, 1, None)]
    """
    out = []
    for sp in spans:
        if hasattr(sp, "teacher_start"):
            out.append(
                (
                    sp.teacher_start,
                    sp.teacher_end,
                    sp.student_start,
                    sp.student_end,
                    getattr(sp, "text", None),
                )
            )
        else:
            t = tuple(sp)
            out.append((int(t[0]), int(t[1]), int(t[2]), int(t[3]), t[4] if len(t) > 4 else None))
    return out


def _columns(ranges, n_teacher: int, n_student: int) -> list[_Column]:
    cols: list[_Column] = []
    t_pos = s_pos = 0
    for k, (ts, te, ss, se, _) in enumerate(ranges):
        if not (0 <= ts <= te <= n_teacher and 0 <= ss <= se <= n_student):
            raise SraVizError(
                f"span {k} has token ranges T[{ts},{te}) S[{ss},{se}) outside {n_teacher}/{n_student} tokens"
            )
        cols += [_Column(None, teacher=[i]) for i in range(t_pos, ts)]
        cols += [_Column(None, student=[i]) for i in range(s_pos, ss)]
        cols.append(_Column(k, list(range(ts, te)), list(range(ss, se))))
        t_pos, s_pos = max(t_pos, te), max(s_pos, se)
    cols += [_Column(None, teacher=[i]) for i in range(t_pos, n_teacher)]
    cols += [_Column(None, student=[i]) for i in range(s_pos, n_student)]
    return cols


def _wrap(cols: list[_Column], t_w: list[float], s_w: list[float], capacity: float) -> int:
    """Set each column's width, line and x0 (greedy, breaking only between columns); returns #lines."""
    line, x = 0, 0.0
    for c in cols:
        c.width = min(capacity, max(sum(t_w[i] for i in c.teacher), sum(s_w[i] for i in c.student), 1.0))
        if x > 0 and x + c.width > capacity:
            line, x = line + 1, 0.0
        c.line, c.x0 = line, x
        x += c.width
    return line + 1


def _rect(x0, x1, y0, y1) -> tuple[list, list]:
    return [x0, x1, x1, x0, x0, None], [y0, y0, y1, y1, y0, None]


def alignment_diagram(
    text: str,
    teacher,
    student,
    spans: Sequence,
    width: int = 1000,
    font_size: int = 12,
    max_label: int = 16,
    title: str | None = "Span alignment",
) -> go.Figure:
    """Teacher/student tokens joined by span bands; hover gives token id, string, bytes and span.

    ``teacher``/``student``: TokenizedText-like objects or dicts with ``ids``, ``tokens``, ``byte_spans``;
    ``spans``: Span-like objects or ``(t_start, t_end, s_start, s_end[, text])`` tuples.
        >>> fig = alignment_diagram(
        ...     "hi", {"ids": [7], "tokens": ["hi"]}, {"ids": [9], "tokens": ["hi"]}, [(0, 1, 0, 1)]
        ... )
    """
    sides = {"teacher": token_side(teacher), "student": token_side(student)}
    labels = {name: token_labels(side, text, max_label) for name, side in sides.items()}
    ranges = span_ranges(spans)
    widths = {name: [display_width(lab) + PAD for lab in labels[name]] for name in sides}
    cols = _columns(ranges, len(labels["teacher"]), len(labels["student"]))
    cell_px = font_size * 0.62
    capacity = max(10.0, (width - 110) / cell_px)  # cells per line
    n_lines = _wrap(cols, widths["teacher"], widths["student"], capacity)
    owner: dict[str, dict[int, int]] = {name: {} for name in sides}  # token index -> span index
    for k, (ts, te, ss, se, _) in enumerate(ranges):
        owner["teacher"].update({i: k for i in range(ts, te)})
        owner["student"].update({i: k for i in range(ss, se)})
    span_text = [_span_text(text, sides["teacher"], r) for r in ranges]

    fig = go.Figure()
    band: dict[int, tuple[list[float | None], list[float | None]]] = {0: ([], []), 1: ([], [])}
    span_hover: tuple[list[float], list[float], list[str]] = ([], [], [])
    for c in cols:
        if c.span is None:
            continue
        top = -c.line * PITCH
        xs, ys = _rect(c.x0 + 0.1, c.x0 + c.width - 0.1, top + 0.15, top - 2 * ROW_H - GAP - 0.15)
        band[c.span % 2][0].extend(xs)
        band[c.span % 2][1].extend(ys)
        ts, te, ss, se, _ = ranges[c.span]
        span_hover[0].append(c.x0 + c.width / 2)
        span_hover[1].append(top - ROW_H - GAP / 2)
        span_hover[2].append(
            f"span {c.span}: “{esc(visible_text(span_text[c.span]))}”<br>teacher tokens [{ts}, {te})"
            f" · student tokens [{ss}, {se})"
        )
    for parity, color in ((0, PALETTE["band_even"]), (1, PALETTE["band_odd"])):
        fig.add_trace(
            go.Scatter(
                x=band[parity][0],
                y=band[parity][1],
                mode="lines",
                fill="toself",
                fillcolor=color,
                line=dict(width=0),
                hoverinfo="skip",
                showlegend=False,
                name=f"spans ({'even' if parity == 0 else 'odd'})",
            )
        )
    for row, name in enumerate(("teacher", "student")):
        _add_side(
            fig,
            name,
            row,
            cols,
            sides[name],
            labels[name],
            widths[name],
            owner[name],
            text,
            span_text,
            font_size,
        )
    fig.add_trace(
        go.Scatter(
            x=span_hover[0],
            y=span_hover[1],
            mode="markers",
            name="span",
            marker=dict(size=5, color=PALETTE["grey"], symbol="line-ns-open"),
            hovertext=span_hover[2],
            hoverinfo="text",
            showlegend=False,
        )
    )
    ticks_y = [y for ln in range(n_lines) for y in (-ln * PITCH - ROW_H / 2, -ln * PITCH - 1.5 * ROW_H - GAP)]
    tick_text = [
        f"<span style='color:{PALETTE[n]}'>{n}</span>" for _ in range(n_lines) for n in ("teacher", "student")
    ]
    height = int(n_lines * PITCH * PX_PER_Y + 110)
    styled(fig, title, width=width, height=height, hovermode="closest", margin=dict(l=70, r=20, t=60, b=20))
    fig.update_xaxes(visible=False, range=[-0.5, capacity + 0.5], fixedrange=False)
    fig.update_yaxes(
        range=[-(n_lines - 1) * PITCH - 2 * ROW_H - GAP - 0.4, 0.4],
        fixedrange=True,
        tickvals=ticks_y,
        ticktext=tick_text,
        showgrid=False,
        zeroline=False,
    )
    fig.update_layout(legend=dict(orientation="h", y=1.0, yanchor="bottom", x=1.0, xanchor="right"))
    return fig


def _span_text(text: str, teacher: dict, r) -> str:
    if r[4] is not None:
        return r[4]
    spans = [teacher["byte_spans"][i] for i in range(r[0], r[1]) if teacher["byte_spans"][i] is not None]
    if not spans:
        return ""
    return text.encode("utf-8")[spans[0][0] : spans[-1][1]].decode("utf-8", errors="replace")


def _add_side(fig, name, row, cols, side, labels, widths, owner, text, span_text, font_size) -> None:
    """Token boxes (one polygon trace, specials apart) and a label/hover trace for one side."""
    # special? -> polygon coords
    boxes: dict[bool, tuple[list[float | None], list[float | None]]] = {False: ([], []), True: ([], [])}
    cx, cy, lab, hover, token_index = [], [], [], [], []
    for c in cols:
        idx = c.teacher if name == "teacher" else c.student
        if not idx:
            continue
        total = sum(widths[i] for i in idx)
        x = c.x0
        top = -c.line * PITCH - row * (ROW_H + GAP)
        for i in idx:
            w = widths[i] * c.width / total
            xs, ys = _rect(x + 0.15, x + w - 0.15, top, top - ROW_H)
            special = side["byte_spans"][i] is None
            boxes[special][0].extend(xs)
            boxes[special][1].extend(ys)
            cx.append(x + w / 2)
            cy.append(top - ROW_H / 2)
            lab.append(esc(labels[i]))
            token_index.append(i)
            k = owner.get(i)
            where = f"span {k}: “{esc(visible_text(span_text[k]))}”" if k is not None else "no span"
            hover.append(
                f"{name} token {i} · id {side['ids'][i]}<br>string {esc(repr(side['tokens'][i]))}"
                f"<br>bytes {hex_bytes(text, side['byte_spans'][i])}<br>{where}"
            )
            x += w
    color = PALETTE[name]
    fill = PALETTE[f"{name}_light"]
    for special, fc in ((False, fill), (True, PALETTE["special"])):
        if boxes[special][0]:
            fig.add_trace(
                go.Scatter(
                    x=boxes[special][0],
                    y=boxes[special][1],
                    mode="lines",
                    fill="toself",
                    fillcolor=fc,
                    line=dict(color=color if not special else PALETTE["grey"], width=1),
                    hoverinfo="skip",
                    name=f"{name} {'special' if special else 'tokens'}",
                    legendgroup=name,
                    showlegend=not special,
                )
            )
    fig.add_trace(
        go.Scatter(
            x=cx,
            y=cy,
            mode="text+markers",
            text=lab,
            name=f"{name} labels",
            legendgroup=name,
            showlegend=False,
            textfont=dict(family=MONO, size=font_size, color="#111111"),
            marker=dict(size=font_size + 4, symbol="square", opacity=0, color=color),
            hovertext=hover,
            hoverinfo="text",
            customdata=token_index,
        )
    )


def alignment_figure(alignment, **options) -> go.Figure:
    """Alignment diagram of a ``SpanAlignment`` (anything with ``.text``, ``.teacher``, ``.student``,
    ``.spans``).

    >>> alignment_figure(align_spans("Hi there", tt, st))  # doctest: +SKIP
    """
    return alignment_diagram(alignment.text, alignment.teacher, alignment.student, alignment.spans, **options)
