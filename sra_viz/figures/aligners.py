"""Aligners compared: one strip per aligner, teacher tokens above and student tokens below on one byte
axis, each pair a band joining its two sides.

Layout decision: the x axis is the **byte offset** in the text (UTF-8), the only axis both
tokenizations share. A pair whose two sides cover the same bytes is a straight band (green, right);
a pair whose sides cover different bytes is a slanted band (reddish purple, wrong), so ULD's drift
after the first multi-byte character shows as bands that lean further and further. Neighbouring pairs
alternate two shades, and a white edge separates tokens, so each pair and token stays visible.
Text tokens in no pair are grey. Hover a band for the tokens, texts and bytes of both sides.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from ..aligner_comparison import ALIGNER_TITLES, AlignerComparison, TokenPair, text_tokens
from ..errors import SraVizError
from .style import MONO, PALETTE, display_width, esc, hex_bytes, styled, visible_bytes

LANE = 1.0  # height of a token lane, in y units
LINK = 1.6  # between the teacher lane and the student lane (the bands' slant)
ROW_GAP = 1.5  # between two aligners' strips (room for the strip's title)
PITCH = 2 * LANE + LINK + ROW_GAP
PX_PER_Y = 30
SHADES = {  # (right, wrong) fill per parity of the pair's index
    True: ("rgba(0, 158, 115, 0.70)", "rgba(0, 158, 115, 0.42)"),
    False: ("rgba(204, 121, 167, 0.85)", "rgba(204, 121, 167, 0.55)"),
}
MAX_HOVER_TOKENS = 6  # tokens listed per side in a pair's hover
LABEL_SIZE = 11  # font size of the token labels drawn in boxes wide enough for them
CELL_PX = LABEL_SIZE * 0.62  # width of one monospace cell at LABEL_SIZE
MARGIN = dict(l=80, r=20, t=80, b=50)


def _quad(xs: Sequence[float], ys: Sequence[float]) -> tuple[list, list]:
    return [*xs, xs[0], None], [*ys, ys[0], None]


def _extent(ranges, fallback: float) -> tuple[float, float]:
    """Outer byte extent of a side's ranges; an empty side is a thin sliver at ``fallback``."""
    if not ranges:
        return fallback - 0.15, fallback + 0.15
    return float(ranges[0][0]), float(ranges[-1][1])


def _side_hover(name: str, tokenized, indices: tuple[int, ...], ranges, raw: bytes) -> str:
    """One side of a pair for its hover: token index and text of each token, byte ranges, bytes in hex."""
    if not indices:
        return f"{name}: no token"
    shown = []
    for i in indices[:MAX_HOVER_TOKENS]:
        span = tokenized.byte_spans[i]
        piece = raw[span[0] : span[1]] if span is not None else b""
        shown.append(f"{i} “{esc(visible_bytes(piece))}”" if piece else f"{i} (no bytes)")
    more = f" … +{len(indices) - MAX_HOVER_TOKENS}" if len(indices) > MAX_HOVER_TOKENS else ""
    where = ", ".join(f"[{a}, {b})" for a, b in ranges) or "none"
    hexes = hex_bytes(tokenized.text, (ranges[0][0], ranges[-1][1])) if ranges else ""
    hexes = hexes if len(hexes) <= 48 else hexes[:45] + "…"
    plural = "s" if len(indices) > 1 else ""
    return f"{name} token{plural} {', '.join(shown)}{more}<br>  bytes {where}: {hexes}"


def _pair_hover(title: str, k: int, pair: TokenPair, comparison: AlignerComparison, raw: bytes) -> str:
    verdict = "right" if pair.right else f"wrong: {pair.wrong_bytes} bytes on one side only"
    return (
        f"{esc(title)} pair {k} · {verdict}<br>"
        + _side_hover("teacher", comparison.teacher, pair.teacher, pair.teacher_bytes, raw)
        + "<br>"
        + _side_hover("student", comparison.student, pair.student, pair.student_bytes, raw)
    )


