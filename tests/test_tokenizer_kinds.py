"""Byte spans and alignment on tokenizer kinds that insert, rewrite or share text, against the default pair.

Kinds (tests/_kinds.py, trained locally): Metaspace-Unigram with NFKC + lowercase (prefix "always" and
"first"), uncased accent-stripping WordPiece, byte-level BPE behind NFKC with a prefix space. Checked
on hand-made and generated texts, each paired with the default student's and the teacher's tokenizer:

(1) byte ranges are monotone, inside the text, and agree with the tokenizer's own character offsets:
    a range lies inside its token's offsets, or reaches back only over bytes no offsets cover (a
    trimmed leading space); every byte some offsets hold is covered by some range;
(2) an inserted word-prefix piece (a ``▁``/``Ġ``-only token on text that holds no space) covers no text;
(3) the spans partition the text's bytes, no token is in two spans, no span can be cut again
    (tests/test_alignment.py's `check_alignment`);
(4) every byte position where both tokenizations end a text-covering token (and both go on with
    another one) is a span boundary.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sra_viz.alignment import SpanAlignment, align_spans
from sra_viz.tokenization import tokenize_bytes
from tests._kinds import KINDS, build_kind_tokenizer
from tests.test_alignment import check_alignment
from tests.test_tokenization import TEXTS

HAND_MADE = [
    *[t for t in TEXTS if t],
    "!" * 64,
    "!!!! ! !!",
    "ﬁne ﬂow ﬁ",
    "① ② ⑩ ①②",
    "ＦＵＬＬ　ｗｉｄｔｈ　１２３！",
    "ﾊﾝｶｸ ｶﾀｶﾅ ™ ½ x² ㎏",
    "Naïve café déjà CRÈME Brûlée İstanbul straße",
    "e\u0301 cafe\u0301 \u00a8 a\u00a8b \u00b4",
    "👨‍👩‍👧‍👦👨‍👩‍👧 🇫🇷🇯🇵🏳️‍🌈 👍🏽❤️",
    "<bos><unk>[CLS][SEP]<pad>▁Ġ##",
    "  \t\n  leading and trailing  \n",
    "東京は日本の首都です。서울",
]
FRAGMENTS = [t for t in HAND_MADE if len(t) < 40] + ["▁", " ", "  ", "\n", "!", "ﬁ", "①", "Ａ", "\u200d", "é"]
PARTNERS = ["student_tokenizer", "teacher_tokenizer"]


@pytest.fixture(scope="session", params=KINDS)
def kind_tokenizer(request):
    return build_kind_tokenizer(request.param)


def encode_as_text(tokenizer, text: str):
    """The backend's encoding with special-token strings in the text read as text, as sra_viz reads them."""
    backend = tokenizer.backend_tokenizer
    backend.encode_special_tokens = True
    try:
        return backend.encode(text)
    finally:
        backend.encode_special_tokens = False


def check_kind_spans(tokenizer, text: str) -> None:
    """(1) and (2) for one text."""
    data = text.encode()
    char_to_byte = np.cumsum([0, *(len(ch.encode()) for ch in text)])  # (C + 1,)
    tt = tokenize_bytes(text, tokenizer)
    enc = encode_as_text(tokenizer, text)
    real = [i for i, span in enumerate(tt.byte_spans) if span is not None]
    assert [i for i, special in enumerate(enc.special_tokens_mask) if not special] == real
    assert tt.tokens == tokenizer.convert_ids_to_tokens(tt.ids)
    ranges = [tt.byte_spans[i] for i in real]
    offsets = [(int(char_to_byte[enc.offsets[i][0]]), int(char_to_byte[enc.offsets[i][1]])) for i in real]
    held = np.zeros(len(data) + 1, dtype=bool)  # bytes some token's offsets hold
    covered = np.zeros(len(data) + 1, dtype=bool)
    cursor = 0
    for (start, end), (lo, hi) in zip(ranges, offsets, strict=True):
        assert cursor <= start <= end <= len(data)
        cursor = end
        held[lo:hi] = True
        covered[start:end] = True
    for (start, end), (lo, hi) in zip(ranges, offsets, strict=True):
        if start < end:
            assert end <= hi and (start >= lo or not held[start:lo].any()), (text, start, end, lo, hi)
    assert covered[held].all(), text
    # (2) a piece made only of word-prefix marks, on characters that hold no space (nor a literal mark),
    # is empty.
    normalizer = tokenizer.backend_tokenizer.normalizer
    for i, (start, end), (lo, hi) in zip(real, ranges, offsets, strict=True):
        token = tt.tokens[i]
        if token and set(token) <= {"▁", "Ġ"}:
            chunk = data[lo:hi].decode()
            normalized = normalizer.normalize_str(chunk) if normalizer is not None else chunk
            if " " not in normalized and not set(normalized) & set(token):
                assert start == end, (text, token, (start, end), chunk)


