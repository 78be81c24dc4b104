"""Aligners compared on one text: what SRA, GOLD, ULD and MinED pair, judged against the byte truth.

Every aligner turns the two tokenizations of a text into **pairs**: some teacher tokens matched with
some student tokens (one token a side for ULD and MinED, runs of tokens for GOLD and SRA). Each token
has its exact UTF-8 byte range (`sra_viz.tokenization`), so a pair can be judged by the bytes its two
sides cover:

    wrong_bytes(p) = |(B_T(p) △ B_S(p)) ∩ C|        right(p) ⇔ wrong_bytes(p) = 0

``B_T(p)``, ``B_S(p)``: the bytes of the pair's teacher / student tokens; ``△`` the symmetric
difference (bytes one side covers and the other does not); ``C``: the bytes both tokenizations cover
(a byte that one tokenizer leaves out of every token can be paired by no aligner, so it is held
against none). Special tokens (BOS, EOS) have no bytes: no aligner pairs them here.

The aligners (`ALIGNERS`):

- ``sra``: SRA's spans (`sra_viz.alignment.align_spans`), one pair per span.
- ``gold``: TRL GOLD-style groups (`byte_end_groups`): walk both token lists, always extending the side
  whose group ends earlier, and close a group where both sides end at the same byte. TRL's GOLD
  compares the accumulated *decoded text* of the two groups; on tokens that spell the text exactly the
  two rules close the same groups. Computed independently of `align_spans`, from byte ends alone.
- ``uld``: ULD's position pairing (`uld_pairs`): the k-th text token of the teacher with the k-th text
  token of the student, k = 0 .. min(n_T, n_S) − 1, as ULD pairs positions from the response start;
  the longer side's tail stays unpaired.
- ``mined``: MinED's one-to-one pairs of the minimum-edit-distance DTW path over token texts
  (`sra_viz.mined.edit_distance_pairs`, the same pairs the MinED baseline distills).

    >>> from sra_viz.alignment import align_spans
    >>> comparison = compare_aligners(align_spans("Hi 東京", teacher_tok, student_tok))  # doctest: +SKIP
    >>> comparison.to_frame()[["aligner", "pairs", "wrong_pairs"]]                        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .alignment import SpanAlignment
from .errors import SraVizError
from .mined import edit_distance_pairs, token_texts
from .tokenization import TokenizedText

ALIGNERS = ("sra", "gold", "uld", "mined")
ALIGNER_TITLES = {
    "sra": "SRA spans",
    "gold": "GOLD groups",
    "uld": "ULD positions",
    "mined": "MinED edit distance",
}

Ranges = tuple[tuple[int, int], ...]  # merged, sorted, non-empty half-open byte ranges
Group = tuple[list[int], list[int]]  # (teacher token indices, student token indices)


@dataclass(frozen=True)
class TokenPair:
    """One pair of an aligner: token indices of each side (into ``TokenizedText.ids``), the bytes each
    side covers, and how many of those bytes only one side covers (``wrong_bytes``, see the module).

    Example:
        >>> TokenPair((1,), (0,), ((0, 2),), ((0, 2),), 0).right
        True
    """

    teacher: tuple[int, ...]
    student: tuple[int, ...]
    teacher_bytes: Ranges
    student_bytes: Ranges
    wrong_bytes: int

    @property
    def right(self) -> bool:
        """Both sides cover the same bytes (of those both tokenizations cover)."""
        return self.wrong_bytes == 0


@dataclass(frozen=True)
class AlignerCounts:
    """The byte truth's verdict on one aligner's pairs of one text.

    ``pairs``: how many; ``wrong_pairs``: those whose sides cover different bytes; ``wrong_bytes``:
    Σ_p wrong_bytes(p); ``unpaired_teacher`` / ``unpaired_student``: text tokens in no pair.
    """

    aligner: str
    pairs: int
    wrong_pairs: int
    wrong_bytes: int
    unpaired_teacher: int
    unpaired_student: int


@dataclass
class AlignerComparison:
    """Every aligner's pairs of one text, judged (``pairs[aligner]`` in text order of the teacher side)."""

    text: str
    teacher: TokenizedText
    student: TokenizedText
    pairs: dict[str, list[TokenPair]]

    def counts(self, aligner: str) -> AlignerCounts:
        """The counts of one aligner (`AlignerCounts`).

        Example:
            >>> compare_aligners(al).counts("sra").wrong_pairs   # doctest: +SKIP
            0
        """
        if aligner not in self.pairs:
            raise SraVizError(f"aligner {aligner!r} is not one of {', '.join(self.pairs)}")
        pairs = self.pairs[aligner]
        paired = {
            side: {i for p in pairs for i in getattr(p, side)} for side in ("teacher", "student")
        }  # side -> token indices in some pair
        return AlignerCounts(
            aligner=aligner,
            pairs=len(pairs),
            wrong_pairs=sum(not p.right for p in pairs),
            wrong_bytes=sum(p.wrong_bytes for p in pairs),
            unpaired_teacher=len(set(text_tokens(self.teacher)) - paired["teacher"]),
            unpaired_student=len(set(text_tokens(self.student)) - paired["student"]),
        )

    def to_frame(self):
        """One row per aligner: its title and its `AlignerCounts`.

        Example:
            >>> compare_aligners(al).to_frame().columns.tolist()[:3]   # doctest: +SKIP
            ['aligner', 'title', 'pairs']
        """
        import pandas as pd

        rows = [{"title": ALIGNER_TITLES.get(name, name), **vars(self.counts(name))} for name in self.pairs]
        columns = ["aligner", "title", *[f for f in AlignerCounts.__dataclass_fields__ if f != "aligner"]]
        return pd.DataFrame(rows, columns=columns)

    def pairs_frame(self):
        """One row per pair of every aligner: on each side its token indices, the byte ranges it covers
        and their text (those bytes decoded, U+FFFD for part of a character), ``right`` and
        ``wrong_bytes``.

        Example:
            >>> compare_aligners(al).pairs_frame().query("aligner == 'uld' and not right")   # doctest: +SKIP
        """
        import pandas as pd

        raw = self.text.encode("utf-8")
        rows = []
        for name, pairs in self.pairs.items():
            for k, pair in enumerate(pairs):
                row: dict = {"aligner": name, "pair": k}
                for side in ("teacher", "student"):
                    indices = getattr(pair, side)
                    row[f"{side}_tokens"] = list(indices)
                    ranges = getattr(pair, f"{side}_bytes")
                    covered = b"".join(raw[a:b] for a, b in ranges)
                    row[f"{side}_text"] = covered.decode("utf-8", errors="replace")
                    row[f"{side}_bytes"] = [list(r) for r in ranges]
                rows.append({**row, "right": pair.right, "wrong_bytes": pair.wrong_bytes})
        return pd.DataFrame(rows, columns=list(_PAIR_COLUMNS))


