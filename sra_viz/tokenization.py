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
   ``[UNK]``) the tokenizer's character offsets are turned into byte offsets; a token that shares
   bytes with a neighbour or borders a gap takes its own bytes where its string matches the text,
   else keeps its whole-character offsets (exact to the character for such tokenizers).

Special tokens the tokenizer inserts get no byte range; special-token *strings* typed in the text
are tokenized as text (the backend's ``encode_special_tokens`` switch, put back after each call).
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

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

    @property
    def special(self) -> list[bool]:
        """``True`` for the special tokens the tokenizer inserted (they belong to no span)."""
        return [span is None for span in self.byte_spans]

    def __len__(self) -> int:
        return len(self.ids)


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
        self.text, self.data, self._char_to_byte = text, _utf8(text), None

    @property
    def ascii(self) -> bool:
        return len(self.data) == len(self.text)

    @property
    def char_to_byte(self) -> np.ndarray:
        """``(len(text) + 1,)`` int64 byte offset of every character boundary."""
        if self._char_to_byte is None:
            self._char_to_byte = char_to_byte_table(self.text)
        return self._char_to_byte


@dataclass
class ByteEncoding:
    """`TokenizedText` plus the plain lists the aligner works on (real = non-special tokens)."""

    tokenized: TokenizedText
    real: range | list[int]  # (R,) positions in ids of the non-special tokens
    starts: list[int]  # (R,) byte start of each real token, non-decreasing
    ends: list[int]  # (R,) byte end; ends[i] <= starts[i + 1]
    tiles: bool = False  # the tokens' bytes, end to end, are exactly the text (no gap, no overlap)


def encode_bytes(text: str | TextBytes, tokenizer, add_special_tokens: bool = True) -> ByteEncoding:
    """`tokenize_bytes` with the lists the aligner uses (pass a `TextBytes` to share it between sides).

    Example:
        >>> enc = encode_bytes("hello", gpt2_tokenizer)          # doctest: +SKIP
        >>> enc.starts, enc.ends                                 # doctest: +SKIP
        ([0], [5])
    """
    source = text if isinstance(text, TextBytes) else TextBytes(text)
    backend = _backend(tokenizer)
    facts = _facts(backend)
    spans = None
    if facts.kind != "offsets" and facts.misses < _MAX_MISSES:
        enc = _encode(backend, source.text, add_special_tokens, with_offsets=False)
        ids = enc.ids
        real = _real_positions(enc.special_tokens_mask)
        tokens = facts.tokens_of(ids)
        spans = _exact_spans(facts, _pick(tokens, real), source)
        # A tokenizer that keeps altering text (a normalizer) soon goes straight to offsets.
        facts.misses = 0 if spans is not None else facts.misses + 1
    if spans is None:
        enc = _encode(backend, source.text, add_special_tokens, with_offsets=True)
        ids, tokens = enc.ids, enc.tokens
        real = _real_positions(enc.special_tokens_mask)
        spans = _offset_spans(enc.offsets, real, _pick(tokens, real), source, facts)
    starts, ends, tiles = spans
    if isinstance(real, range):
        byte_spans = (
            [None] * real.start + list(zip(starts, ends, strict=True)) + [None] * (len(ids) - real.stop)
        )
    else:
        byte_spans = [None] * len(ids)
        for i, s, e in zip(real, starts, ends, strict=True):
            byte_spans[i] = (s, e)
    return ByteEncoding(TokenizedText(source.text, ids, tokens, byte_spans), real, starts, ends, tiles)


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
    return items[real.start : real.stop] if isinstance(real, range) else [items[i] for i in real]


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
            f"text has a lone surrogate {text[err.start : err.end]!r} at character {err.start}: "
            "give valid Unicode (decode your bytes with errors='replace')"
        ) from None


def _backend(tokenizer):
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", True):
        raise SraVizError(
            f"tokenizer {type(tokenizer).__name__} has no character offsets (a slow tokenizer): "
            "load a fast one, e.g. AutoTokenizer.from_pretrained(path, use_fast=True) or sra_viz.models.load_tokenizer"
        )
    return backend


def _encode(backend, text: str, add_special_tokens: bool, with_offsets: bool):
    """One backend call on the whole text, special-token strings in it split as plain text.

    Truncation/padding left on the backend (a padded ``tokenizer(...)`` call leaves them) are lifted
    for the call and put back, like the special-token switch.
    """
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
        self.metaspace = "▁" in decoder or "Metaspace" in decoder
        self.prefix = getattr(backend.model, "continuing_subword_prefix", None) or ""
        if "ByteLevel" in decoder or "ByteLevel" in pre:
            self.kind = "byte_level"
        elif norm == 'Replace(pattern=String(" "), content="▁")' and "Metaspace" not in pre:
            self.kind = "spaces_as_metaspace"  # the normalizer only writes each space as ▁ (Gemma)
        else:
            self.kind = "offsets"
        self.misses = 0  # texts in a row whose token bytes did not spell the text
        self._dropped: bytes | None = None
        # A weak reference, alive while used: whoever asks for the facts holds the backend.
        self._backend: Callable[[], Any] = weakref.ref(backend)
        self._vocab: list[str | None] = []

    def tokens_of(self, ids: list[int]) -> list[str]:
        try:
            tokens = list(map(self._vocab.__getitem__, ids))
        except IndexError:  # first call, or tokens were added since
            self._load_vocab(max(ids))
            tokens = list(map(self._vocab.__getitem__, ids))
        if None in tokens:  # an id the vocabulary listing skipped
            backend = self._backend()
            tokens = [
                t if t is not None else backend.id_to_token(i) or "" for t, i in zip(tokens, ids, strict=True)
            ]
        return cast("list[str]", tokens)

    def _load_vocab(self, max_id: int) -> None:
        """The id -> token string list (``None`` where an id has no entry), at least ``max_id + 1`` long."""
        vocab: list[str | None] = [None] * (max_id + 1)
        for token, i in self._backend().get_vocab(with_added_tokens=True).items():
            if i >= len(vocab):
                vocab.extend([None] * (i + 1 - len(vocab)))
            vocab[i] = token
        self._vocab = vocab

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


