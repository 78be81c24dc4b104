"""Byte-exact tokenization against an independent truth, on the four real tokenizers.

Truth is written here without sra_viz: byte-level tokens through transformers' own GPT-2 byte table,
Gemma's ``<0xNN>`` as one byte and ``▁`` as a space, WordPiece through the tokenizer's normalizer.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer
from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from sra_viz.errors import SraVizError
from sra_viz.tokenization import TextBytes, TokenizedText, char_to_byte_table, encode_bytes, tokenize_bytes
from tests._truth import token_pieces

TEXTS = [
    "Hello, world!",
    "👨‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 🇫🇷🇯🇵 flags, 👍🏽 tone",
    "東京は日本の首都です。北京是中国的首都。서울",
    "สวัสดีชาวโลก नमस्ते दुनिया",
    "e\u0301 a\u0308 Z\u0351\u036b\u0343 o\u0328\u0304",
    "مرحبا بالعالم שָׁלוֹם",
    "zero\u200bwidth nb\u00a0sp ideo\u3000space thin\u2009",
    "\ttabs\tand\r\nwindows\r\nlines",
    "runs    of     spaces\n\n\n\nand newlines   ",
    "def f(x):\n    return x ** 2  # square\n",
    "12345678901234567890 3.14159265358979 1e-9 0x1F600",
    "<bos><eos><|im_end|><|im_start|><|endoftext|><start_of_turn>[CLS][SEP]<0x41>",
    "literal ▁ metaspace ▁▁ and Ġ byte char",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀋𡈽",
    "",
    " ",
    "   \n\t  ",
]

SIDES = ["teacher_tokenizer", "student_tokenizer", "gpt2_tokenizer", "wordpiece_tokenizer"]


def dropped_bytes(tokenizer) -> bytes:
    """Bytes a byte-level vocabulary lacks (SmolLM2 has no token for 21 of them): tokenizing drops them."""
    if "ByteLevel" not in repr(tokenizer.backend_tokenizer.decoder):
        return b""
    vocab = tokenizer.get_vocab()
    return bytes(b for b, ch in bytes_to_unicode().items() if ch not in vocab)


def check_exact(tokenizer, text: str, add_special_tokens: bool = True) -> None:
    tt = tokenize_bytes(text, tokenizer, add_special_tokens=add_special_tokens)
    data = text.encode()
    assert tt.text == text and len(tt.ids) == len(tt.tokens) == len(tt.byte_spans) == len(tt)
    assert tt.tokens == tokenizer.convert_ids_to_tokens(tt.ids)
    real = [(tok, span) for tok, span in zip(tt.tokens, tt.byte_spans, strict=True) if span is not None]
    cursor = 0
    for _, (start, end) in real:  # monotone, inside the text, non-overlapping
        assert cursor <= start <= end <= len(data)
        cursor = end
    pieces = token_pieces(tokenizer, [tok for tok, _ in real], text)
    if pieces is not None:
        dropped = dropped_bytes(tokenizer)
        for piece, (_, (start, end)) in zip(pieces, real, strict=True):
            assert data[start:end].translate(None, dropped) == piece  # the token's bytes, dropped ones aside
            assert start == end or data[start] not in dropped  # a dropped byte before a token is a gap
        gaps = [
            data[e:s]
            for (_, (_, e)), (_, (s, _)) in zip(
                [("", (0, 0)), *real], [*real, ("", (len(data),) * 2)], strict=True
            )
        ]
        assert all(gap.translate(None, dropped) == b"" for gap in gaps)  # only dropped bytes are uncovered
    else:  # normalizing WordPiece: whole characters; a token is part of the normalized text it covers
        normalizer = tokenizer.backend_tokenizer.normalizer
        previous = (0, 0)
        for tok, (start, end) in real:
            if end == start:  # a second piece of one character (Hangul 서 -> ᄉ ##ᅥ): sits at its end
                assert start == previous[1] > previous[0]
                start, end = previous
            chunk = data[start:end].decode()  # raises if a character was cut
            if tok != tokenizer.unk_token:
                assert tok.removeprefix("##") in normalizer.normalize_str(chunk)
            previous = (start, end)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("text", TEXTS)
def test_byte_spans_match_independent_truth(side, text, request):
    check_exact(request.getfixturevalue(side), text)


@pytest.mark.parametrize("side", SIDES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60))
def test_byte_spans_on_random_unicode(side, text, request):
    check_exact(request.getfixturevalue(side), text)


def test_byte_level_tokens_split_one_character(student_tokenizer, gpt2_tokenizer):
    for tokenizer in (student_tokenizer, gpt2_tokenizer):
        tt = tokenize_bytes("東", tokenizer)
        assert len(tt.ids) > 1  # one character, several byte pieces
        assert tt.byte_spans[0][0] == 0 and tt.byte_spans[-1][1] == 3
        assert all(e - s < 3 for s, e in tt.byte_spans)


def test_byte_fallback_tokens_are_single_bytes(teacher_tokenizer):
    tt = tokenize_bytes("a\u00a0b", teacher_tokenizer)  # NBSP goes through <0xC2><0xA0>
    assert "<0xC2>" in tt.tokens and "<0xA0>" in tt.tokens
    assert tt.byte_spans[tt.tokens.index("<0xC2>")] == (1, 2)
    assert tt.byte_spans[tt.tokens.index("<0xA0>")] == (2, 3)


def test_inserted_special_tokens_are_flagged(teacher_tokenizer, student_tokenizer, wordpiece_tokenizer):
    gemma = tokenize_bytes("hi", teacher_tokenizer)
    assert gemma.ids[0] == teacher_tokenizer.bos_token_id and gemma.special == [True] + [False] * (
        len(gemma) - 1
    )
    assert tokenize_bytes("hi", teacher_tokenizer, add_special_tokens=False).special == [False] * (
        len(gemma) - 1
    )
    bert = tokenize_bytes("hi there", wordpiece_tokenizer)
    assert bert.tokens[0] == "[CLS]" and bert.tokens[-1] == "[SEP]"
    assert bert.special[0] and bert.special[-1] and not any(bert.special[1:-1])
    assert not any(tokenize_bytes("hi", student_tokenizer).special)  # SmolLM2 adds nothing


def _own_ids(backend, text: str, add_special_tokens: bool) -> list[int]:
    """The backend's ids for ``text``, special-token strings in it read as text."""
    backend.encode_special_tokens = True
    try:
        return backend.encode(text, add_special_tokens=add_special_tokens).ids
    finally:
        backend.encode_special_tokens = False


