"""Span alignment: the finest partition of a text into byte ranges both tokenizers agree on.

Each side is tokenized once with exact byte ranges (`sra_viz.tokenization`). A byte position is a
boundary of one side when no token of that side straddles it; spans cut the text at positions that
are boundaries on both sides, as often as possible, while every span keeps at least one token of
each side. When both tokenizations cover every byte this is SRA's two-pointer merge of token end
offsets (linear time). Bytes a tokenizer drops (WordPiece drops whitespace, SmolLM2 a few control
bytes) may be cut anywhere on that side; each cut is placed as early as both sides allow, so such
bytes join the span that *follows* them, like a leading space. Bytes before the first token join
the first span, bytes after the last token the last span: the spans always re-join into the text.

    from sra_viz.alignment import align_spans
    al = align_spans("Hello 東京!", teacher_tokenizer, student_tokenizer)
    al.to_frame()
"""

from __future__ import annotations

import gc
import itertools
import json
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np

from sra_viz.errors import SraVizError
from sra_viz.tokenization import ByteEncoding, TextBytes, TokenizedText, encode_bytes, tokenizer_id

GRANULARITIES = ("token", "word")
SIDES = ("teacher", "student")


@dataclass
class Span:
    """One aligned span: a byte/char range of the text and the token ranges covering it on each side.

    Token ranges are half-open and index ``TokenizedText.ids`` (special tokens included). When both
    sides split one character at the same byte, the character's text goes to the span holding its
    first byte (the other span's ``text`` is shorter than its bytes, possibly empty).

    Example:
        >>> Span(0, 5, 0, 5, "Hello", 1, 2, 0, 1).teacher_end
        2
    """

    byte_start: int
    byte_end: int
    char_start: int
    char_end: int
    text: str
    teacher_start: int
    teacher_end: int
    student_start: int
    student_end: int


