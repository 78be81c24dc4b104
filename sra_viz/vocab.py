"""The shared vocabulary V∩ of two tokenizers: tokens that stand for the same text on both sides.

SRA's span logit distillation compares the teacher's and the student's next-token distributions on
the tokens both vocabularies hold. Token *strings* are spelled differently by different tokenizer
families even when they mean the same text: byte-level BPE writes " the" as ``Ġthe`` (every byte
mapped to a printable character), SentencePiece-style BPE writes it ``▁the`` and has byte-fallback
tokens ``<0xE2>``. So two tokens match here when they **decode to the same UTF-8 bytes**
(our choice, documented in docs/METHOD.md):

* byte-level BPE (GPT-2, SmolLM2, Qwen...): each character maps back to its byte;
* SentencePiece-style (Gemma, Llama-2...): ``▁`` is a space; ``<0xNN>`` is the single byte NN;
* WordPiece: ``##x`` is the continuation ``x``; other tokens are taken as they are;
* anything else: the token string itself. Special tokens (BOS, EOS, pad, unused...) never match.

When several tokens of one side decode to the same bytes (``a`` and ``<0x61>``), the one with the
smallest id is kept, so V∩ is one-to-one. V∩ is computed once per tokenizer pair and cached in
memory and on disk under ``sra_viz.paths.home()/vocab/`` keyed by a hash of both vocabularies.

Example:
    >>> shared = shared_vocab(teacher_tokenizer, student_tokenizer)  # doctest: +SKIP
    >>> len(shared), shared.teacher_ids[:3], shared.student_ids[:3]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import paths
from .errors import SraVizError

_VERSION = "v1"  # bump when the matching rule changes: old cache files are then ignored
_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_MEMORY: dict[str, SharedVocab] = {}
_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> vocab_hash


@dataclass
class SharedVocab:
    """Index tensors into both vocabularies: ``teacher_ids[i]`` and ``student_ids[i]`` are the same text."""

    teacher_ids: torch.Tensor  # (V∩,) long, ascending teacher ids
    student_ids: torch.Tensor  # (V∩,) long
    key: str  # hash of both vocabularies and of the matching rule

    def __len__(self) -> int:
        return int(self.teacher_ids.numel())

    def to(self, device: Any) -> SharedVocab:
        return SharedVocab(self.teacher_ids.to(device), self.student_ids.to(device), self.key)


def _bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable character table of byte-level BPE (printable bytes map to themselves)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, extra = {}, 0
    for byte in range(256):
        if byte in keep:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


_UNICODE_TO_BYTE = {char: byte for byte, char in _bytes_to_unicode().items()}


def tokenizer_family(tokenizer: Any) -> str:
    """How a fast tokenizer spells its tokens: "byte_level", "metaspace", "wordpiece" or "plain".

    Example:
        >>> tokenizer_family(student_tokenizer)  # doctest: +SKIP
        'byte_level'
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise SraVizError(f"{type(tokenizer).__name__} is not a fast tokenizer; V∩ needs a tokenizer.json")
    parts = f"{backend.decoder!r} {backend.pre_tokenizer!r}"  # reprs are cheap; to_str() is 33 MB for Gemma
    if "ByteLevel" in parts:
        return "byte_level"
    if type(backend.model).__name__ == "WordPiece":
        return "wordpiece"
    if "\u2581" in parts or "Metaspace" in parts:
        return "metaspace"
    return "plain"


def token_bytes(token: str, family: str) -> bytes | None:
    """The UTF-8 bytes a vocabulary entry stands for, or None when it cannot be read that way.

    Example:
        >>> token_bytes("Ġthe", "byte_level"), token_bytes("▁the", "metaspace")
        (b' the', b' the')
        >>> token_bytes("<0x41>", "metaspace")
        b'A'
    """
    if family == "byte_level":
        try:
            return bytes(_UNICODE_TO_BYTE[ch] for ch in token)
        except KeyError:  # an added token written as plain text
            return token.encode("utf-8")
    if family == "metaspace":
        match = _BYTE_FALLBACK.match(token)
        if match:
            return bytes([int(match.group(1), 16)])
        return token.replace("\u2581", " ").encode("utf-8")
    if family == "wordpiece":
        return (token[2:] if token.startswith("##") and len(token) > 2 else token).encode("utf-8")
    return token.encode("utf-8")