def aligner_comparison_figure(
    comparison: AlignerComparison,
    aligners: Sequence[str] | None = None,
    width: int = 1000,
    title: str | None = "Aligners compared against the bytes",
) -> go.Figure:
    """One strip per aligner (``aligners``, default all of ``comparison.pairs``): token boxes by byte
    range on a teacher lane and a student lane, each pair a band between its two sides.

        >>> fig = aligner_comparison_figure(compare_aligners(al))   # doctest: +SKIP
    """
    names = list(aligners if aligners is not None else comparison.pairs)
    unknown = [name for name in names if name not in comparison.pairs]
    if unknown:
        raise SraVizError(
            f"aligner(s) {', '.join(map(repr, unknown))} not in the comparison; "
            f"it has {', '.join(comparison.pairs)}"
        )
    raw = comparison.text.encode("utf-8")
    n_bytes = max(len(raw), 1)
    px_per_byte = (width - MARGIN["l"] - MARGIN["r"]) / (n_bytes + 1)
    fig = go.Figure()
    annotations = []
    tick_y, tick_text = [], []
    legend: set[str] = set()  # legend entries already drawn
    for row, name in enumerate(names):
        pairs = comparison.pairs[name]
        counts = comparison.counts(name)
        top = -row * PITCH
        t_low, s_top = top - LANE, top - LANE - LINK  # teacher lane bottom, student lane top
        s_low = s_top - LANE
        fills: dict[tuple[bool, int], tuple[list, list]] = {}
        hover_x: list[float] = []
        hover_y: list[float] = []
        hover_text: list[str] = []
        hover_pair: list[int] = []  # pair index of each hover point
        for k, pair in enumerate(pairs):
            t0, t1 = _extent(pair.teacher_bytes, _extent(pair.student_bytes, 0.0)[0])
            s0, s1 = _extent(pair.student_bytes, t0)
            xs, ys = fills.setdefault((pair.right, k % 2), ([], []))
            for tokenized, indices, lo, hi in (
                (comparison.teacher, pair.teacher, t_low, top),
                (comparison.student, pair.student, s_low, s_top),
            ):
                for a, b in _token_boxes(tokenized, indices):
                    qx, qy = _quad([a, b, b, a], [lo, lo, hi, hi])
                    xs.extend(qx)
                    ys.extend(qy)
            qx, qy = _quad([t0, t1, s1, s0], [t_low, t_low, s_top, s_top])  # the band between the lanes
            xs.extend(qx)
            ys.extend(qy)
            text = _pair_hover(ALIGNER_TITLES.get(name, name), k, pair, comparison, raw)
            # the same hover on the teacher side, the band and the student side
            hover_x += [(t0 + t1) / 2, (t0 + t1 + s0 + s1) / 4, (s0 + s1) / 2]
            hover_y += [top - LANE / 2, (t_low + s_top) / 2, s_top - LANE / 2]
            hover_text += [text] * 3
            hover_pair += [k] * 3
        for (right, parity), (xs, ys) in sorted(fills.items()):
            group = "right" if right else "wrong"
            fig.add_trace(
                _filled(xs, ys, SHADES[right][parity], f"{group} pairs", group, _first(legend, group))
            )
        _add_unpaired(fig, comparison, pairs, (top, t_low, s_top, s_low), legend)
        for tokenized, y in ((comparison.teacher, top - LANE / 2), (comparison.student, s_top - LANE / 2)):
            _add_labels(fig, tokenized, raw, y, px_per_byte, f"{name} labels")
        fig.add_trace(
            go.Scatter(
                x=hover_x,
                y=hover_y,
                mode="markers",
                marker=dict(size=10, opacity=0, color=PALETTE["grey"]),
                hovertext=hover_text,
                hoverinfo="text",
                customdata=hover_pair,
                hoverlabel=dict(font=dict(color="#222222"), bordercolor=PALETTE["grey"]),  # dark text
                name=f"{name} pairs",
                showlegend=False,
            )
        )
        tick_y += [top - LANE / 2, s_top - LANE / 2]
        tick_text += [f"<span style='color:{PALETTE[s]}'>{s}</span>" for s in ("teacher", "student")]
        label = (
            f"<b>{esc(ALIGNER_TITLES.get(name, name))}</b> · {counts.pairs} pairs · "
            f"<b>{counts.wrong_pairs} wrong</b> · {counts.wrong_bytes} bytes on one side only"
        )
        if counts.unpaired_teacher or counts.unpaired_student:
            label += (
                f" · unpaired tokens: {counts.unpaired_teacher} teacher, {counts.unpaired_student} student"
            )
        annotations.append(
            dict(
                x=0,
                y=top + 0.25,
                xref="x",
                yref="y",
                xanchor="left",
                yanchor="bottom",
                showarrow=False,
                align="left",
                text=label,
                font=dict(size=13),
            )
        )
    height = int(len(names) * PITCH * PX_PER_Y + 150)
    styled(fig, title, width=width, height=height, hovermode="closest", margin=MARGIN)
    fig.update_layout(
        annotations=annotations,
        legend=dict(orientation="h", y=1.0, yanchor="bottom", x=1.0, xanchor="right"),
        hoverlabel=dict(font=dict(family=MONO, size=12)),
    )
    fig.update_xaxes(
        range=[-0.5, n_bytes + 0.5], title="byte offset in the text (UTF-8)", showgrid=False, zeroline=False
    )
    fig.update_yaxes(
        range=[-(len(names) - 1) * PITCH - 2 * LANE - LINK - 0.3, 1.4],
        fixedrange=True,
        tickvals=tick_y,
        ticktext=tick_text,
        showgrid=False,
        zeroline=False,
    )
    return fig