_PAIR_COLUMNS = (
    "aligner",
    "pair",
    "teacher_tokens",
    "teacher_text",
    "teacher_bytes",
    "student_tokens",
    "student_text",
    "student_bytes",
    "right",
    "wrong_bytes",
)


def text_tokens(tokenized: TokenizedText) -> list[int]:
    """Indices of the tokens that hold text (every token but the special ones the tokenizer inserted).

    Example:
        >>> text_tokens(TokenizedText("Hi", [2, 9], ["<bos>", "Hi"], [None, (0, 2)]))
        [1]
    """
    return [i for i, span in enumerate(tokenized.byte_spans) if span is not None]


def sra_groups(alignment: SpanAlignment) -> list[Group]:
    """SRA's spans as (teacher tokens, student tokens) groups, special tokens left out."""
    t_text, s_text = set(text_tokens(alignment.teacher)), set(text_tokens(alignment.student))
    return [
        (
            [i for i in range(sp.teacher_start, sp.teacher_end) if i in t_text],
            [i for i in range(sp.student_start, sp.student_end) if i in s_text],
        )
        for sp in alignment.spans
    ]


def byte_end_groups(teacher: TokenizedText, student: TokenizedText) -> list[Group]:
    """GOLD-style groups: extend the side whose group ends at the earlier byte (the teacher on a tie)
    until both groups end at the same byte, then close them.

    Tokens left when one side runs out form a last group (one of its sides may be empty), as GOLD's
    final flush does. Example:

        >>> t = TokenizedText("abc", [1, 2], ["ab", "c"], [(0, 2), (2, 3)])
        >>> s = TokenizedText("abc", [5, 6], ["a", "bc"], [(0, 1), (1, 3)])
        >>> byte_end_groups(t, s)
        [([0, 1], [0, 1])]
    """
    t_idx, s_idx = text_tokens(teacher), text_tokens(student)
    t_end_of = [teacher.byte_spans[i][1] for i in t_idx]  # type: ignore[index]
    s_end_of = [student.byte_spans[j][1] for j in s_idx]  # type: ignore[index]
    groups: list[Group] = []
    t_group: list[int] = []
    s_group: list[int] = []
    t_end = s_end = 0  # the byte where each side's group ends so far
    i = j = 0
    while i < len(t_idx) or j < len(s_idx):
        if t_group and s_group and t_end == s_end:
            groups.append((t_group, s_group))
            t_group, s_group = [], []
            continue
        take_teacher = i < len(t_idx) and (
            j >= len(s_idx) or t_end < s_end or (t_end == s_end and not t_group)
        )
        if take_teacher:
            t_group.append(t_idx[i])
            t_end = max(t_end, t_end_of[i])
            i += 1
        else:
            s_group.append(s_idx[j])
            s_end = max(s_end, s_end_of[j])
            j += 1
    if t_group or s_group:
        groups.append((t_group, s_group))
    return groups


