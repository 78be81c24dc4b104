"""Byte-exact tokenization: every token's own UTF-8 byte range in the text, for any HF fast tokenizer.

Character offsets are not enough: byte-level BPE (SmolLM2, GPT-2) and SentencePiece byte fallback
(Gemma's ``<0xNN>``) split one character into several tokens that all report the whole character.
Each token's string says which bytes it stands for: byte-level tokens through the GPT-2
byte<->unicode table, ``<0xNN>`` as one byte, ``▁`` as a space, ``##`` as a WordPiece continuation.

1. When the tokens' bytes, laid end to end, *are* the text's bytes (byte-level BPE, Gemma-style
   SentencePiece), each token's range follows from the running sum of its byte lengths: exact by
   construction, checked on the whole text, and no offsets needed (the tokenizer skips them).
   Bytes a byte-level vocabulary lacks (SmolLM2 drops 21 such bytes) are stepped over.
2. Otherwise (normalizing tokenizers: WordPiece lowercases, strips accents, drops whitespace, emits
   ``[UNK]``; NFKC turns ``ﬁ`` into ``fi``) the tokenizer's character offsets are turned into byte
   offsets (whole characters). A word-prefix piece the tokenizer inserted (a lone ``▁``/``Ġ`` sharing
   its offsets with the next token) gets an empty range; of tokens sharing a character, the first
   takes it and the others are empty at its end; a string the text spells just before trimmed
   offsets widens them back. docs/ALIGNMENT.md lists what a range means for each kind.

Special tokens the tokenizer inserts get no byte range; special-token *strings* typed in the text
are tokenized as text (the backend's ``encode_special_tokens`` switch, put back after each call).
On path 1 a post-processor that puts the same specials around every text (Gemma's ``<bos>``) is
applied here: the text is encoded without them and they are added to its ids, which gives the
tokenizer's own ids (checked once per tokenizer on a probe text).
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import itertools
import operator
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from tokenizers import Tokenizer

from sra_viz.errors import SraVizError


@dataclass
class TokenizedText:
    """One text as a tokenizer saw it, with each token's exact UTF-8 byte range.

    ``ids`` are exactly what the tokenizer produced (special tokens included); ``byte_spans[i]`` is
    ``(start, end)`` into ``text.encode("utf-8")``, or ``None`` for a special token the tokenizer
    inserted (BOS/EOS/CLS/SEP). Literal text such as ``"<bos>"`` typed by a user is ordinary text.

    Example:
        >>> tt = TokenizedText("hi", [2, 5], ["<bos>", "hi"], [None, (0, 2)])
        >>> tt.special
        [True, False]
    """

    text: str
    ids: list[int]
    tokens: list[str]
    byte_spans: list[tuple[int, int] | None]
    if TYPE_CHECKING:  # set on the class below: the ranges, or the parts they are built from
        _byte_spans: list[tuple[int, int] | None] | None = field(
            default=None, init=False, repr=False, compare=False
        )
        _parts: tuple[range | list[int], list[int] | None, list[int]] | None = field(
            default=None, init=False, repr=False, compare=False
        )
        _tokens: list[str] | None = field(default=None, init=False, repr=False, compare=False)
        _tokens_of: Callable[[list[int]], list[str]] | None = field(
            default=None, init=False, repr=False, compare=False
        )

    @property
    def special(self) -> list[bool]:
        """``True`` for the special tokens the tokenizer inserted (they belong to no span)."""
        return [span is None for span in self.byte_spans]

    def __len__(self) -> int:
        return len(self.ids)


def _get_byte_spans(self: TokenizedText) -> list[tuple[int, int] | None]:
    if self._byte_spans is None:
        self._byte_spans = _spans_list(len(self.ids), *cast("tuple", self._parts))
        self._parts = None
    return self._byte_spans


def _set_byte_spans(self: TokenizedText, spans: list[tuple[int, int] | None]) -> None:
    self._byte_spans, self._parts = spans, None


def _get_tokens(self: TokenizedText) -> list[str]:
    if self._tokens is None:
        self._tokens = cast("Callable[[list[int]], list[str]]", self._tokens_of)(self.ids)
        self._tokens_of = None
    return self._tokens


def _set_tokens(self: TokenizedText, tokens: list[str]) -> None:
    self._tokens, self._tokens_of = tokens, None


# `byte_spans` and `tokens` stay dataclass fields (init, eq, repr, asdict) but `encode_bytes` leaves
# only what they are made of (real positions, starts, ends; the id -> string lookup): most
# alignments never read one tuple or token string per token.
TokenizedText._byte_spans = None
TokenizedText._parts = None
TokenizedText._tokens = None
TokenizedText._tokens_of = None
setattr(TokenizedText, "byte_spans", property(_get_byte_spans, _set_byte_spans))  # noqa: B010
setattr(TokenizedText, "tokens", property(_get_tokens, _set_tokens))  # noqa: B010


def _spans_list(n: int, real: range | list[int], starts: list[int] | None, ends: list[int]) -> list:
    """``n`` entries: ``(start, end)`` at the real positions, ``None`` (special) elsewhere.

    ``starts`` is None for tokens that tile the text: each starts where the previous one ends.
    """
    if starts is None:
        starts = [0, *ends[:-1]] if ends else []
    if isinstance(real, range):
        return [None] * real.start + list(zip(starts, ends, strict=True)) + [None] * (n - real.stop)
    spans: list = [None] * n
    for i, s, e in zip(real, starts, ends, strict=True):
        spans[i] = (s, e)
    return spans


def tokenize_bytes(text: str, tokenizer, add_special_tokens: bool = True) -> TokenizedText:
    """Tokenize ``text`` once and give every token its exact UTF-8 byte range.

    Literal special-token strings in the text (``"<bos>"``, ``"<|im_end|>"``) are tokenized as text.

    Example:
        >>> tokenize_bytes("東京", gpt2_tokenizer).byte_spans   # doctest: +SKIP
        [(0, 2), (2, 3), (3, 5), (5, 6)]
    """
    return encode_bytes(text, tokenizer, add_special_tokens).tokenized


class TextBytes:
    """A text with its UTF-8 bytes and, built on first use, its character-to-byte table.

    Example:
        >>> TextBytes("aé").char_to_byte.tolist()
        [0, 1, 3]
    """

    __slots__ = ("text", "data", "_char_to_byte")
    _char_to_byte: np.ndarray | None

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise SraVizError(f"text must be a str, got {type(text).__name__}")
        try:
            self.data = text.encode("utf-8")
        except UnicodeEncodeError:
            self.data = _utf8(text)  # raises the one-line error
        self.text, self._char_to_byte = text, None

    @property
    def ascii(self) -> bool:
        return len(self.data) == len(self.text)

    @property
    def char_to_byte(self) -> np.ndarray:
        """``(len(text) + 1,)`` int64 byte offset of every character boundary."""
        if self._char_to_byte is None:
            self._char_to_byte = char_to_byte_table(self.text)
        return self._char_to_byte


class ByteEncoding:
    """`TokenizedText` plus the plain lists the aligner works on (real = non-special tokens).

    - ``real``: ``(R,)`` positions in ids of the non-special tokens (a ``range`` when contiguous)
    - ``starts``: ``(R,)`` byte start of each real token, non-decreasing
    - ``ends``: ``(R,)`` byte end; ``ends[i] <= starts[i + 1]``
    - ``tiles``: the tokens' bytes, end to end, are exactly the text (no gap, no overlap, none empty);
      then ``starts == [0, *ends[:-1]]``, built on first read (the merge needs only the ends)
    """

    __slots__ = ("tokenized", "real", "_starts", "ends", "tiles")

    def __init__(
        self,
        tokenized: TokenizedText,
        real: range | list[int],
        starts: list[int] | None,
        ends: list[int],
        tiles: bool = False,
    ):
        if starts is None and not tiles:
            raise ValueError("starts may be left out only for a tiling")
        self.tokenized, self.real, self._starts, self.ends, self.tiles = tokenized, real, starts, ends, tiles

    @property
    def starts(self) -> list[int]:
        if self._starts is None:
            self._starts = [0, *self.ends[:-1]] if self.ends else []
        return self._starts

    def __repr__(self) -> str:
        lists = f"starts={self.starts!r}, ends={self.ends!r}"
        return f"ByteEncoding(real={self.real!r}, {lists}, tiles={self.tiles})"


def encode_bytes(text: str | TextBytes, tokenizer, add_special_tokens: bool = True) -> ByteEncoding:
    """`tokenize_bytes` with the lists the aligner uses (pass a `TextBytes` to share it between sides).

    Example:
        >>> enc = encode_bytes("hello", gpt2_tokenizer)          # doctest: +SKIP
        >>> enc.starts, enc.ends                                 # doctest: +SKIP
        ([0], [5])
    """
    source = text if isinstance(text, TextBytes) else TextBytes(text)
    backend, facts = _backend_and_facts(tokenizer)
    real: range | list[int]
    spans = None
    if facts.kind != "offsets" and facts.misses < _MAX_MISSES:
        wrap = add_special_tokens and facts.wraps  # the template's specials put around the ids here
        enc = _encode(backend, source.text, add_special_tokens and not wrap, with_offsets=False, facts=facts)
        ids = enc.ids
        if wrap:
            lead, trail = facts.around
            real = range(len(lead), len(lead) + len(ids))
            spans = _exact_spans(facts, ids, source)
            if lead:  # in place: `ids` is the encoding's fresh list, not shared
                ids[:0] = lead
            if trail:
                ids += trail
        elif add_special_tokens and facts.adds_specials:
            real = facts.real_range(ids) or _real_positions(enc.special_tokens_mask)
            spans = _exact_spans(facts, _pick(ids, real), source)
        else:
            real = range(len(ids))
            spans = _exact_spans(facts, ids, source)
        tokens = None
        # A tokenizer that keeps altering text (a normalizer) soon goes straight to offsets.
        facts.misses = 0 if spans is not None else facts.misses + 1
    if spans is None:
        enc = _encode(backend, source.text, add_special_tokens, with_offsets=True)
        ids, tokens = enc.ids, facts.tokens_of(enc.ids)
        real = _real_positions(enc.special_tokens_mask)
        # The encoding's own strings (a Unigram [UNK] keeps the text it stands for) place the tokens.
        spans = _offset_spans(enc.offsets, real, _pick(enc.tokens, real), source, facts)
    starts, ends, tiles = spans
    tokenized = _new_tokenized(TokenizedText)
    tokenized.text, tokenized.ids = source.text, ids
    tokenized._tokens, tokenized._tokens_of = tokens, facts.tokens_of
    tokenized._byte_spans, tokenized._parts = None, (real, starts, ends)
    encoded = _new_encoding(ByteEncoding)  # no __init__ call: the lists are consistent by construction
    encoded.tokenized, encoded.real, encoded.ends, encoded.tiles = tokenized, real, ends, tiles
    encoded._starts = starts
    return encoded


_new_tokenized = TokenizedText.__new__
_new_encoding = ByteEncoding.__new__


def _real_positions(mask: list[int]) -> range | list[int]:
    """Positions of the non-special tokens: a ``range`` when specials only sit at both ends."""
    n, n_special = len(mask), sum(mask)
    if n_special == 0 or n_special == n:
        return range(n if n_special == 0 else 0)
    lead, trail = mask.index(0), mask[::-1].index(0)
    if lead + trail == n_special:
        return range(lead, n - trail)
    return [i for i, m in enumerate(mask) if not m]


def _pick(items: list, real: range | list[int]) -> list:
    if isinstance(real, range):
        return items if real.start == 0 and real.stop == len(items) else items[real.start : real.stop]
    return [items[i] for i in real]


def char_to_byte_table(text: str) -> np.ndarray:
    """Byte offset of every character boundary: ``(len(text) + 1,)`` int64, last entry = byte length.

    Example:
        >>> char_to_byte_table("aé東").tolist()
        [0, 1, 3, 6]
    """
    codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)  # (C,)
    widths = 1 + (codepoints >= 0x80).astype(np.int64) + (codepoints >= 0x800) + (codepoints >= 0x10000)
    table = np.zeros(len(codepoints) + 1, dtype=np.int64)
    np.cumsum(widths, out=table[1:])
    return table


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise SraVizError(
            f"text has a lone surrogate {text[err.start : err.end]!r} at character {err.start}: give valid "
            "Unicode (decode your bytes with errors='replace')"
        ) from None


def _backend(tokenizer):
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", True):
        raise SraVizError(
            f"tokenizer {type(tokenizer).__name__} has no character offsets (a slow tokenizer): load a fast "
            "one, e.g. AutoTokenizer.from_pretrained(path, use_fast=True) or sra_viz.models.load_tokenizer"
        )
    return backend


def _encode(backend, text: str, add_special_tokens: bool, with_offsets: bool, facts: _Facts | None = None):
    """One backend call on the whole text, special-token strings in it split as plain text.

    Truncation/padding left on the backend (a padded ``tokenizer(...)`` call leaves them) are lifted
    for the call and put back, like the special-token switch. Without them, and when the text cannot
    hold a special token's string (none of their first characters is in it), nothing is switched.
    """
    if (
        facts is not None
        and not with_offsets
        and facts.fast_batch
        and backend.truncation is None
        and backend.padding is None
        and not any(map(text.__contains__, facts.special_marks))
    ):
        # positional arguments (is_pretokenized, add_special_tokens): no keyword parsing per text
        return backend.encode_batch_fast([text], False, add_special_tokens)[0]
    with _SWITCHES:  # the switches live on a tokenizer other threads (Streamlit sessions) may share
        truncation, padding, split_before = backend.truncation, backend.padding, backend.encode_special_tokens
        if truncation is not None:
            backend.no_truncation()
        if padding is not None:
            backend.no_padding()
        backend.encode_special_tokens = True
        try:
            if with_offsets or not hasattr(backend, "encode_batch_fast"):
                return backend.encode(text, add_special_tokens=add_special_tokens)
            return backend.encode_batch_fast([text], add_special_tokens=add_special_tokens)[0]
        finally:
            backend.encode_special_tokens = split_before
            if truncation is not None:
                backend.enable_truncation(**truncation)
            if padding is not None:
                backend.enable_padding(**padding)


_SWITCHES = threading.Lock()


class _Facts:
    """What we learned about one backend tokenizer: how its token strings spell bytes; its vocabulary."""

    def __init__(self, backend) -> None:
        decoder, pre, norm = repr(backend.decoder), repr(backend.pre_tokenizer), repr(backend.normalizer)
        self.byte_fallback = "ByteFallback" in decoder or bool(getattr(backend.model, "byte_fallback", False))
        self.metaspace = "▁" in decoder or "Metaspace" in decoder or "Metaspace" in pre
        self.prefix = getattr(backend.model, "continuing_subword_prefix", None) or ""
        if "ByteLevel" in decoder or "ByteLevel" in pre:
            self.kind = "byte_level"
        elif norm == 'Replace(pattern=String(" "), content="▁")' and "Metaspace" not in pre:
            self.kind = "spaces_as_metaspace"  # the normalizer only writes each space as ▁ (Gemma)
        else:
            self.kind = "offsets"
        # Token strings spell the text's own bytes only when nothing rewrites it before the model.
        self.exact_strings = (
            self.kind == "byte_level" and backend.normalizer is None and "add_prefix_space=True" not in pre
        )
        self.misses = 0  # texts in a row whose token bytes did not spell the text
        self._dropped: bytes | None = None
        # A weak reference, alive while used: whoever asks for the facts holds the backend.
        self._backend: Callable[[], Any] = weakref.ref(backend)
        self._vocab: list[str] = []
        self._vocab_bytes: list[bytes] = []  # what each id spells, built on first use (exact kinds only)
        self.fast_batch = hasattr(backend, "encode_batch_fast")  # tokenizers >= 0.20: no offsets computed
        self.special_marks = "".join(  # first characters of the special tokens' strings
            sorted(
                {t.content[0] for t in backend.get_added_tokens_decoder().values() if t.special and t.content}
            )
        )
        # Specials come only from the post-processor (those typed in the text are read as text), and a
        # single-text template puts the same ones before and after every text.
        probe = _encode(backend, "a", True, with_offsets=False)
        own = [i for i, special in enumerate(probe.special_tokens_mask) if not special]
        self.around: tuple[list[int], list[int]] = ([-1], [])  # never matches: the mask decides
        if own and own == list(range(own[0], own[-1] + 1)):
            self.around = (probe.ids[: own[0]], probe.ids[own[-1] + 1 :])
        self.adds_specials = self.around != ([], [])
        # Then the text can be encoded without specials and the template's put around its ids in
        # Python (one post-processing pass less), when that gives what the tokenizer gives (checked).
        self.wraps = False
        if self.around != ([-1], []):
            lead, trail = self.around
            bare = _encode(backend, "a b", False, with_offsets=False).ids
            self.wraps = [*lead, *bare, *trail] == _encode(backend, "a b", True, with_offsets=False).ids

    def real_range(self, ids: list[int]) -> range | None:
        """Positions of the text's own tokens when the specials sit where the template puts them (checked)."""
        lead, trail = self.around
        n = len(ids)
        if n >= len(lead) + len(trail) and ids[: len(lead)] == lead and ids[n - len(trail) :] == trail:
            return range(len(lead), n - len(trail))
        return None

    def tokens_of(self, ids: list[int]) -> list[str]:
        try:
            return list(map(self._vocab.__getitem__, ids))
        except IndexError:  # first call, or tokens were added since
            self._load_vocab(max(ids))
            return list(map(self._vocab.__getitem__, ids))

    def _load_vocab(self, max_id: int) -> None:
        """The id -> token string list, at least ``max_id + 1`` long (ids the listing skips are asked one
        by one)."""
        backend = self._backend()
        vocab: list[str | None] = [None] * (max_id + 1)
        for token, i in backend.get_vocab(with_added_tokens=True).items():
            if i >= len(vocab):
                vocab.extend([None] * (i + 1 - len(vocab)))
            vocab[i] = token
        self._vocab = [t if t is not None else backend.id_to_token(i) or "" for i, t in enumerate(vocab)]
        self._vocab_bytes = []

    def spelling_table(self, max_id: int) -> list[bytes]:
        """The bytes each id spells in the text (``▁`` as a space, ``<0xNN>`` as its byte), by id: built
        on first use, and again when ``max_id`` lies past it (tokens were added since).

        Example:
            >>> _facts(gpt2_backend).spelling_table(995)[995]   # doctest: +SKIP
            b' world'
        """
        if max_id >= len(self._vocab_bytes):
            if max_id >= len(self._vocab):
                self._load_vocab(max_id)
            self._vocab_bytes = [self._spelled(t) for t in self._vocab]
        return self._vocab_bytes

    def _spelled(self, token: str) -> bytes:
        if self.kind == "spaces_as_metaspace":
            return _BYTE_TOKEN.get(token) or token.replace("▁", " ").encode("utf-8", "surrogatepass")
        return self.token_bytes(token) or b""

    @property
    def dropped(self) -> bytes:
        """Bytes a byte-level vocabulary has no token for: the tokenizer silently drops them."""
        if self._dropped is None:
            vocab = self._backend().get_vocab(with_added_tokens=True)
            self._dropped = bytes(b for b, ch in enumerate(BYTE_LEVEL_ALPHABET) if ch not in vocab)
        return self._dropped

    def token_bytes(self, token: str) -> bytes | None:
        """The bytes a token stands for in the text (``None`` when its string cannot say)."""
        if self.kind == "byte_level":
            try:
                return codecs.charmap_encode(token, "strict", _BYTE_LEVEL_ENCODING)[0]
            except UnicodeEncodeError:  # an added token written as plain text
                return token.encode("utf-8", "surrogatepass")
        if self.byte_fallback and token in _BYTE_TOKEN:
            return _BYTE_TOKEN[token]
        if self.prefix and token.startswith(self.prefix) and len(token) > len(self.prefix):
            token = token[len(self.prefix) :]
        if self.metaspace:
            token = token.replace("▁", " ")
        return token.encode("utf-8", "surrogatepass")


_FACTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MAX_MISSES = 8


def _facts(backend) -> _Facts:
    facts = _FACTS.get(backend)
    if facts is None:
        facts = _FACTS[backend] = _Facts(backend)
    return facts


def _backend_and_facts(tokenizer) -> tuple[Any, _Facts]:
    """`_backend` and `_facts` of a tokenizer, remembered while it lives (two look-ups per text add up)."""
    key = id(tokenizer)
    entry = _BY_TOKENIZER.get(key)
    if entry is not None and entry[0]() is tokenizer:
        return entry[1] or tokenizer, entry[2]
    backend = _backend(tokenizer)
    facts = _facts(backend)
    try:
        ref = weakref.ref(tokenizer, functools.partial(_forget, key))
    except TypeError:  # an object without weak references: look it up each time
        return backend, facts
    # A raw backend is not held here (that would keep it alive), only a wrapper's backend.
    _BY_TOKENIZER[key] = [ref, None if backend is tokenizer else backend, facts, None]
    return backend, facts


# id(tokenizer) -> [weak reference, its backend (None: the tokenizer is one), facts, tokenizer_id or None]
_BY_TOKENIZER: dict[int, list] = {}


def _forget(key: int, _dead: object, table: dict[int, list] = _BY_TOKENIZER) -> None:
    """Drop a collected tokenizer's entry. The table is bound at definition: a tokenizer collected while
    the interpreter exits, after this module's globals were cleared, still finds it."""
    table.pop(key, None)