def special_ids(tokenizer: Any) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(token_id))
    return ids


def _keyed(tokenizer: Any) -> dict[bytes, int]:
    """bytes -> smallest token id decoding to them, special tokens left out."""
    family = tokenizer_family(tokenizer)
    special = special_ids(tokenizer)
    out: dict[bytes, int] = {}
    for token, token_id in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        if token_id in special:
            continue
        key = token_bytes(token, family)
        if key and key not in out:
            out[key] = token_id
    return out


def vocab_hash(tokenizer: Any) -> str:
    """SHA-256 of a tokenizer's vocabulary, specials and family (what V∩ depends on).

    Example:
        >>> len(vocab_hash(student_tokenizer))  # doctest: +SKIP
        64
    """
    try:
        return _HASHES[tokenizer]
    except (KeyError, TypeError):
        pass
    digest = hashlib.sha256()
    digest.update(tokenizer_family(tokenizer).encode())
    digest.update(json.dumps(sorted(special_ids(tokenizer))).encode())
    for token, token_id in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        digest.update(f"{token_id}\x00{token}\x01".encode("utf-8", "surrogatepass"))
    result = digest.hexdigest()
    try:
        _HASHES[tokenizer] = result
    except TypeError:  # not weak-referenceable: hash again next time
        pass
    return result


def _pair_key(teacher_tokenizer: Any, student_tokenizer: Any) -> str:
    both = f"{_VERSION}:{vocab_hash(teacher_tokenizer)}:{vocab_hash(student_tokenizer)}"
    return hashlib.sha256(both.encode()).hexdigest()[:32]


def compute_shared_vocab(teacher_tokenizer: Any, student_tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    """V∩ without any cache: (teacher ids, student ids), int64, sorted by teacher id.

    Example:
        >>> t_ids, s_ids = compute_shared_vocab(gpt2_tokenizer, gpt2_tokenizer)  # doctest: +SKIP
        >>> bool((t_ids == s_ids).all())  # doctest: +SKIP
        True
    """
    teacher, student = _keyed(teacher_tokenizer), _keyed(student_tokenizer)
    pairs = sorted((t_id, student[key]) for key, t_id in teacher.items() if key in student)
    if not pairs:
        raise SraVizError(
            "the teacher and student vocabularies share no token (compared as decoded bytes); "
            "span logit KD and exact-token KD need a shared vocabulary: turn them off (use_kd=False)"
        )
    arr = np.asarray(pairs, dtype=np.int64)  # (V∩, 2)
    return arr[:, 0].copy(), arr[:, 1].copy()


def _write_atomic(path, teacher_ids: np.ndarray, student_ids: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".vocab.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, teacher_ids=teacher_ids, student_ids=student_ids)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def shared_vocab(teacher_tokenizer: Any, student_tokenizer: Any, *, use_disk: bool = True) -> SharedVocab:
    """V∩ of a tokenizer pair, computed once and cached (memory + ``home()/vocab/<hash>.npz``).

    Example:
        >>> shared = shared_vocab(pair.teacher.tokenizer, pair.student.tokenizer)  # doctest: +SKIP
        >>> pair.teacher.tokenizer.convert_ids_to_tokens(shared.teacher_ids[:2].tolist())  # doctest: +SKIP
    """
    key = _pair_key(teacher_tokenizer, student_tokenizer)
    if key in _MEMORY:
        return _MEMORY[key]
    path = paths.home() / "vocab" / f"{key}.npz"
    arrays = None
    if use_disk and path.is_file():
        try:
            with np.load(path) as data:
                arrays = data["teacher_ids"], data["student_ids"]
        except (OSError, ValueError, KeyError):  # a damaged cache file is recomputed
            arrays = None
    if arrays is None:
        arrays = compute_shared_vocab(teacher_tokenizer, student_tokenizer)
        if use_disk:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, *arrays)
    result = SharedVocab(torch.from_numpy(arrays[0]), torch.from_numpy(arrays[1]), key)
    _MEMORY[key] = result
    return result
