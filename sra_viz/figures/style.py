"""One look for every figure: the Okabe-Ito colour-blind-safe palette, fonts, and token labels.

Teacher is always blue and student always vermillion, in every view; runs and categories take the
remaining Okabe-Ito hues in a fixed order.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from ..errors import SraVizError

PALETTE: dict[str, str] = {
    "teacher": "#0072B2",  # blue
    "student": "#D55E00",  # vermillion
    "sra": "#009E73",  # bluish green
    "baseline": "#E69F00",  # orange
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
    "grey": "#999999",
    "teacher_light": "#D9E8F3",  # opaque tints for token boxes
    "student_light": "#F7E0D0",
    "band_even": "#CFCFCF",  # alternating span bands: neighbours stay distinguishable
    "band_odd": "#ECECEC",
    "special": "#DDDDDD",
    "link": "rgba(120, 120, 120, 0.45)",
}
# categorical order for runs, text ids and other groups (teacher/student hues left out)
CATEGORICAL: list[str] = ["#009E73", "#E69F00", "#56B4E9", "#CC79A7", "#F0E442", "#000000", "#999999"]
SEQUENTIAL = "Viridis"  # masses, saliency (perceptually uniform, colour-blind safe)
DIVERGING = "RdBu_r"  # signed differences, centred on 0
FONT = dict(family="Inter, 'Segoe UI', Helvetica, Arial, sans-serif", size=13, color="#222222")
MONO = "'JetBrains Mono', 'DejaVu Sans Mono', Menlo, Consolas, monospace"

TEMPLATE = go.layout.Template(
    layout=dict(
        font=FONT,
        paper_bgcolor="white",
        plot_bgcolor="white",
        colorway=[PALETTE["teacher"], PALETTE["student"], *CATEGORICAL],
        hoverlabel=dict(font=dict(family=MONO, size=12), bgcolor="white"),
        xaxis=dict(gridcolor="#EEEEEE", zerolinecolor="#DDDDDD", linecolor="#BBBBBB"),
        yaxis=dict(gridcolor="#EEEEEE", zerolinecolor="#DDDDDD", linecolor="#BBBBBB"),
        legend=dict(bgcolor="rgba(255,255,255,0.8)"),
        margin=dict(l=60, r=30, t=60, b=50),
    )
)


def styled(fig: go.Figure, title: str | None = None, **layout) -> go.Figure:
    """Apply the project template (and a title) to a figure; returns it.

    >>> styled(go.Figure(), "x").layout.title.text
    'x'
    """
    fig.update_layout(template=TEMPLATE, **layout)
    if title is not None:
        fig.update_layout(title=dict(text=title, x=0.01, xanchor="left"))
    return fig


def category_color(index: int) -> str:
    """The i-th categorical colour (wraps around).

    >>> category_color(0)
    '#009E73'
    """
    return CATEGORICAL[index % len(CATEGORICAL)]


# ---------------------------------------------------------------- token labels

_VISIBLE = {
    " ": "␣",
    "\n": "↵",
    "\t": "→",
    "\r": "␍",
    "\u00a0": "⍽",  # no-break space
    "\u3000": "□",  # ideographic space
    "\u200b": "⟨ZWSP⟩",
    "\u200d": "⟨ZWJ⟩",
    "\ufeff": "⟨BOM⟩",
}


def visible_text(text: str) -> str:
    """Make whitespace and invisible characters visible: space ␣, newline ↵, tab →.

    >>> visible_text("a b\\n")
    'a␣b↵'
    """
    out = []
    for ch in text:
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0:
            out.append(f"⟨{ord(ch):02X}⟩")
        else:
            out.append(ch)
    return "".join(out)


def visible_bytes(piece: bytes) -> str:
    """Label for a token's UTF-8 bytes; bytes that are not a whole character show as ``<E6>``.

    >>> visible_bytes(" é".encode()), visible_bytes("東".encode()[:2])
    ('␣é', '<E6><9D>')
    """
    out, i = [], 0
    while i < len(piece):
        try:
            out.append(visible_text(piece[i:].decode("utf-8")))
            break
        except UnicodeDecodeError as err:
            out.append(visible_text(piece[i : i + err.start].decode("utf-8")))
            bad_end = i + max(err.end, err.start + 1)
            out.append("".join(f"<{b:02X}>" for b in piece[i + err.start : bad_end]))
            i = bad_end
    return "".join(out)


def token_side(side) -> dict:
    """Normalize a tokenized side (TokenizedText-like object or mapping) to plain lists.

    Needs ``ids`` and ``tokens``; ``byte_spans`` (None entries = special tokens) is optional.
        >>> token_side({"ids": [5], "tokens": ["a"]})["byte_spans"]
        [None]
    """
    get = side.get if isinstance(side, Mapping) else lambda k, d=None: getattr(side, k, d)
    ids, tokens = list(get("ids", []) or []), list(get("tokens", []) or [])
    tokens = tokens or [str(i) for i in ids]
    spans = get("byte_spans", None)
    spans = list(spans) if spans is not None else [None] * len(ids)
    if not (len(ids) == len(tokens) == len(spans)):
        raise SraVizError(
            "a tokenized side needs equal-length ids/tokens/byte_spans, got "
            f"{len(ids)}/{len(tokens)}/{len(spans)}"
        )
    return {"ids": ids, "tokens": tokens, "byte_spans": spans}


def token_labels(side, text: str | None = None, max_len: int | None = None) -> list[str]:
    """Display label per token: its real bytes made visible when known, else the token string.

    >>> token_labels({"ids": [1, 2], "tokens": ["<bos>", "Hi"], "byte_spans": [None, (0, 2)]}, "Hi")
    ['<bos>', 'Hi']
    """
    s = token_side(side)
    raw = text.encode("utf-8") if text is not None else None
    labels = []
    for tok, span in zip(s["tokens"], s["byte_spans"], strict=True):
        label = visible_bytes(raw[span[0] : span[1]]) if (span is not None and raw is not None) else str(tok)
        if max_len is not None and len(label) > max_len:
            label = label[: max(1, max_len - 1)] + "…"
        labels.append(label)
    return labels


def hex_bytes(text: str, span: Sequence[int] | None) -> str:
    """The token's bytes as hex ("68 69"), or "special" for tokens outside the text.

    >>> hex_bytes("hi", (0, 2))
    '68 69'
    """
    if span is None:
        return "special"
    return " ".join(f"{b:02X}" for b in text.encode("utf-8")[span[0] : span[1]])


def esc(text: str) -> str:
    """Escape ``<``, ``>`` and ``&`` so plotly shows ``<bos>`` or ``<E6>`` literally instead of as markup.

    >>> esc("<bos>")
    '&lt;bos&gt;'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def display_width(label: str) -> int:
    """Width of a label in monospace cells (East Asian wide characters count 2).

    >>> display_width("ab"), display_width("東")
    (2, 2)
    """
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in label)