@dataclass
class SpanAlignment:
    """The spans of one text for a teacher/student tokenizer pair, with both tokenizations.

    ``granularity`` and ``prompt_end`` record how the spans were made (see `align_spans`), and
    ``tokenizers`` which tokenizers made them (`tokenizer_id` of the teacher's and the student's; None
    when unknown), so features are never taken with another pair's models. The `Span` objects are built
    on first access to ``spans``; counts and maps work without them.

    Example:
        >>> al = align_spans("Hi there", teacher_tok, student_tok)   # doctest: +SKIP
        >>> len(al), al.token_to_span("student").tolist()            # doctest: +SKIP
        (2, [0, 1])
    """

    text: str
    teacher: TokenizedText
    student: TokenizedText
    spans: list[Span]
    granularity: str = "token"
    prompt_end: int | None = None
    tokenizers: tuple[str, str] | None = field(default=None, compare=False)  # (teacher id, student id)
    # Set on the class below, so not dataclass fields at runtime. When `_plan` is None, `_spans` is a list.
    if TYPE_CHECKING:
        _spans: list[Span] | None = field(default=None, init=False, repr=False, compare=False)
        _plan: _Plan | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return self._plan.n_kept if self._plan is not None else len(cast("list[Span]", self._spans))

    def token_to_span(self, side: str) -> np.ndarray:
        """Span index of every token of ``side``: ``(len(ids),)`` int64, -1 for special/unaligned tokens.

        Example:
            >>> align_spans("Hi", gemma_tok, smol_tok).token_to_span("teacher").tolist()   # doctest: +SKIP
            [-1, 0]
        """
        _check_side(side)
        if self._plan is not None:
            return self._plan.token_to_span(side)
        tok, firsts, ends = self._ranges(side)
        out = np.full(len(tok.ids), -1, dtype=np.int64)  # (T,)
        sizes = ends - firsts  # (N,)
        if sizes.sum():
            offsets = np.repeat(firsts - np.concatenate(([0], np.cumsum(sizes)[:-1])), sizes)
            out[offsets + np.arange(sizes.sum())] = np.repeat(np.arange(len(sizes)), sizes)
        out[[i for i, span in enumerate(tok.byte_spans) if span is None]] = -1
        return out

    def to_frame(self):
        """One row per span: ranges, text, token counts and the token strings of each side.

        Example:
            >>> align_spans("Hi", t, s).to_frame().columns[:4].tolist()   # doctest: +SKIP
            ['byte_start', 'byte_end', 'char_start', 'char_end']
        """
        import pandas as pd

        rows = [vars(span).copy() for span in self.spans]
        for row in rows:
            row["n_teacher_tokens"] = row["teacher_end"] - row["teacher_start"]
            row["n_student_tokens"] = row["student_end"] - row["student_start"]
            row["teacher_tokens"] = self.teacher.tokens[row["teacher_start"] : row["teacher_end"]]
            row["student_tokens"] = self.student.tokens[row["student_start"] : row["student_end"]]
        extra = ["n_teacher_tokens", "n_student_tokens", "teacher_tokens", "student_tokens"]
        return pd.DataFrame(rows, columns=[*Span.__dataclass_fields__, *extra])

    def stats(self) -> dict:
        """Tokens per side, spans, mean tokens per span, one-to-one share, fertility (tokens per word).

        Words are the whitespace-separated words of the aligned text (after the prompt, if any).

        Example:
            >>> align_spans("Hello world", t, s).stats()["spans"]   # doctest: +SKIP
            2
        """
        sizes = {}  # side -> (N,) tokens per span
        for side in SIDES:
            _, firsts, ends = self._ranges(side)
            sizes[side] = ends - firsts
        n = len(sizes["teacher"])
        counts = {side: int(sizes[side].sum()) for side in SIDES}
        start, end = (self._char_bounds(0), self._char_bounds(-1)) if n else (0, 0)
        words = len(self.text[start:end].split())
        nan = float("nan")
        return {
            "spans": n,
            "teacher_tokens": counts["teacher"],
            "student_tokens": counts["student"],
            "teacher_tokens_per_span": counts["teacher"] / n if n else nan,
            "student_tokens_per_span": counts["student"] / n if n else nan,
            "one_to_one_share": float(np.mean((sizes["teacher"] == 1) & (sizes["student"] == 1)))
            if n
            else nan,
            "words": words,
            "teacher_fertility": counts["teacher"] / words if words else nan,
            "student_fertility": counts["student"] / words if words else nan,
        }

    def to_json(self) -> str:
        """A JSON string that `SpanAlignment.from_json` turns back into an equal alignment."""
        sides = {
            side: {"ids": tok.ids, "tokens": tok.tokens, "byte_spans": tok.byte_spans}
            for side, tok in zip(SIDES, (self.teacher, self.student), strict=True)
        }
        spans = [
            [s.byte_start, s.byte_end, s.char_start, s.char_end]
            + [s.teacher_start, s.teacher_end, s.student_start, s.student_end]
            for s in self.spans
        ]
        head = {"format": "sra_viz.SpanAlignment", "version": 1, "text": self.text}
        how = {"granularity": self.granularity, "prompt_end": self.prompt_end, "tokenizers": self.tokenizers}
        return json.dumps({**head, **how, **sides, "spans": spans}, ensure_ascii=False)

    @classmethod
    def from_json(cls, payload: str) -> SpanAlignment:
        """Rebuild an alignment written by `to_json`.

        Example:
            >>> SpanAlignment.from_json(al.to_json()) == al   # doctest: +SKIP
            True
        """
        try:
            data = json.loads(payload)
            text = data["text"]
            teacher, student = (
                TokenizedText(
                    text,
                    list(data[side]["ids"]),
                    list(data[side]["tokens"]),
                    [tuple(span) if span is not None else None for span in data[side]["byte_spans"]],
                )
                for side in SIDES
            )
            spans = [Span(b0, b1, c0, c1, text[c0:c1], *ranges) for b0, b1, c0, c1, *ranges in data["spans"]]
            made_by = data.get("tokenizers")
            tokenizers = (str(made_by[0]), str(made_by[1])) if made_by is not None else None
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise SraVizError(f"not a SpanAlignment JSON written by to_json(): {err!r}") from None
        how = (data.get("granularity", "token"), data.get("prompt_end"), tokenizers)
        return cls(text, teacher, student, spans, *how)

    def _ranges(self, side: str) -> tuple[TokenizedText, np.ndarray, np.ndarray]:
        """``(tokenized, firsts, ends)``: the side's half-open ``ids`` range of every kept span."""
        _check_side(side)
        if self._plan is not None:
            return getattr(self, side), *self._plan.ranges(side)
        spans = cast("list[Span]", self._spans)
        firsts = np.array([getattr(s, f"{side}_start") for s in spans], dtype=np.int64)  # (N,)
        ends = np.array([getattr(s, f"{side}_end") for s in spans], dtype=np.int64)
        return getattr(self, side), firsts, ends

    def _char_bounds(self, k: int) -> int:
        if self._plan is None:
            spans = cast("list[Span]", self._spans)
            return spans[k].char_start if k == 0 else spans[k].char_end
        return self._plan.chars([self._plan.bounds[self._plan.keep_from if k == 0 else -1]])[0]


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise SraVizError(f"side must be 'teacher' or 'student', got {side!r}")