def check_common_ends_are_boundaries(al: SpanAlignment) -> None:
    """(4): a byte where both sides end a text-covering token, with more on both sides after it, is a cut."""
    ends, starts = {}, {}
    for side in ("teacher", "student"):
        wide = [s for s in getattr(al, side).byte_spans if s is not None and s[1] > s[0]]
        ends[side] = {e for _, e in wide}
        starts[side] = max((s for s, _ in wide), default=-1)
    cuts = {s.byte_end for s in al.spans}
    for p in ends["teacher"] & ends["student"]:
        if p <= min(starts.values()):
            assert p in cuts, (al.text, p)


def check_pair(kind_tok, partner, text: str) -> None:
    check_kind_spans(kind_tok, text)
    for teacher, student in ((kind_tok, partner), (partner, kind_tok)):
        al = align_spans(text, teacher, student)
        check_alignment(al, text)
        check_common_ends_are_boundaries(al)


@pytest.mark.parametrize("partner", PARTNERS)
def test_hand_made_texts(kind_tokenizer, partner, request):
    other = request.getfixturevalue(partner)
    for text in HAND_MADE:
        check_pair(kind_tokenizer, other, text)


@pytest.mark.parametrize("partner", PARTNERS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(
        st.text(max_size=60),
        st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=8).map("".join),
    )
)
def test_generated_texts(kind_tokenizer, partner, text, request):
    check_pair(kind_tokenizer, request.getfixturevalue(partner), text)


@pytest.mark.parametrize("kind", ["unigram_always", "unigram_first", "bpe_nfkc"])
def test_inserted_prefix_covers_no_text(kind, student_tokenizer):
    """The report that started this: a lone inserted prefix took the first character and shifted the run."""
    tok = build_kind_tokenizer(kind)
    text = "!" * 64
    enc = encode_as_text(tok, text)
    tt = tokenize_bytes(text, tok)
    (i,) = [i for i, t in enumerate(tt.tokens) if t in ("▁", "Ġ") and enc.offsets[i] == (0, 1)]
    assert tt.byte_spans[i] == (0, 0)
    assert tt.byte_spans[i + 1] == (0, enc.offsets[i + 1][1])  # the next token keeps its own offsets
    al = align_spans(text, tok, student_tokenizer)
    smol_ends = {s[1] for s in al.student.byte_spans if s}
    kind_ends = {s[1] for s in tt.byte_spans if s and s[1] > s[0]}
    assert {s.byte_end for s in al.spans} == (smol_ends & kind_ends) | {len(text)}


def test_kinds_show_the_cases_they_are_here_for():
    """The hand-made texts really exercise inserted prefixes and shared characters."""
    lone_prefix, shared = set(), set()
    for kind in KINDS:
        tok = build_kind_tokenizer(kind)
        for text in HAND_MADE:
            enc = encode_as_text(tok, text)
            offsets = [
                o for o, special in zip(enc.offsets, enc.special_tokens_mask, strict=True) if not special
            ]
            tokens = [
                t for t, special in zip(enc.tokens, enc.special_tokens_mask, strict=True) if not special
            ]
            for k in range(len(offsets) - 1):
                if offsets[k + 1][0] < offsets[k][1]:
                    (lone_prefix if tokens[k] in ("▁", "Ġ") else shared).add(kind)
    assert {"unigram_always", "unigram_first", "bpe_nfkc"} <= lone_prefix
    assert "bpe_nfkc" in shared and "unigram_always" in shared