def _add_labels(fig, tokenized, raw: bytes, y: float, px_per_byte: float, name: str) -> None:
    """Each text token's bytes, made visible, in its box when the box is wide enough for all of them."""
    xs, labels = [], []
    for i in text_tokens(tokenized):
        a, b = tokenized.byte_spans[i]
        label = visible_bytes(raw[a:b])
        if label and (display_width(label) + 0.5) * CELL_PX <= (b - a) * px_per_byte:
            xs.append((a + b) / 2)
            labels.append(esc(label))
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[y] * len(xs),
            mode="text",
            text=labels,
            textfont=dict(family=MONO, size=LABEL_SIZE, color="#111111"),
            hoverinfo="skip",
            name=name,
            showlegend=False,
        )
    )


def _first(legend: set[str], entry: str) -> bool:
    """True the first time ``entry`` is asked for: each legend entry is drawn once."""
    seen = entry in legend
    legend.add(entry)
    return not seen


def _token_boxes(tokenized, indices) -> list[tuple[float, float]]:
    """Byte extent of each token; a token of no bytes (an inserted ``▁``) is a thin sliver."""
    boxes = []
    for i in indices:
        span = tokenized.byte_spans[i]
        if span is not None:
            a, b = span
            boxes.append((float(a), float(b)) if b > a else (a - 0.15, a + 0.15))
    return boxes


def _add_unpaired(fig, comparison: AlignerComparison, pairs, lanes, legend: set[str]) -> None:
    """Grey boxes for the text tokens of each side that no pair holds (``lanes``: teacher top and
    bottom, student top and bottom)."""
    top, t_low, s_top, s_low = lanes
    xs: list = []
    ys: list = []
    for side, lo, hi in (("teacher", t_low, top), ("student", s_low, s_top)):
        tokenized = getattr(comparison, side)
        paired = {i for p in pairs for i in getattr(p, side)}
        for a, b in _token_boxes(tokenized, [i for i in text_tokens(tokenized) if i not in paired]):
            qx, qy = _quad([a, b, b, a], [lo, lo, hi, hi])
            xs.extend(qx)
            ys.extend(qy)
    if xs:
        fig.add_trace(
            _filled(xs, ys, PALETTE["special"], "unpaired tokens", "unpaired", _first(legend, "unpaired"))
        )


def _filled(xs: list, ys: list, color: str, name: str, group: str, show: bool) -> go.Scatter:
    """Closed quads (NaN-separated outlines) filled with ``color``, white edges, one legend entry."""
    return go.Scatter(
        x=xs,
        y=ys,
        mode="lines",
        fill="toself",
        fillcolor=color,
        line=dict(color="white", width=1),
        hoverinfo="skip",
        name=name,
        legendgroup=group,
        showlegend=show,
    )