def _exact_spans(facts: _Facts, tokens: list[str], source: TextBytes) -> tuple | None:
    """Byte ranges from the tokens' own bytes when, laid end to end, they are exactly the text."""
    joined = "".join(tokens)
    if facts.kind == "byte_level":
        try:
            spelled = codecs.charmap_encode(joined, "strict", _BYTE_LEVEL_ENCODING)[0]
        except UnicodeEncodeError:  # an added token written as plain text
            spelled = None
        if spelled == source.data:  # one character per byte
            return _with_starts(list(itertools.accumulate(map(len, tokens))))
        if spelled is not None and facts.dropped and spelled == source.data.translate(None, facts.dropped):
            return _around_dropped(tokens, source.data, facts.dropped)
    elif facts.kind == "spaces_as_metaspace" and joined == source.text.replace(" ", "▁"):
        # Token characters match text characters one to one (▁ standing for a space).
        if source.ascii:
            ends = list(itertools.accumulate(map(len, tokens)))
        elif "▁" not in source.text:
            ends = list(itertools.accumulate(len(t.encode()) - 2 * t.count("▁") for t in tokens))
        else:
            ends = source.char_to_byte[list(itertools.accumulate(map(len, tokens)))].tolist()
        return _with_starts(ends)
    pieces: Sequence[bytes | None]
    if facts.kind == "spaces_as_metaspace":  # with byte-fallback pieces: spell each token out
        if "▁" in source.text:
            pieces = _metaspace_pieces(tokens, source.data)
        else:
            pieces = [_BYTE_TOKEN.get(t) or t.replace("▁", " ").encode() for t in tokens]
    else:
        pieces = [facts.token_bytes(t) for t in tokens]
    if None in pieces or b"".join(cast("Sequence[bytes]", pieces)) != source.data:
        return None
    return _with_starts(list(itertools.accumulate(map(len, cast("Sequence[bytes]", pieces)))))


def _around_dropped(tokens: list[str], data: bytes, dropped: bytes) -> tuple[list[int], list[int], bool]:
    """Byte-level ranges when the tokenizer silently dropped bytes it has no token for.

    A dropped byte between two tokens is left uncovered; one inside a token's bytes is covered by it.
    """
    if not tokens:
        return [], [], False
    keep = np.ones(256, dtype=bool)
    keep[list(dropped)] = False
    kept = np.flatnonzero(keep[np.frombuffer(data, dtype=np.uint8)])  # (K,) bytes some token spells
    sizes = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))  # (R,)
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


def _with_starts(ends: list[int]) -> tuple[list[int], list[int], bool]:
    """Ranges of tokens laid end to end; the third item marks an exact tiling of the text."""
    return ([0, *ends[:-1]] if ends else []), ends, True


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

    A token is checked when its range does not meet its neighbours' exactly (every token, for a
    byte-level tokenizer: it only lands here when it dropped bytes, and then its offsets drift). A checked token takes its own bytes where they match the text at the running
    cursor or just after, otherwise its offsets clipped to the cursor. The result is monotone.
    """
    exact_strings = facts.kind == "byte_level"
    if exact_strings:
        suspects: Sequence[int] = range(len(starts))
    else:
        prev_end = np.concatenate(([0], ends[:-1]))  # (R,)
        next_start = np.concatenate((starts[1:], [len(text_bytes)]))
        suspects = np.flatnonzero((starts != prev_end) | (ends != next_start) | (ends <= starts)).tolist()
    for i in suspects:
        cursor = int(ends[i - 1]) if i else 0
        lo, hi = int(starts[i]), int(ends[i])
        starts[i], ends[i] = _place(facts.token_bytes(tokens[i]), text_bytes, cursor, lo, hi, exact_strings)
    # Keep a clean order even where a token's string and offsets both disagree with the text.
    np.maximum.accumulate(ends, out=ends)
    np.maximum(starts, np.concatenate(([0], ends[:-1])), out=starts)
    np.maximum(ends, starts, out=ends)


def _place(content: bytes | None, data: bytes, cursor: int, lo: int, hi: int, exact: bool) -> tuple[int, int]:
    """Byte range of one token: its own bytes at the cursor, else the first match in its offsets.

    Starting at the cursor covers a leading space that trimmed offsets leave out. An ``exact`` string
    (byte-level, byte fallback) is also looked for a little past its offsets: the bytes skipped are
    ones the tokenizer dropped, which no token can contain.
    """
    if content:
        size = len(content)
        if cursor < max(hi, lo + 1) and cursor + size > lo and data.startswith(content, cursor):
            return cursor, cursor + size
        start = cursor if exact else max(lo, cursor)
        found = data.find(content, start, max(hi, start + size) + (_DROP_WINDOW if exact else 0))
        if found >= 0:
            return found, found + size
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
    try:
        return _TOKENIZER_IDS[tokenizer]
    except (KeyError, TypeError):
        pass
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha1(usedforsecurity=False)
    for token, index in sorted(vocab.items(), key=lambda item: item[1]):
        digest.update(f"{index}\t{token}\n".encode("utf-8", "surrogatepass"))
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__).rstrip("/")
    found = f"{name.rsplit('/', 1)[-1]}#{digest.hexdigest()[:10]}"
    try:
        _TOKENIZER_IDS[tokenizer] = found
    except TypeError:  # not weak-referenceable: computed again next time
        pass
    return found