def _exact_spans(facts: _Facts, ids: list[int], source: TextBytes) -> tuple | None:
    """Byte ranges from the tokens' own bytes when, laid end to end, they are exactly the text.

    Fast path: each id's bytes from a table (`spelled_ends`). Then the cases the table cannot tell:
    bytes a byte-level vocabulary drops, a literal ``▁`` in the text of a metaspace tokenizer.
    """
    try:  # the common case: the bytes spell the text
        found = spelled_ends(ids, facts._vocab_bytes, source.data)
    except IndexError:  # first call, or tokens were added since: build the table and ask again
        found = spelled_ends(ids, facts.spelling_table(max(ids)), source.data)
    if found is not None:
        ends, tiles = found
        return (None if tiles else [0, *ends[:-1]]), ends, tiles
    if facts.kind == "byte_level" and facts.dropped:
        pieces = [facts._vocab_bytes[i] for i in ids]
        if b"".join(pieces) == source.data.translate(None, facts.dropped):
            return _around_dropped(pieces, source.data, facts.dropped)
    elif facts.kind == "spaces_as_metaspace" and "▁" in source.text:
        pieces = _metaspace_pieces(facts.tokens_of(ids), source.data)
        if b"".join(pieces) == source.data:
            return _with_starts(list(itertools.accumulate(map(len, pieces))), all(pieces))
    return None


def spelled_ends_python(ids: list[int], table: list[bytes], data: bytes) -> tuple[list[int], bool] | None:
    """``(ends, all_nonempty)`` when the tokens' bytes ``table[id]``, end to end, are exactly ``data``:
    ``ends`` (len(ids),) the running sum of their lengths, ``all_nonempty`` no token spells zero bytes.
    None when they are not ``data``; IndexError for an id outside ``table``. `spelled_ends` is the
    compiled twin when the package was built with a compiler (``sra_viz/_span_ends.c``).

    Example:
        >>> spelled_ends_python([0, 1, 0], [b"ab", b"c"], b"abcab")
        ([2, 3, 5], True)
        >>> spelled_ends_python([0, 1], [b"ab", b"c"], b"abd") is None
        True
    """
    if len(ids) < 2:  # itemgetter gives a bare item for one id
        pieces: Sequence[bytes] = [table[i] for i in ids]
    else:
        pieces = operator.itemgetter(*ids)(table)  # one C loop, no Python step per id
    if b"".join(pieces) != data:
        return None
    return list(itertools.accumulate(map(len, pieces))), all(pieces)


try:  # the same loop in C: one pass, no Python object per token but its end
    from sra_viz._span_ends import spelled_ends
except ImportError:  # the package was built without a compiler
    spelled_ends = spelled_ends_python