def _get_spans(self: SpanAlignment) -> list[Span]:
    if self._spans is None:
        self._spans = cast("_Plan", self._plan).materialize()
    return self._spans


def _set_spans(self: SpanAlignment, spans: list[Span]) -> None:
    self._spans, self._plan = list(spans), None


# `spans` stays a dataclass field (init, eq, repr, asdict) but is built lazily from the plan that
# `align_spans` leaves; assigning spans drops the plan (edit spans by assignment, not in place).
SpanAlignment._spans = None
SpanAlignment._plan = None
# setattr: mypy sees `spans` as the dataclass field it also is, and would reject a property here.
_spans_property = property(_get_spans, _set_spans, doc="The aligned spans, in text order.")
setattr(SpanAlignment, "spans", _spans_property)  # noqa: B010


class _Plan:
    """Everything the spans are made of, kept as plain lists until someone asks for `Span` objects.

    - ``source``: the text and its bytes
    - ``bounds``: ``(N + 1,)`` byte boundaries, 0 .. len(bytes)
    - ``closes``: per side (teacher, student) ``(N,)`` number of the side's real tokens up to each span's end
    - ``sides``: the two `ByteEncoding` (teacher, student)
    - ``keep_from``: spans before this index lie (partly) in the prompt
    """

    __slots__ = ("source", "bounds", "closes", "sides", "keep_from", "_arrays")

    def __init__(
        self,
        source: TextBytes,
        bounds: list[int],
        closes: tuple[list[int], list[int]],
        sides: tuple[ByteEncoding, ByteEncoding],
        keep_from: int,
    ):
        self.source, self.bounds, self.closes, self.sides, self.keep_from = (
            source,
            bounds,
            closes,
            sides,
            keep_from,
        )
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # side -> arrays, built once

    @property
    def n_kept(self) -> int:
        return len(self.bounds) - 1 - self.keep_from

    def side(self, side: str) -> ByteEncoding:
        return self.sides[SIDES.index(side)]

    def arrays(self, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(real, opens, closes)``: real token positions ``(R,)``; real tokens before/through each span
        ``(N,)``."""
        if side not in self._arrays:
            closes = np.asarray(self.closes[SIDES.index(side)], dtype=np.int64)  # (N,) over all spans
            opens = np.concatenate(([0], closes[:-1])).astype(np.int64)
            self._arrays[side] = np.asarray(self.side(side).real, dtype=np.int64), opens, closes
        return self._arrays[side]

    def token_to_span(self, side: str) -> np.ndarray:
        real, opens, closes = self.arrays(side)
        out = np.full(len(self.side(side).tokenized.ids), -1, dtype=np.int64)  # (T,)
        owner = np.repeat(np.arange(len(closes)) - self.keep_from, closes - opens)  # (R,) span per real token
        out[real[: len(owner)]] = np.where(owner >= 0, owner, -1)  # prompt spans: none
        return out

    def ranges(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        real_arr, opens, closes = self.arrays(side)
        real = self.side(side).real
        opens, closes = opens[self.keep_from :], closes[self.keep_from :]  # (N,)
        if not len(real):
            zero = np.zeros(len(closes), dtype=np.int64)
            return zero, zero
        firsts = real_arr[np.minimum(opens, len(real) - 1)]
        firsts[opens >= len(real)] = real[-1] + 1  # an empty tail range sits after the last real token
        ends = np.where(closes > opens, real_arr[np.maximum(closes - 1, 0)] + 1, firsts)
        return firsts, ends

    def chars(self, bytes_at: list[int]) -> list[int]:
        """Characters that start before each byte position (a split character goes to its first byte's
        span)."""
        if self.source.ascii:
            return bytes_at
        return np.searchsorted(self.source.char_to_byte, bytes_at, "left").tolist()

    def materialize(self) -> list[Span]:
        collecting = gc.isenabled()
        gc.disable()  # hundreds of thousands of acyclic objects: spare the collector's full passes
        try:
            return self._materialize()
        finally:
            if collecting:
                gc.enable()

    def _materialize(self) -> list[Span]:
        bounds, k0, text = self.bounds, self.keep_from, self.source.text
        chars = self.chars(bounds)
        (t_firsts, t_ends), (s_firsts, s_ends) = (self.ranges(side) for side in SIDES)
        columns = zip(
            bounds[k0:-1],
            bounds[k0 + 1 :],
            chars[k0:-1],
            chars[k0 + 1 :],
            t_firsts.tolist(),
            t_ends.tolist(),
            s_firsts.tolist(),
            s_ends.tolist(),
            strict=True,
        )
        return [
            Span(b0, b1, c0, c1, text[c0:c1], tf, te, sf, se) for b0, b1, c0, c1, tf, te, sf, se in columns
        ]


def align_spans(
    text: str,
    teacher_tokenizer,
    student_tokenizer,
    *,
    granularity: str = "token",
    prompt_end: int | None = None,
    add_special_tokens: bool = True,
) -> SpanAlignment:
    """Tokenize ``text`` once per side and cut it into the finest spans both tokenizations share.

    ``granularity="word"`` keeps only the span boundaries that touch whitespace or change character
    class (letters/digits vs. other symbols), never one inside a character or before a combining mark
    or joiner. ``prompt_end`` (a character index) is prompt/response mode: the whole text is aligned,
    then only the spans entirely after the prompt are kept (``byte_start >= len(text[:prompt_end]
    .encode())``), renumbered from 0; the prompt's tokens and those of a span straddling the prompt's
    end belong to no span (-1).

    Example:
        >>> [s.text for s in align_spans("Hello 東京", teacher_tok, student_tok).spans]   # doctest: +SKIP
        ['Hello', ' 東京']
    """
    if granularity not in GRANULARITIES:
        raise SraVizError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if not isinstance(text, str):
        raise SraVizError(f"text must be a str, got {type(text).__name__}")
    if prompt_end is not None and not (isinstance(prompt_end, int) and 0 <= prompt_end <= len(text)):
        raise SraVizError(f"prompt_end must be a character index in [0, {len(text)}], got {prompt_end!r}")
    source = TextBytes(text)
    teacher = encode_bytes(source, teacher_tokenizer, add_special_tokens)
    student = encode_bytes(source, student_tokenizer, add_special_tokens)
    bounds, t_closes, s_closes = merge_boundaries(teacher, student, len(source.data))
    if granularity == "word" and len(bounds) > 2:
        kept = _word_edges(source, bounds)  # indices into bounds[1:]
        bounds = [0, *(bounds[k + 1] for k in kept)]
        t_closes, s_closes = [t_closes[k] for k in kept], [s_closes[k] for k in kept]
    keep_from = 0
    if prompt_end is not None:
        prompt_bytes = len(text[:prompt_end].encode("utf-8"))
        keep_from = int(np.searchsorted(np.asarray(bounds[:-1]), prompt_bytes, "left"))
    plan = _Plan(source, bounds, (t_closes, s_closes), (teacher, student), keep_from)
    alignment = SpanAlignment.__new__(SpanAlignment)
    alignment.text, alignment.teacher, alignment.student = text, teacher.tokenized, student.tokenized
    alignment.granularity, alignment.prompt_end, alignment._plan = granularity, prompt_end, plan
    alignment.tokenizers = (tokenizer_id(teacher_tokenizer), tokenizer_id(student_tokenizer))
    return alignment


def merge_boundaries(
    a: ByteEncoding, b: ByteEncoding, n_bytes: int
) -> tuple[list[int], list[int], list[int]]:
    """Span byte boundaries ``(N + 1,)`` and, per side, how many real tokens end by each span's end.

    Example:
        >>> bounds, a_closes, b_closes = merge_boundaries(enc_a, enc_b, 6)   # doctest: +SKIP
        >>> bounds, a_closes, b_closes                                       # doctest: +SKIP
        ([0, 3, 6], [1, 2], [2, 3])
    """
    a_ends, b_ends = a.ends, b.ends
    if a.tiles and b.tiles:  # the common case: both sides' tokens spell the text end to end
        if a_ends == b_ends:  # the same cuts (one C comparison; an empty text too): every token is a span
            closes = list(range(1, len(a_ends) + 1))
            return [0, *a_ends], closes, closes.copy()
        if len(a_ends) + len(b_ends) <= _SMALL:
            return common_ends(a_ends, b_ends)
    if n_bytes == 0:
        return [0], [], []
    if len(a_ends) + len(b_ends) <= _SMALL:
        merged = _merge_small(a, b, n_bytes)
        if merged is not None:
            return merged
    arrays = [np.asarray(x, dtype=np.int64) for x in (a.starts, a.ends, b.starts, b.ends)]
    if _covers_array(arrays[0], arrays[1], n_bytes) and _covers_array(arrays[2], arrays[3], n_bytes):
        # Every byte covered on both sides: the boundaries are the token ends common to both.
        ends_a, ends_b = arrays[1], arrays[3]
        at = np.searchsorted(ends_b, ends_a)  # (A,)
        common = ends_b[np.minimum(at, len(ends_b) - 1)] == ends_a
        bounds = np.concatenate(([0], ends_a[common]))
        return bounds.tolist(), (np.flatnonzero(common) + 1).tolist(), (at[common] + 1).tolist()
    bounds = common_boundaries(arrays[0], arrays[1], arrays[2], arrays[3], n_bytes)
    return bounds.tolist(), _closes(a, bounds), _closes(b, bounds)


_SMALL = 2048  # below this many tokens plain Python (or its compiled twin) beats numpy's per-call cost


def _merge_small(
    a: ByteEncoding, b: ByteEncoding, n_bytes: int
) -> tuple[list[int], list[int], list[int]] | None:
    """The common-end merge in plain Python, for short texts whose tokens cover every byte."""
    for side in (a, b):  # tiles: no zero-width token either
        if not side.tiles and not (_covers(side, n_bytes) and len(set(side.ends)) == len(side.ends)):
            return None
    a_ends, b_ends = a.ends, b.ends
    if a_ends == b_ends:  # the same cuts (one C comparison): every token is a span
        return [0, *a_ends], list(range(1, len(a_ends) + 1)), list(range(1, len(b_ends) + 1))
    return common_ends(a_ends, b_ends)


def _merge_tilings(a_ends: list[int], b_ends: list[int]) -> tuple[list[int], list[int], list[int]]:
    """The common ends of two increasing lists, with how many ends of each list reach each of them.

    A real token's position (1-based) is how many of the side's tokens end by its end. Only C loops
    (``map``, ``compress``, ``filter``), no Python step per token. When every end of the list with fewer
    ends is also one of the other's (its tokens are unions of the other's: Gemma's of SmolLM2's in 105 of
    186 differing bench texts, GPT-2's or SmolLM2's in 130 of 217), its ends are the boundaries as they are.

    Example:
        >>> _merge_tilings([1, 3, 6], [3, 4, 6])
        ([0, 3, 6], [2, 3], [1, 3])
        >>> _merge_tilings([3, 6], [1, 3, 4, 6])
        ([0, 3, 6], [1, 2], [2, 4])
        >>> _merge_tilings([1, 3, 4, 6], [3, 6])
        ([0, 3, 6], [2, 4], [1, 2])
    """
    if len(a_ends) > len(b_ends):  # the side with fewer tokens is looked up in the other's table
        bounds, b_closes, a_closes = _merge_tilings(b_ends, a_ends)
        return bounds, a_closes, b_closes
    through_b = dict(zip(b_ends, itertools.count(1)))  # b's end -> b's tokens up to it
    b_at = list(map(through_b.get, a_ends))  # (A,) b's tokens up to a's end where b ends there too, else None
    if all(b_at):  # every end of a is one of b's (a is coarser): each token of a is a span
        return [0, *a_ends], list(range(1, len(a_ends) + 1)), cast("list[int]", b_at)
    # compress keeps the truthy entries of b_at (counts >= 1), filter(None) keeps exactly those
    return (
        [0, *itertools.compress(a_ends, b_at)],
        list(itertools.compress(itertools.count(1), b_at)),
        list(filter(None, b_at)),
    )


try:  # `_merge_tilings` in C (sra_viz/_span_ends.c): a two-pointer merge with the same result
    from sra_viz._span_ends import common_ends
except ImportError:  # the package was built without a compiler
    common_ends = _merge_tilings


def _covers(side: ByteEncoding, n_bytes: int) -> bool:
    starts, ends = side.starts, side.ends
    return bool(ends) and starts[0] == 0 and ends[-1] == n_bytes and starts[1:] == ends[:-1]


def _covers_array(starts: np.ndarray, ends: np.ndarray, n_bytes: int) -> bool:
    """Tokens tile ``[0, n_bytes)`` exactly, none of them zero-width."""
    return bool(
        len(ends)
        and starts[0] == 0
        and ends[-1] == n_bytes
        and (starts[1:] == ends[:-1]).all()
        and (ends > starts).all()
    )


def _closes(side: ByteEncoding, bounds: np.ndarray) -> list[int]:
    """Per span, how many of the side's real tokens start before its end (a token sits where it starts)."""
    n_spans = len(bounds) - 1
    span_of = np.clip(
        np.searchsorted(bounds, np.asarray(side.starts, dtype=np.int64), "right") - 1, 0, n_spans - 1
    )
    return np.searchsorted(span_of, np.arange(n_spans), "right").tolist()