@pytest.mark.parametrize("side", SIDES)
def test_ids_are_the_tokenizers_own(side, request):
    tokenizer = request.getfixturevalue(side)
    for text in [*TEXTS, "<bos>hi", "x<|im_end|>"]:
        for add in (True, False):
            assert tokenize_bytes(text, tokenizer, add).ids == _own_ids(
                tokenizer.backend_tokenizer, text, add
            )


def test_template_specials_put_around_the_ids(student_tokenizer):
    """A template with specials before and after the text: ids, flags and ranges as the backend gives."""
    backend = Tokenizer.from_str(student_tokenizer.backend_tokenizer.to_str())
    ids = {t: backend.token_to_id(t) for t in ("<|im_start|>", "<|im_end|>")}
    backend.post_processor = TemplateProcessing(
        single="<|im_start|> $A <|im_end|>", special_tokens=list(ids.items())
    )
    for text in ["", "hi there", "a <|im_end|> b", "東京 👍🏽"]:
        tt = tokenize_bytes(text, backend)
        assert tt.ids == _own_ids(backend, text, True)
        assert tt.special == [True] + [False] * (len(tt) - 2) + [True]
        assert tt.byte_spans[1:-1] == tokenize_bytes(text, backend, add_special_tokens=False).byte_spans


@pytest.mark.parametrize("side", SIDES)
def test_literal_special_strings_stay_text(side, request):
    tokenizer = request.getfixturevalue(side)
    text = "<bos> <eos> <|im_end|> <|im_start|> <|endoftext|> <start_of_turn> [CLS] [SEP] <pad>"
    tt = tokenize_bytes(text, tokenizer)
    special_ids = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}  # [UNK] stands for text
    real_ids = [i for i, span in zip(tt.ids, tt.byte_spans, strict=True) if span is not None]
    assert not special_ids & set(real_ids)
    assert sum(tt.special) == len(tokenizer("x")["input_ids"]) - len(
        tokenizer("x", add_special_tokens=False)["input_ids"]
    )
    assert tokenizer.backend_tokenizer.encode_special_tokens is False  # the switch is put back