def uld_pairs(teacher: TokenizedText, student: TokenizedText) -> list[Group]:
    """ULD's pairing: the k-th text token of each side together, for k below the shorter side's count.

    Example:
        >>> t = TokenizedText("abc", [1, 2, 3], ["<bos>", "ab", "c"], [None, (0, 2), (2, 3)])
        >>> s = TokenizedText("abc", [5, 6], ["a", "bc"], [(0, 1), (1, 3)])
        >>> uld_pairs(t, s)
        [([1], [0]), ([2], [1])]
    """
    return [([a], [b]) for a, b in zip(text_tokens(teacher), text_tokens(student), strict=False)]


def mined_pairs(teacher: TokenizedText, student: TokenizedText) -> list[Group]:
    """MinED's one-to-one edit-distance pairs (over all tokens, as the engine computes them), those
    with a special token left out."""
    t_special, s_special = teacher.special, student.special
    return [
        ([a], [b])
        for a, b in edit_distance_pairs(token_texts(teacher), token_texts(student))
        if not t_special[a] and not s_special[b]
    ]


def judge(teacher: TokenizedText, student: TokenizedText, groups: Sequence[Group]) -> list[TokenPair]:
    """Each group as a `TokenPair`, with the bytes of each side and its ``wrong_bytes`` (see the module).

    Example:
        >>> t = TokenizedText("abc", [1, 2], ["ab", "c"], [(0, 2), (2, 3)])
        >>> s = TokenizedText("abc", [5, 6], ["a", "bc"], [(0, 1), (1, 3)])
        >>> [p.wrong_bytes for p in judge(t, s, [([0], [0]), ([1], [1])])]
        [1, 1]
    """
    both = _intersect(_cover(teacher, text_tokens(teacher)), _cover(student, text_tokens(student)))  # C
    pairs = []
    for t_group, s_group in groups:
        t_bytes, s_bytes = _cover(teacher, t_group), _cover(student, s_group)
        t_in, s_in = _intersect(t_bytes, both), _intersect(s_bytes, both)
        wrong = _size(t_in) + _size(s_in) - 2 * _size(_intersect(t_in, s_in))
        pairs.append(TokenPair(tuple(t_group), tuple(s_group), t_bytes, s_bytes, wrong))
    return pairs


def compare_aligners(alignment: SpanAlignment) -> AlignerComparison:
    """Pairs of every aligner in `ALIGNERS` on the alignment's text and tokenizations, judged by bytes.

    SRA's pairs are the alignment's own spans (token or word level, whatever it was made with).

    Example:
        >>> c = compare_aligners(align_spans("Hi 🙂", teacher_tok, student_tok))   # doctest: +SKIP
        >>> c.counts("uld").wrong_pairs >= c.counts("sra").wrong_pairs == 0     # doctest: +SKIP
        True
    """
    teacher, student = alignment.teacher, alignment.student
    groups = {
        "sra": sra_groups(alignment),
        "gold": byte_end_groups(teacher, student),
        "uld": uld_pairs(teacher, student),
        "mined": mined_pairs(teacher, student),
    }
    pairs = {name: judge(teacher, student, groups[name]) for name in ALIGNERS}
    return AlignerComparison(alignment.text, teacher, student, pairs)


# ----------------------------------------------------------------------------- byte ranges


def _cover(tokenized: TokenizedText, indices: Sequence[int]) -> Ranges:
    """The bytes of some tokens as merged non-empty ranges (special tokens cover none)."""
    spans = sorted(
        span for i in indices if (span := tokenized.byte_spans[i]) is not None and span[1] > span[0]
    )
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _intersect(a: Ranges, b: Ranges) -> Ranges:
    """The bytes in both ``a`` and ``b`` (two pointers over the sorted ranges)."""
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _size(ranges: Ranges) -> int:
    return sum(end - start for start, end in ranges)
