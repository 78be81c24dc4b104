"""The bytes of each token from its string alone, written independently of sra_viz.

Used by the tokenization tests and by ``benchmarks/bench_align.py`` to judge byte spans and alignments
against something sra_viz did not compute.
"""

from __future__ import annotations

from transformers.convert_slow_tokenizer import bytes_to_unicode

BYTE_OF = {ch: b for b, ch in bytes_to_unicode().items()}


def token_pieces(tokenizer, tokens: list[str], text: str) -> list[bytes] | None:
    """Each real token's bytes (None for WordPiece, which rewrites the text it covers).

    Byte-level tokens go through GPT-2's byte table; ``<0xNN>`` is one byte; ``▁`` is a space unless
    the text holds a literal ``▁`` at that point.

        >>> from types import SimpleNamespace as NS
        >>> tok = NS(backend_tokenizer=NS(decoder="ByteLevel()"))
        >>> token_pieces(tok, ["Hello", "Ġworld"], "Hello world")
        [b'Hello', b' world']
    """
    decoder = repr(tokenizer.backend_tokenizer.decoder)
    if "WordPiece" in decoder:
        return None
    data, cursor, out = text.encode(), 0, []
    for tok in tokens:
        if "ByteLevel" in decoder and all(c in BYTE_OF for c in tok):
            piece = bytes(BYTE_OF[c] for c in tok)
        elif len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
            piece = bytes([int(tok[3:5], 16)])
        else:
            piece = b""
            for ch in tok:
                literal = ch.encode()
                piece += b" " if ch == "▁" and not data.startswith(piece + literal, cursor) else literal
        out.append(piece)
        cursor += len(piece)
    return out