def _around_dropped(
    pieces: Sequence[bytes], data: bytes, dropped: bytes
) -> tuple[list[int], list[int], bool]:
    """Byte-level ranges when the tokenizer silently dropped bytes it has no token for.

    A dropped byte between two tokens is left uncovered; one inside a token's bytes is covered by it.
    """
    if not pieces:
        return [], [], False
    keep = np.ones(256, dtype=bool)
    keep[list(dropped)] = False
    kept = np.flatnonzero(keep[np.frombuffer(data, dtype=np.uint8)])  # (K,) bytes some token spells
    sizes = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))  # (R,)
    ends = np.cumsum(sizes)
    return kept[ends - sizes].tolist(), (kept[ends - 1] + 1).tolist(), False


def _metaspace_pieces(tokens: list[str], data: bytes) -> list[bytes]:
    """Token bytes when the text holds a literal ``▁``: each ``▁`` is whichever the text has there."""
    pieces, cursor = [], 0
    for token in tokens:
        piece = _BYTE_TOKEN.get(token) or token.replace("▁", " ").encode()
        if "▁" in token and not data.startswith(piece, cursor):
            piece = b""
            for ch in token:
                literal = ch.encode()
                piece += literal if ch != "▁" or data.startswith(piece + literal, cursor) else b" "
        pieces.append(piece)
        cursor += len(piece)
    return pieces


_BYTE_TOKEN = {f"<0x{b:02X}>": bytes((b,)) for b in range(256)}  # SentencePiece byte fallback


def _with_starts(ends: list[int], tiles: bool) -> tuple[list[int] | None, list[int], bool]:
    """Ranges of tokens laid end to end; the third item marks a tiling with no empty token, whose
    starts (``[0, *ends[:-1]]``) are left to `ByteEncoding.starts` (None here)."""
    return (None if tiles else [0, *ends[:-1]] if ends else []), ends, tiles


def _offset_spans(
    offsets, real, tokens, source: TextBytes, facts: _Facts
) -> tuple[list[int], list[int], bool]:
    """Byte ranges from character offsets, repaired where tokens share bytes or border a gap."""
    offs = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[np.asarray(real, dtype=np.int64)]  # (R, 2)
    if not source.ascii:
        offs = source.char_to_byte[offs]
    starts, ends = offs[:, 0].copy(), offs[:, 1].copy()
    if len(real):
        _repair(starts, ends, source.data, tokens, facts)
    return starts.tolist(), ends.tolist(), False


def _repair(
    starts: np.ndarray, ends: np.ndarray, text_bytes: bytes, tokens: list[str], facts: _Facts
) -> None:
    """Give tokens that share bytes, or leave bytes between them, their own bytes (in place).

    A word-prefix piece the tokenizer inserted (a lone ``▁`` or ``Ġ`` whose offsets it shares with
    the next token) gets no bytes. A token is then checked when its range does not meet its
    neighbours' exactly (every token of an exact byte-level tokenizer: it only lands here when it
    dropped bytes, and then its offsets drift). A checked token takes its own bytes where they match
    the text at the running cursor, otherwise its offsets clipped to the cursor: of several tokens
    sharing one character, the first takes it and the others sit empty at its end. The result is monotone.
    """
    exact = facts.exact_strings
    if exact:
        suspects: Sequence[int] = range(len(starts))
    else:
        _empty_inserted(starts, ends, tokens, facts)
        prev_end = np.concatenate(([0], ends[:-1]))  # (R,)
        next_start = np.concatenate((starts[1:], [len(text_bytes)]))
        suspects = np.flatnonzero((starts != prev_end) | (ends != next_start) | (ends <= starts)).tolist()
    for i in suspects:
        cursor = int(ends[i - 1]) if i else 0
        lo, hi = int(starts[i]), int(ends[i])
        starts[i], ends[i] = _place(facts.token_bytes(tokens[i]), text_bytes, cursor, lo, hi, exact)
    # Keep a clean order even where a token's string and offsets both disagree with the text.
    np.maximum.accumulate(ends, out=ends)
    np.maximum(starts, np.concatenate(([0], ends[:-1])), out=starts)
    np.maximum(ends, starts, out=ends)


