"""A small real WordPiece (BERT-style) tokenizer for tests, built in a fraction of a second.

It lowercases, strips accents, splits CJK characters, drops whitespace and control characters and
adds ``[CLS]``/``[SEP]``: the normalizing, text-dropping kind of tokenizer an aligner must survive.
Deterministic: the corpus below always gives the same vocabulary (characters, words, frequent pieces).
"""

from __future__ import annotations

from functools import lru_cache

_CORPUS = """
Knowledge distillation trains a small student model to imitate a large teacher model.
When the two models use different tokenizers, their tokens do not line up: one word may be a single
token for the teacher and three pieces for the student. Span alignment finds the places where both
tokenizations agree on a boundary and compares the models span by span.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!
Naïve café owners in Zürich and São Paulo serve crème brûlée, jalapeño and smörgåsbord.
def tokenize(text: str) -> list[int]:
    return [ord(ch) for ch in text if not ch.isspace()]
for i in range(10): print(i * 2, i ** 2, i // 3, i % 7)
Numbers: 3.14159, 2,718,281,828, 1e-9, 0x1F600, 12345678901234567890, 50% off, $19.99.
Dates like 2024-06-01 and times like 12:30:45 appear in logs and e-mails (user@example.com).
東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다。
Привет, мир! Γειά σου Κόσμε! مرحبا بالعالم! שלום עולם! नमस्ते दुनिया! สวัสดีชาวโลก
Attention weights tell which tokens matter; the center of mass of a span mixes its hidden states.
Students learn faster when the teacher's geometry is kept: distances between spans are preserved.
"""

_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = {token: i for i, token in enumerate(_SPECIALS + _vocabulary(normalizer, pre_tokenizer))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok.to_str()


def _vocabulary(normalizer, pre_tokenizer) -> list[str]:
    """Every character (alone and as ``##`` continuation), every corpus word, frequent word pieces.

    Counted by hand rather than with the library's trainer, whose tie-breaking differs between runs.
    """
    words = [w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(_CORPUS))]
    chars = sorted({ch for w in words for ch in w})
    counts: dict[str, int] = {}
    for w in words:
        for n in range(2, min(len(w), 5) + 1):
            for piece in (w[:n], "##" + w[-n:]):
                counts[piece] = counts.get(piece, 0) + 1
    frequent = [p for p, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= 2][:300]
    pieces = chars + ["##" + ch for ch in chars] + sorted(set(words)) + frequent
    return list(dict.fromkeys(pieces))


def build_wordpiece_tokenizer():
    """A fresh ``PreTrainedTokenizerFast`` WordPiece tokenizer (BERT-style, lowercase, accents stripped).

    Example:
        >>> build_wordpiece_tokenizer()("Café")["input_ids"][0] == build_wordpiece_tokenizer().cls_token_id
        True
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
    )
