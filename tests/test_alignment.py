"""Span alignment on every pair of the four real tokenizers: the properties SRA's spans must hold.

(1) spans re-join into the text; (2) every real token lies in exactly one span; (3) both sides of a
span cover the same bytes (bytes a side drops aside); (4) no span can be cut again; (5) empty and
whitespace-only text align without error. Plus the exact partition against an independent truth,
word level, prompt/response mode, the table/JSON/stats views, and the merge on synthetic tokens.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sra_viz.alignment import Span, SpanAlignment, align_spans, common_boundaries
from sra_viz.errors import SraVizError
from tests._truth import token_pieces
from tests.test_tokenization import TEXTS

NAMES = ["teacher_tokenizer", "student_tokenizer", "gpt2_tokenizer", "wordpiece_tokenizer"]
PAIRS = list(itertools.combinations(NAMES, 2))


def real_tokens(tokenized) -> list[tuple[int, int, int]]:
    """(index in ids, byte start, byte end) of every non-special token."""
    return [(i, *span) for i, span in enumerate(tokenized.byte_spans) if span is not None]


def check_alignment(al: SpanAlignment, text: str, finest: bool = True) -> None:
    data = text.encode()
    spans = al.spans
    assert len(al) == len(spans)
    # (1) the spans tile the bytes and re-join into the text (characters too).
    assert [s.byte_start for s in spans] == [0, *(s.byte_end for s in spans)][: len(spans)]
    assert (spans[-1].byte_end if spans else 0) == len(data)
    assert "".join(s.text for s in spans) == text
    for s in spans:
        assert s.text == text[s.char_start : s.char_end]
        # char_start counts the characters whose first byte comes before byte_start
        assert len(text[: s.char_start].encode()) >= s.byte_start
        assert s.char_start == 0 or len(text[: s.char_start - 1].encode()) < s.byte_start
    for side in ("teacher", "student"):
        tokenized = getattr(al, side)
        tokens = real_tokens(tokenized)
        owner = al.token_to_span(side)
        # (2) every real token in exactly one span; specials in none.
        for i, start, end in tokens:
            k = owner[i]
            assert k >= 0 and spans[k].byte_start <= start <= end <= spans[k].byte_end
            assert getattr(spans[k], f"{side}_start") <= i < getattr(spans[k], f"{side}_end")
        assert all(owner[i] == -1 for i, s in enumerate(tokenized.byte_spans) if s is None)
        ranges = [range(getattr(s, f"{side}_start"), getattr(s, f"{side}_end")) for s in spans]
        assert sorted(itertools.chain.from_iterable(ranges)) == [i for i, _, _ in tokens]
        # (3) every byte a side covers in a span is covered by a token of that span.
        byte_span = np.repeat(np.arange(len(spans)), [s.byte_end - s.byte_start for s in spans])  # (bytes,)
        byte_owner = np.full(len(data), -1)
        for i, start, end in tokens:
            byte_owner[start:end] = owner[i]
        assert ((byte_owner == -1) | (byte_owner == byte_span)).all()
        if tokens:  # a side with tokens has at least one in every span
            assert all(len(r) > 0 for r in ranges)
    # (4) finest: no inner byte position can cut a span into two that still hold (2) and (3).
    for s in spans if finest else ():
        for p in range(s.byte_start + 1, s.byte_end):
            assert not all(_cuttable(getattr(al, side), s, side, p) for side in ("teacher", "student")), (
                s,
                p,
            )


def _cuttable(tokenized, span: Span, side: str, p: int) -> bool:
    """No token of the span straddles p and wide tokens lie on both sides of it."""
    inside = [
        tokenized.byte_spans[i] for i in range(getattr(span, f"{side}_start"), getattr(span, f"{side}_end"))
    ]
    inside = [(a, b) for a, b in inside if b > a]
    return (
        not any(a < p < b for a, b in inside)
        and any(b <= p for a, b in inside)
        and any(a >= p for a, b in inside)
    )


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: "-".join(n.split("_")[0] for n in p))
@pytest.mark.parametrize("text", TEXTS)
def test_span_properties_on_fixtures(pair, text, request):
    teacher, student = (request.getfixturevalue(name) for name in pair)
    check_alignment(align_spans(text, teacher, student), text)


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: "-".join(n.split("_")[0] for n in p))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60))
def test_span_properties_on_random_unicode(pair, text, request):
    teacher, student = (request.getfixturevalue(name) for name in pair)
    check_alignment(align_spans(text, teacher, student), text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60), cut=st.floats(0, 1))
def test_word_level_and_prompt_mode_on_random_unicode(text, cut, teacher_tokenizer, student_tokenizer):
    tokens = align_spans(text, teacher_tokenizer, student_tokenizer)
    words = align_spans(text, teacher_tokenizer, student_tokenizer, granularity="word")
    check_alignment(words, text, finest=False)
    assert {s.byte_end for s in words.spans} <= {s.byte_end for s in tokens.spans}
    prompt_end = int(cut * len(text))
    response = align_spans(text, teacher_tokenizer, student_tokenizer, prompt_end=prompt_end)
    assert response.spans == [s for s in tokens.spans if s.byte_start >= len(text[:prompt_end].encode())]


def test_long_text_takes_the_array_path(teacher_tokenizer, student_tokenizer, wordpiece_tokenizer):
    text = "".join(TEXTS) * 12  # thousands of tokens per side
    for other in (student_tokenizer, wordpiece_tokenizer):
        al = align_spans(text, teacher_tokenizer, other)
        assert len(al.teacher.ids) > 2048
        check_alignment(al, text)


@pytest.mark.parametrize("text", [t for t in TEXTS if t.strip()])
def test_exact_partition_matches_independent_truth(
    text, teacher_tokenizer, student_tokenizer, gpt2_tokenizer
):
    """For tokenizers whose token bytes spell the text, the spans are the ideal common partition."""
    for teacher, student in [(teacher_tokenizer, student_tokenizer), (gpt2_tokenizer, student_tokenizer)]:
        al = align_spans(text, teacher, student)
        ends = {}
        for side, tok in (("teacher", teacher), ("student", student)):
            ids = [i for i, _, _ in real_tokens(getattr(al, side))]
            pieces = token_pieces(tok, getattr(al, side).tokens[ids[0] : ids[-1] + 1], text)
            ends[side] = list(itertools.accumulate(map(len, pieces)))
        common = sorted(set(ends["teacher"]) & set(ends["student"]))
        assert [s.byte_end for s in al.spans] == common


@pytest.mark.parametrize("text", ["", " ", "   \n\t  ", "\u3000\u00a0", "\n"])
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: "-".join(n.split("_")[0] for n in p))
def test_empty_and_whitespace_only_text(pair, text, request):
    teacher, student = (request.getfixturevalue(name) for name in pair)
    al = align_spans(text, teacher, student)
    check_alignment(al, text)
    assert (len(al) == 0) == (text == "")
    assert al.stats()["spans"] == len(al)


def test_known_spans_gemma_smollm2(teacher_tokenizer, student_tokenizer):
    al = align_spans("Hello 東京!", teacher_tokenizer, student_tokenizer)
    assert [s.text for s in al.spans] == ["Hello", " 東京", "!"]
    east = al.spans[1]
    student_cuts = [al.student.byte_spans[i][1] for i in range(east.student_start, east.student_end - 1)]
    assert any(cut not in (6, 9) for cut in student_cuts)  # SmolLM2 cuts inside 東 or 京, not only between
    assert (east.byte_start, east.byte_end, east.char_start, east.char_end) == (5, 12, 5, 8)


def test_dropped_whitespace_joins_the_following_span(wordpiece_tokenizer, student_tokenizer):
    al = align_spans("Hello  world", wordpiece_tokenizer, student_tokenizer)
    assert [s.text for s in al.spans] == ["Hello", "  world"]
    al = align_spans("a \n", wordpiece_tokenizer, student_tokenizer)  # trailing: joins the last span
    assert [s.text for s in al.spans] == ["a \n"]


def test_word_granularity(teacher_tokenizer, student_tokenizer):
    text = "Tokenization, naïvely: 東京 2024-06-01 👨‍👩‍👧 ok"
    tokens = align_spans(text, teacher_tokenizer, student_tokenizer)
    words = align_spans(text, teacher_tokenizer, student_tokenizer, granularity="word")
    check_words = [s.text for s in words.spans]
    assert "".join(check_words) == text and words.granularity == "word"
    assert {s.byte_end for s in words.spans} <= {s.byte_end for s in tokens.spans}
    assert len(words) < len(tokens)
    assert "Tokenization" in check_words and " 👨‍👩‍👧" in check_words  # one word, one emoji family
    for left, right in itertools.pairwise(words.spans):  # each kept cut touches whitespace or changes class
        a, b = left.text[-1], right.text[0]
        assert a.isspace() or b.isspace() or a.isalnum() != b.isalnum()
    for side in ("teacher", "student"):
        assert (words.token_to_span(side) >= 0).sum() == (tokens.token_to_span(side) >= 0).sum()


def test_prompt_end_keeps_spans_after_the_prompt(teacher_tokenizer, student_tokenizer):
    prompt, response = "Question: what is 東京?\n", "Answer: the capital."
    text = prompt + response
    full = align_spans(text, teacher_tokenizer, student_tokenizer)
    al = align_spans(text, teacher_tokenizer, student_tokenizer, prompt_end=len(prompt))
    cut = len(prompt.encode())
    assert al.prompt_end == len(prompt) and all(s.byte_start >= cut for s in al.spans)
    assert al.spans == [s for s in full.spans if s.byte_start >= cut]
    assert "".join(s.text for s in al.spans) == response
    for side in ("teacher", "student"):
        owner = al.token_to_span(side)
        for i, span in enumerate(getattr(al, side).byte_spans):
            assert (owner[i] >= 0) == (span is not None and span[0] >= cut)
    assert align_spans(text, teacher_tokenizer, student_tokenizer, prompt_end=len(text)).spans == []
    assert align_spans(text, teacher_tokenizer, student_tokenizer, prompt_end=0).spans == full.spans
    straddle = align_spans("Hello world", teacher_tokenizer, student_tokenizer, prompt_end=3)
    assert [s.text for s in straddle.spans] == [" world"]  # "Hello" straddles the prompt's end
    with pytest.raises(SraVizError, match="prompt_end"):
        align_spans(text, teacher_tokenizer, student_tokenizer, prompt_end=len(text) + 1)


def test_frame_json_stats(teacher_tokenizer, student_tokenizer):
    text = "The cat sat. 東京 👍🏽!"
    al = align_spans(text, teacher_tokenizer, student_tokenizer)
    frame = al.to_frame()
    expected = ["byte_start", "byte_end", "char_start", "char_end", "text", "teacher_start", "teacher_end"]
    assert list(frame.columns[: len(expected)]) == expected and len(frame) == len(al)
    assert (frame.n_teacher_tokens == frame.teacher_end - frame.teacher_start).all()
    assert (
        frame.student_tokens.iloc[0] == al.student.tokens[al.spans[0].student_start : al.spans[0].student_end]
    )
    for variant in (
        al,
        align_spans(text, teacher_tokenizer, student_tokenizer, granularity="word", prompt_end=4),
    ):
        back = SpanAlignment.from_json(variant.to_json())
        assert back == variant and back.to_json() == variant.to_json()
        assert (back.token_to_span("student") == variant.token_to_span("student")).all()
        assert back.stats() == variant.stats()
    stats = al.stats()
    n_t, n_s = len(real_tokens(al.teacher)), len(real_tokens(al.student))
    assert stats["spans"] == len(al) and stats["teacher_tokens"] == n_t and stats["student_tokens"] == n_s
    assert stats["teacher_tokens_per_span"] == pytest.approx(n_t / len(al))
    one_to_one = ((frame.n_teacher_tokens == 1) & (frame.n_student_tokens == 1)).mean()
    assert stats["one_to_one_share"] == pytest.approx(one_to_one)
    assert stats["words"] == len(text.split()) and stats["student_fertility"] == pytest.approx(
        n_s / len(text.split())
    )
    with pytest.raises(SraVizError, match="SpanAlignment JSON"):
        SpanAlignment.from_json('{"text": "x"}')


def test_lazy_spans_and_assignment(teacher_tokenizer, student_tokenizer):
    al = align_spans("lazy spans, same answers", teacher_tokenizer, student_tokenizer)
    before = al.token_to_span("teacher"), len(al), al.stats()
    spans = al.spans
    assert (
        (al.token_to_span("teacher") == before[0]).all() and len(al) == before[1] and al.stats() == before[2]
    )
    al.spans = spans[:1]  # an edited alignment answers from its spans
    assert len(al) == 1 and al.token_to_span("teacher").max() == 0


def test_same_tokenizer_gives_one_token_spans(student_tokenizer):
    al = align_spans("Same tokenizer on both sides: 東京 👍🏽.", student_tokenizer, student_tokenizer)
    assert al.stats()["one_to_one_share"] == 1.0 and len(al) == len(al.student.ids)


def test_bad_arguments(teacher_tokenizer, student_tokenizer):
    with pytest.raises(SraVizError, match="granularity"):
        align_spans("x", teacher_tokenizer, student_tokenizer, granularity="sentence")
    with pytest.raises(SraVizError, match="side"):
        align_spans("x", teacher_tokenizer, student_tokenizer).token_to_span("both")
    with pytest.raises(SraVizError, match="str"):
        align_spans(None, teacher_tokenizer, student_tokenizer)


# The merge on synthetic tokenizations against a brute-force search for the finest partition.


@st.composite
def tokenization(draw, n_bytes: int):
    """Monotone token byte ranges over [0, n_bytes) with gaps and, now and then, zero-width tokens."""
    cuts = sorted(draw(st.sets(st.integers(0, n_bytes), max_size=n_bytes + 1)) | {0, n_bytes})
    starts, ends = [], []
    for a, b in itertools.pairwise(cuts):
        kind = draw(st.sampled_from(["token", "token", "token", "gap", "zero"]))
        if kind == "token":
            starts.append(a), ends.append(b)
        elif kind == "zero":
            starts.append(a), ends.append(a)
    return np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)


def brute_force_count(a, b, n_bytes: int) -> int:
    """Most spans a valid partition can have (each span holds a wide token of both sides)."""
    wide = [[(s, e) for s, e in zip(*side, strict=True) if e > s] for side in (a, b)]
    if not wide[0] or not wide[1]:
        return 1

    def ok(lo: int, hi: int) -> bool:
        return all(
            not any(s < p < e for s, e in toks for p in (lo, hi))
            and any(lo <= s and e <= hi for s, e in toks)
            for toks in wide
        )

    best = {0: 0}
    for hi in range(1, n_bytes + 1):
        options = [best[lo] + 1 for lo in best if ok(lo, hi)]
        if options:
            best[hi] = max(options)
    return best[n_bytes]


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n_bytes=st.integers(1, 14))
def test_common_boundaries_is_the_finest_valid_partition(data, n_bytes):
    a, b = data.draw(tokenization(n_bytes)), data.draw(tokenization(n_bytes))
    bounds = common_boundaries(*a, *b, n_bytes).tolist()
    assert bounds[0] == 0 and bounds[-1] == n_bytes and bounds == sorted(set(bounds))
    wide = [[(s, e) for s, e in zip(*side, strict=True) if e > s] for side in (a, b)]
    if wide[0] and wide[1]:
        for lo, hi in itertools.pairwise(bounds):  # every span valid ...
            for toks in wide:
                assert not any(s < p < e for s, e in toks for p in (lo, hi))
                assert any(lo <= s and e <= hi for s, e in toks)
    assert len(bounds) - 1 == brute_force_count(a, b, n_bytes)  # ... and as many as possible