def common_boundaries(
    a_starts: np.ndarray, a_ends: np.ndarray, b_starts: np.ndarray, b_ends: np.ndarray, n_bytes: int
) -> np.ndarray:
    """Boundaries ``(N + 1,)`` from 0 to ``n_bytes`` for two monotone lists of token byte ranges, gaps
    allowed.

    Example:
        >>> a = np.array([0, 4]), np.array([3, 6]); b = np.array([0, 1, 3]), np.array([1, 3, 6])
        >>> common_boundaries(*a, *b, 6).tolist()
        [0, 3, 6]
    """
    if n_bytes == 0:
        return np.zeros(1, dtype=np.int64)
    a_wide, b_wide = a_ends > a_starts, b_ends > b_starts  # zero-width tokens never bound a span
    a_starts, a_ends, b_starts, b_ends = a_starts[a_wide], a_ends[a_wide], b_starts[b_wide], b_ends[b_wide]
    if len(a_ends) == 0 or len(b_ends) == 0:
        return np.array([0, n_bytes], dtype=np.int64)
    # Side X may be cut anywhere in its gap g = [end of token g-1, start of token g].
    a_lo, a_hi = np.concatenate(([0], a_ends)), np.concatenate((a_starts, [n_bytes]))  # (A+1,)
    b_lo, b_hi = np.concatenate(([0], b_ends)), np.concatenate((b_starts, [n_bytes]))  # (B+1,)
    k_first = np.searchsorted(b_hi, a_lo, "left")
    k_count = np.maximum(np.searchsorted(b_lo, a_hi, "right") - k_first, 0)
    gap_a = np.repeat(np.arange(len(a_lo)), k_count)  # (P,) every pair of intersecting gaps, in text order
    gap_b = np.repeat(k_first - np.cumsum(k_count) + k_count, k_count) + np.arange(k_count.sum())
    cut_at = np.maximum(a_lo[gap_a], b_lo[gap_b])  # earliest cut: dropped bytes join the next span
    bounds = cut_at[_chain(gap_a, gap_b)]
    bounds[0], bounds[-1] = 0, n_bytes
    return bounds