def _empty_inserted(starts: np.ndarray, ends: np.ndarray, tokens: list[str], facts: _Facts) -> None:
    """A token made only of word-prefix marks gives up the bytes it shares with the next token (in place).

    Metaspace (prepend scheme "always"/"first") and ByteLevel(add_prefix_space) write a ``▁``/``Ġ`` the
    text does not hold and give it the offsets of the character it precedes: ``"!!!"`` becomes
    ``▁`` (0, 1) + ``!!!`` (0, 3). The inserted piece ends up empty at that character's start.
    """
    shared = np.flatnonzero(starts[1:] < ends[:-1])  # (S,) tokens whose range runs into the next one's
    for i in shared.tolist():
        content = facts.token_bytes(tokens[i])
        if content and not content.strip(b" "):
            ends[i] = max(starts[i], starts[i + 1])


def _place(content: bytes | None, data: bytes, cursor: int, lo: int, hi: int, exact: bool) -> tuple[int, int]:
    """Byte range of one token: its own bytes at the cursor, else its offsets clipped to the cursor.

    Starting at the cursor covers a leading space that trimmed offsets leave out. An ``exact`` string
    (byte-level, byte fallback) may also sit inside its offsets or a little past them: the bytes
    skipped are ones the tokenizer dropped, which no token can contain. A string a normalizer
    rewrote may only widen its offsets back to the cursor, never narrow them (``e`` + U+0301 is one
    token ``e`` in an accent-stripping tokenizer).
    """
    if content:
        size = len(content)
        if exact:
            if cursor < max(hi, lo + 1) and cursor + size > lo and data.startswith(content, cursor):
                return cursor, cursor + size
            found = data.find(content, cursor, max(hi, cursor + size) + _DROP_WINDOW)
            if found >= 0:
                return found, found + size
        elif cursor <= lo and cursor + size == hi and data.startswith(content, cursor):
            return cursor, hi
    start = max(lo, cursor)
    return start, max(hi, start)


