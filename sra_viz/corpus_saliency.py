"""Corpus-level saliency: over many texts, which kinds of spans the teacher's mass goes to.

Per text the teacher's span masses ``M_k`` (`sra_viz.extraction`, the mass of the chosen layer's
attention, last token by default) sum to 1. Each span gets a **kind** along three axes:

- ``length``: its characters, binned (`LENGTH_BINS`);
- ``position``: its relative place in the text, ``(k + ½) / N`` for span k of N, in fifths;
- ``script``: what its characters are (`span_script`): CJK, Latin, digits, punct (punctuation and
  symbols, emoji included), whitespace, other (any other script).

The corpus share of a kind c weighs every text the same:

    mass(c)  = (1/T) Σ_text Σ_{k of kind c} M_k          (Σ_c mass(c) = 1)
    spans(c) = (1/T) Σ_text #{k of kind c} / N_text      (the share of spans of that kind)

so ``mass(c) / spans(c) > 1`` means the last token looks at kind c more than its frequency. With
``drop_sinks`` the first and the last span of each text (the attention sinks, see
`sra_viz.figures.saliency.sink_spans`) are left out and the remaining masses renormalised to 1. The
**top span texts** sum ``M_k / T`` over every span with the same text.

    >>> cs = corpus_saliency(list(SAMPLES.values()), pair)   # doctest: +SKIP
    >>> cs.kinds["script"]                                    # doctest: +SKIP
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import SraVizError

AXES = ("script", "length", "position")
SCRIPTS = ("Latin", "CJK", "digits", "punct", "whitespace", "other")
LENGTH_BINS = ((1, 1), (2, 2), (3, 4), (5, 8), (9, None))  # characters, inclusive; None = no upper bound
POSITION_BINS = 5
TOP_TEXTS = 15

_CJK_NAMES = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO")  # Unicode names of CJK letters


@dataclass
class CorpusSaliency:
    """Teacher mass by span kind over a corpus.

    ``kinds[axis]``: one row per kind of ``axis`` (in `AXES`) with ``kind``, ``mass``, ``spans`` (shares,
    see the module) and ``n_spans`` (count); ``top``: the span texts with the most mass (``text``,
    ``mass``, ``count``); ``texts`` / ``n_spans``: what was counted.
    """

    kinds: dict[str, pd.DataFrame]
    top: pd.DataFrame
    texts: int
    n_spans: int
    drop_sinks: bool


def span_script(text: str) -> str:
    """The script class of a span's text, by the first rule that holds on its non-space characters:
    none → whitespace, any CJK letter (Han, kana, Hangul) → CJK, any Latin letter → Latin, any digit →
    digits, all punctuation, symbols or marks → punct, else other. An empty text is other.

    Example:
        >>> [span_script(t) for t in [" ", " the", "東京", "2024", "!?", "🙂", "Москва", ""]]
        ['whitespace', 'Latin', 'CJK', 'digits', 'punct', 'punct', 'other', 'other']
    """
    if not text:
        return "other"
    chars = [ch for ch in text if not ch.isspace() and ch not in "\u200b\u200d\ufeff"]
    if not chars:
        return "whitespace"
    letters = [unicodedata.name(ch, "") for ch in chars if ch.isalpha()]  # names of the letters
    if any(name.startswith(_CJK_NAMES) for name in letters):
        return "CJK"
    if any(name.startswith("LATIN") for name in letters):
        return "Latin"
    if any(ch.isdigit() for ch in chars):
        return "digits"
    if all(unicodedata.category(ch)[0] in "PSM" for ch in chars):
        return "punct"
    return "other"


def length_kind(n_chars: int) -> str:
    """The `LENGTH_BINS` label of a span of ``n_chars`` characters.

    Example:
        >>> [length_kind(n) for n in (0, 1, 4, 12)]
        ['1 char', '1 char', '3–4 chars', '9+ chars']
    """
    for low, high in LENGTH_BINS:
        if high is None or n_chars <= high:
            return _length_label(low, high)
    raise AssertionError("the last length bin has no upper bound")


def position_kind(k: int, n: int) -> str:
    """The fifth of the text span ``k`` of ``n`` sits in, by its centre ``(k + ½) / n``.

    Example:
        >>> [position_kind(k, 10) for k in (0, 5, 9)]
        ['0–20%', '40–60%', '80–100%']
    """
    fifth = min(int((k + 0.5) / n * POSITION_BINS), POSITION_BINS - 1)
    return _position_label(fifth)


def _length_label(low: int, high: int | None) -> str:
    if high is None:
        return f"{low}+ chars"
    if low == high:
        return f"{low} char" + ("s" if low > 1 else "")
    return f"{low}–{high} chars"


def _position_label(fifth: int) -> str:
    step = 100 // POSITION_BINS
    return f"{fifth * step}–{(fifth + 1) * step}%"


ORDER = {  # axis -> every kind, in display order
    "script": list(SCRIPTS),
    "length": [_length_label(low, high) for low, high in LENGTH_BINS],
    "position": [_position_label(i) for i in range(POSITION_BINS)],
}


def aggregate_span_mass(
    frame: pd.DataFrame, drop_sinks: bool = True, top: int = TOP_TEXTS, mass_column: str = "teacher_mass"
) -> CorpusSaliency:
    """Mass by span kind from a span frame (``text_id``, ``span_id``, ``text`` and ``mass_column``, one
    row per span, as `sra_viz.extraction.extract_corpus` gives). Formulas in the module docstring.

    Example:
        >>> frame = pd.DataFrame({"text_id": [0, 0], "span_id": [0, 1], "text": ["Hi", " 東京"],
        ...                       "teacher_mass": [0.25, 0.75]})
        >>> script = aggregate_span_mass(frame, drop_sinks=False).kinds["script"].set_index("kind")
        >>> float(script.loc["CJK", "mass"])
        0.75
    """
    missing = [c for c in ("text_id", "span_id", "text", mass_column) if c not in frame.columns]
    if missing:
        raise SraVizError(f"span frame lacks the column(s) {', '.join(missing)}: use extract_corpus's frame")
    rows = []
    for _, spans in frame.sort_values(["text_id", "span_id"]).groupby("text_id", sort=True):
        n = len(spans)
        keep = np.ones(n, dtype=bool)
        if drop_sinks and n >= 4:  # the rule of figures.saliency.sink_spans
            keep[[0, n - 1]] = False
        mass = spans[mass_column].to_numpy(dtype=np.float64)[keep]  # (n_kept,)
        total = mass.sum()
        if total <= 0:
            continue
        texts = spans["text"].astype(str).to_numpy()[keep]
        positions = np.flatnonzero(keep)
        rows.append(
            pd.DataFrame(
                {
                    "text": texts,
                    "mass": mass / total,
                    "weight": 1.0 / len(mass),  # the span's share of its text's (kept) spans
                    "script": [span_script(t) for t in texts],
                    "length": [length_kind(len(t)) for t in texts],
                    "position": [position_kind(int(k), n) for k in positions],
                }
            )
        )
    if not rows:
        raise SraVizError("no text has span mass to aggregate: give at least one text with a span")
    spans_all = pd.concat(rows, ignore_index=True)
    n_texts = len(rows)
    kinds = {}
    for axis in AXES:
        grouped = spans_all.groupby(axis)
        table = pd.DataFrame(
            {
                "mass": grouped["mass"].sum() / n_texts,
                "spans": grouped["weight"].sum() / n_texts,
                "n_spans": grouped.size(),
            }
        ).reindex(ORDER[axis], fill_value=0)
        table["n_spans"] = table["n_spans"].astype(int)
        kinds[axis] = table.rename_axis("kind").reset_index()
    by_text = spans_all.groupby("text").agg(mass=("mass", "sum"), count=("mass", "size"))
    by_text["mass"] /= n_texts
    top_texts = by_text.sort_values("mass", ascending=False, kind="stable").head(top).reset_index()
    return CorpusSaliency(kinds, top_texts, n_texts, len(spans_all), drop_sinks)


def corpus_saliency(
    texts: Sequence[str],
    pair,
    *,
    layer: int = -1,
    head: int | None = None,
    mass_mode: str = "last_token",
    drop_sinks: bool = True,
    top: int = TOP_TEXTS,
) -> CorpusSaliency:
    """Teacher mass by span kind over ``texts`` on ``pair``: the teacher's ``layer`` (its attention gives
    the mass; ``head`` one head or None = all), ``mass_mode`` as in `sra_viz.features.token_mass`.

    Example:
        >>> corpus_saliency(list(SAMPLES.values()), pair).kinds["script"]   # doctest: +SKIP
    """
    from .extraction import extract_corpus

    if isinstance(texts, str) or not len(texts):
        raise SraVizError("corpus_saliency needs a list of at least one text")
    corpus = extract_corpus(
        list(texts),
        pair,
        teacher_layers=(layer,),
        student_layers=(-1,),
        mass_mode=mass_mode,
        head=(head, None),
    )
    return aggregate_span_mass(corpus.frame, drop_sinks=drop_sinks, top=top)