def test_leftover_truncation_and_padding_do_not_cut_the_text(student_tokenizer):
    long_text = "one two three four five six seven eight nine ten " * 10
    student_tokenizer([long_text, "x"], truncation=True, max_length=5, padding="max_length")
    backend = student_tokenizer.backend_tokenizer
    left = backend.truncation, backend.padding
    assert left[0] is not None and left[1] is not None  # the wrapper leaves them on the backend
    tt = tokenize_bytes(long_text, student_tokenizer)
    assert tt.byte_spans[-1][1] == len(long_text) and len(tt.ids) > 5
    assert (backend.truncation, backend.padding) == left  # and we put them back
    assert tt.ids == student_tokenizer(long_text)["input_ids"]


class _CharTokenizer(PreTrainedTokenizer):
    """A real slow (pure Python) tokenizer: one token per ASCII character, no offsets."""

    def __init__(self, **kwargs):
        self._vocab = {chr(i): i for i in range(128)}
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    def _tokenize(self, text):
        return list(text)

    def _convert_token_to_id(self, token):
        return self._vocab.get(token, 0)

    def _convert_id_to_token(self, index):
        return chr(index)


def test_slow_tokenizer_is_refused():
    with pytest.raises(SraVizError, match="fast"):
        tokenize_bytes("abc", _CharTokenizer())


def test_bad_text_is_refused(student_tokenizer):
    with pytest.raises(SraVizError, match="surrogate"):
        tokenize_bytes("a\ud800b", student_tokenizer)
    with pytest.raises(SraVizError, match="str"):
        tokenize_bytes(b"abc", student_tokenizer)


def test_char_to_byte_table_and_shared_text_bytes(teacher_tokenizer):
    text = "aé東𝔘"
    assert char_to_byte_table(text).tolist() == [0, 1, 3, 6, 10]
    assert char_to_byte_table("").tolist() == [0]
    source = TextBytes(text)
    assert not source.ascii and source.data == text.encode()
    assert encode_bytes(source, teacher_tokenizer).tokenized == tokenize_bytes(text, teacher_tokenizer)


def test_raw_backend_tokenizer_is_accepted(student_tokenizer):
    backend = student_tokenizer.backend_tokenizer
    assert tokenize_bytes("Hello 東京", backend) == tokenize_bytes("Hello 東京", student_tokenizer)


def test_lazy_fields_read_and_compare_like_plain_ones(teacher_tokenizer):
    """`byte_spans` and `tokens` are built on first read, and behave as the plain dataclass fields."""
    tt = tokenize_bytes("lazy 東京 <bos>", teacher_tokenizer)
    plain = TokenizedText(tt.text, list(tt.ids), list(tt.tokens), list(tt.byte_spans))
    fresh = tokenize_bytes("lazy 東京 <bos>", teacher_tokenizer)
    assert fresh == plain and repr(fresh) == repr(plain)
    assert dataclasses.asdict(fresh) == dataclasses.asdict(plain)
    fresh.byte_spans, fresh.tokens = [None] * len(fresh), ["x"] * len(fresh)  # assignment replaces them
    assert fresh.special == [True] * len(fresh) and fresh.tokens == ["x"] * len(fresh) and fresh != plain