_DROP_WINDOW = 64  # bytes an exact token string is looked for past its offsets


def _byte_level_alphabet() -> str:
    """The 256 printable characters byte-level BPE (GPT-2) writes bytes 0..255 as, in byte order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return "".join(table[b] for b in range(256))


BYTE_LEVEL_ALPHABET = _byte_level_alphabet()
_BYTE_LEVEL_ENCODING = codecs.charmap_build(BYTE_LEVEL_ALPHABET)


_TOKENIZER_IDS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def tokenizer_id(tokenizer: Any) -> str:
    """A short name for a tokenizer and its vocabulary, ``"<name>#<hash of the vocab>"``; computed once
    per tokenizer object. Two tokenizers with the same vocabulary have the same id.

    Example:
        >>> tokenizer_id(load_tokenizer("smollm2-135m"))  # doctest: +SKIP
        'smollm2-135m#5f0e4d1c2a'
    """
    entry = _BY_TOKENIZER.get(id(tokenizer))  # a tokenizer `encode_bytes` has seen: no weak-key look-up
    if entry is not None and entry[3] is not None and entry[0]() is tokenizer:
        return entry[3]
    try:
        found = _TOKENIZER_IDS[tokenizer]
    except (KeyError, TypeError):
        found = _vocab_name(tokenizer)
        try:
            _TOKENIZER_IDS[tokenizer] = found
        except TypeError:  # not weak-referenceable: computed again next time
            pass
    if entry is not None and entry[0]() is tokenizer:
        entry[3] = found
    return found


def _vocab_name(tokenizer: Any) -> str:
    """``"<name>#<first 10 hex digits of the sha1 of the vocabulary's index<TAB>token lines>"``."""
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha1(usedforsecurity=False)
    for token, index in sorted(vocab.items(), key=lambda item: item[1]):
        digest.update(f"{index}\t{token}\n".encode("utf-8", "surrogatepass"))
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__).rstrip("/")
    return f"{name.rsplit('/', 1)[-1]}#{digest.hexdigest()[:10]}"