def _chain(gap_a: np.ndarray, gap_b: np.ndarray) -> np.ndarray:
    """Greedy longest chain of gap pairs, both indices strictly increasing, from (0, 0) to the last pair.

    A pair whose indices both exceed its predecessor's is always taken; runs of pairs sharing an
    index (a whole token of one side inside the other side's gap) are walked in Python.
    """
    taken = np.ones(len(gap_a), dtype=bool)  # (P,)
    linked = np.zeros(len(gap_a), dtype=bool)
    linked[1:] = (gap_a[1:] == gap_a[:-1]) | (gap_b[1:] == gap_b[:-1])
    if linked.any():
        a, b = gap_a.tolist(), gap_b.tolist()
        last = 0
        for i in np.flatnonzero(linked).tolist():
            if not linked[i - 1]:
                last = i - 1
            if a[i] > a[last] and b[i] > b[last]:
                last = i
            else:
                taken[i] = False
        if not taken[-1]:  # the last cut would leave the final span without a token on one side
            taken[np.flatnonzero(taken)[-1]] = False
            taken[-1] = True
    return taken


def _word_edges(source: TextBytes, bounds: list[int]) -> list[int]:
    """Indices k of the boundaries ``bounds[k + 1]`` kept at word level (the last one always)."""
    inner = bounds[1:-1]
    if source.ascii:
        chars, on_char = inner, [True] * len(inner)
    else:
        at = np.searchsorted(source.char_to_byte, inner, "left")
        chars, on_char = at.tolist(), (source.char_to_byte[at] == inner).tolist()
    text = source.text
    kept = [k for k, (c, ok) in enumerate(zip(chars, on_char, strict=True)) if ok and _word_edge(text, c)]
    return [*kept, len(bounds) - 2]


def _word_edge(text: str, c: int) -> bool:
    after = _char_class(text[c])
    if after == "join" or text[c - 1] == "\u200d":
        return False
    k = c - 1
    before = _char_class(text[k])
    while before == "join" and k > 0:  # a combining mark belongs to its base character
        k -= 1
        before = _char_class(text[k])
    return before == "space" or after == "space" or before != after


def _char_class(ch: str) -> str:
    if ch.isspace():
        return "space"
    if ch.isalnum() or ch == "_":
        return "word"
    code = ord(ch)
    if code == 0x200D or 0xFE00 <= code <= 0xFE0F or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:
        return "join"
    return "join" if unicodedata.category(ch).startswith("M") else "other"
