"""Small real tokenizers of the kinds the default pair does not cover, trained in a fraction of a second.

- ``unigram_always`` / ``unigram_first``: Unigram with an NFKC + lowercase normalizer and a Metaspace
  word prefix prepended to every word / only to the text (the T5 / XLM-R family). A lone ``▁`` they
  insert shares its offsets with the next token.
- ``wordpiece_uncased``: WordPiece trained by the library, BERT normalizer (lowercase, accents
  stripped, whitespace dropped), ``[CLS]``/``[SEP]``.
- ``bpe_nfkc``: byte-level BPE behind an NFKC normalizer, with a prefix space added: ``ﬁ`` becomes two
  tokens that both report the one character, ``Ｈ`` one byte token for a three-byte character.

Each is trained on the same generated corpus (seeded) and cached as JSON for the test session.
"""

from __future__ import annotations

import random
from functools import cache

KINDS = ("unigram_always", "unigram_first", "wordpiece_uncased", "bpe_nfkc")

_WORDS = (
    "the of and to in is was model teacher student token span align knowledge attention hidden "
    "Naïve café Zürich São crème brûlée jalapeño smörgåsbord déjà vu "
    "東京 北京 서울 日本語 Привет мир Γειά κόσμε مرحبا שלום नमस्ते สวัสดี "
    "ﬁne ﬂow ① ② ⑩ ＡＢＣ ｈｅｌｌｏ １２３ ｶﾀｶﾅ ™ ½ x² "
    "👍 👨‍👩‍👧 🇫🇷 ❤️ 123 3.14 2024-06-01 <bos> [CLS] <|im_end|>"
).split()
_PUNCTUATION = ["!!!!", "!!", "...", "?!", "--", "=>", ":)"]  # only ever glued to a word: no "▁!" piece
_SPECIALS = ["<pad>", "<unk>", "[CLS]", "[SEP]"]


def _corpus(n_lines: int = 600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    glue = [" ", " ", " ", "  ", "\n", "\t", ""]

    def word() -> str:
        return rng.choice(_WORDS) + (rng.choice(_PUNCTUATION) if rng.random() < 0.3 else "")

    return ["".join(word() + rng.choice(glue) for _ in range(rng.randint(3, 15))) for _ in range(n_lines)]


@cache
def _tokenizer_json(kind: str) -> str:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if kind.startswith("unigram"):
        scheme = kind.split("_")[1]
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
        trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=_SPECIALS, unk_token="<unk>")
    elif kind == "wordpiece_uncased":
        tok = Tokenizer(models.WordPiece(unk_token="<unk>"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=500, special_tokens=_SPECIALS)
    elif kind == "bpe_nfkc":
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=500, special_tokens=_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    tok.train_from_iterator(_corpus(), trainer)
    if kind == "wordpiece_uncased":
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
        )
    return tok.to_str()


def build_kind_tokenizer(kind: str):
    """A fresh ``PreTrainedTokenizerFast`` of one of `KINDS`.

    Example:
        >>> build_kind_tokenizer("unigram_always").tokenize("!!")[0]
        '▁'
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(kind)),
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )
