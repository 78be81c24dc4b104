"""MinED, the token-level baseline that pairs tokens by edit distance (the SRA paper compares against it).

MinED (introduced for knowledge fusion of LLMs) works on token *strings*, not on byte-exact spans:

1. **Token texts**: each token's own text, cut from the input by its byte span (special tokens: "").
2. **Alignment**: dynamic time warping over the two token-text lists with cost ``c(i, j)`` = the
   Levenshtein distance of teacher text i and student text j::

       D[i, j] = c(i, j) + min(D[i−1, j−1], D[i−1, j], D[i, j−1])

   backtracked from the last pair (a diagonal step wins ties). A path cell whose teacher row and student
   column each occur once on the path is a **one-to-one pair**; only those are distilled.
3. **Vocabulary map**: a teacher token maps to the student token whose text is nearest in edit
   distance (an identical text first, so the shared vocabulary V∩ maps onto itself). Computed on
   demand and cached per tokenizer pair for the session (the teacher has 262k entries; a batch uses a
   few hundred).
4. **Loss** at each one-to-one pair, on the positions that predict the two tokens: the teacher's
   top-k next-token probabilities at τ, moved to their mapped student ids (summed where two land on
   one id) and renormalised, p̃_T; then ``L_mined = (1/M) Σ_m KL(p̃_T,m ‖ softmax(z^S_m/τ))``
   (:func:`sra_viz.losses.target_kd`).

Where sra_viz differs from the sources (which give the idea, not every constant): the token texts come
from byte spans (so the markers ``Ġ``/``▁`` and byte-fallback pieces are already text), and the
teacher's distribution is truncated to its top ``MINED_TOP_K`` tokens before mapping [ours].

Example:
    >>> edit_distance_pairs(["The", " cat", " sat"], ["Th", "e", " cat", " sat"])
    [(1, 2), (2, 3)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from .tokenization import TokenizedText
from .vocab import special_ids, token_bytes, tokenizer_family

MINED_TOP_K = 32  # teacher tokens kept per position before mapping (their mass is renormalised) [ours]
UNMAPPED = -1  # a teacher id with no student counterpart (special tokens): its mass is dropped


def token_texts(tokenized: TokenizedText) -> list[str]:
    """The text of each token, cut from the input by its UTF-8 byte span ("" for special tokens).

    A token that holds part of a multi-byte character shows the bytes it has, decoded with
    replacement characters (it still costs edits against its counterpart)."""
    data = tokenized.text.encode("utf-8")
    return [
        "" if span is None else data[span[0] : span[1]].decode("utf-8", errors="replace")
        for span in tokenized.byte_spans
    ]


def edit_distance_pairs(teacher: Sequence[str], student: Sequence[str]) -> list[tuple[int, int]]:
    """One-to-one ``(teacher index, student index)`` pairs of the minimum-edit-distance DTW path.

    See the module docstring for the recurrence. O(n·m) distances (rapidfuzz, in C) and an O(n·m)
    dynamic programme.
    Example:
        >>> edit_distance_pairs(["a", "b"], ["a", "b"])
        [(0, 0), (1, 1)]
    """
    n, m = len(teacher), len(student)
    if n == 0 or m == 0:
        return []
    cost = process.cdist(list(teacher), list(student), scorer=Levenshtein.distance, dtype=np.int32)
    total = np.full((n + 1, m + 1), np.iinfo(np.int64).max // 4, dtype=np.int64)
    total[0, 0] = 0
    rows = cost.tolist()
    table = total.tolist()  # plain lists: the loop below is ~10x faster than on numpy scalars
    for i in range(1, n + 1):
        row_cost, above, here = rows[i - 1], table[i - 1], table[i]
        for j in range(1, m + 1):
            best = above[j - 1]
            if above[j] < best:
                best = above[j]
            if here[j - 1] < best:
                best = here[j - 1]
            here[j] = row_cost[j - 1] + best
    path = []
    i, j = n, m
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        diagonal, up, left = table[i - 1][j - 1], table[i - 1][j], table[i][j - 1]
        if diagonal <= up and diagonal <= left:
            i, j = i - 1, j - 1
        elif up <= left:
            i -= 1
        else:
            j -= 1
    path.reverse()
    rows_used = np.bincount([p[0] for p in path], minlength=n)
    cols_used = np.bincount([p[1] for p in path], minlength=m)
    return [(a, b) for a, b in path if rows_used[a] == 1 and cols_used[b] == 1]


class VocabMap:
    """Teacher id -> student id by minimum edit distance of the two tokens' texts, cached.

    Example:
        >>> vmap = VocabMap(teacher_tokenizer, student_tokenizer)  # doctest: +SKIP
        >>> vmap.student_ids(torch.tensor([[2, 506]]))  # doctest: +SKIP
        tensor([[-1, 279]])
    """

    def __init__(self, teacher_tokenizer: Any, student_tokenizer: Any) -> None:
        self._teacher_tokenizer = teacher_tokenizer
        self._teacher_family = tokenizer_family(teacher_tokenizer)
        self._teacher_special = special_ids(teacher_tokenizer)
        family = tokenizer_family(student_tokenizer)
        special = special_ids(student_tokenizer)
        vocab = student_tokenizer.get_vocab()  # token string -> id
        size = max(vocab.values()) + 1
        texts = [""] * size  # student id -> text ("" for special or unreadable entries)
        for token, token_id in vocab.items():
            raw = token_bytes(token, family)
            if token_id not in special and raw:
                texts[token_id] = raw.decode("utf-8", errors="replace")
        self._student_texts = texts
        self._by_text: dict[str, int] = {}
        for token_id, text in enumerate(texts):
            if text and text not in self._by_text:
                self._by_text[text] = token_id  # the smallest id of a text, as in V∩
        self._cache: dict[int, int] = {}

    def _teacher_text(self, token_id: int) -> str:
        if token_id in self._teacher_special:
            return ""
        token = self._teacher_tokenizer.convert_ids_to_tokens(token_id)
        raw = token_bytes(token, self._teacher_family) if token is not None else None
        return raw.decode("utf-8", errors="replace") if raw else ""

    def student_id(self, teacher_id: int) -> int:
        """The student id nearest to ``teacher_id``'s text, or ``UNMAPPED``."""
        if teacher_id not in self._cache:
            text = self._teacher_text(teacher_id)
            if not text:
                self._cache[teacher_id] = UNMAPPED
            elif text in self._by_text:
                self._cache[teacher_id] = self._by_text[text]
            else:
                _, _, index = process.extractOne(text, self._student_texts, scorer=Levenshtein.distance)
                self._cache[teacher_id] = int(index)
        return self._cache[teacher_id]

    def student_ids(self, teacher_ids: torch.Tensor) -> torch.Tensor:
        """``teacher_ids`` (any shape) mapped element-wise; same shape, ``UNMAPPED`` where none."""
        flat = [self.student_id(int(t)) for t in teacher_ids.reshape(-1).tolist()]
        return torch.tensor(flat, dtype=torch.long, device=teacher_ids.device).reshape(teacher_ids.shape)


def mapped_teacher_target(
    teacher_logits: torch.Tensor, vocab_map: VocabMap, n_student: int, tau: float, top_k: int = MINED_TOP_K
) -> torch.Tensor:
    """p̃_T: the teacher's top-k distribution at τ moved onto the student vocabulary, (M, V_S).

    ``teacher_logits`` (M, V_T): softmax at τ, top ``top_k`` ids mapped to the student vocabulary
    (``n_student`` entries) and summed where two land on one id; mass on unmapped ids is dropped and
    each row renormalised to 1. No gradient.
    """
    with torch.no_grad():
        probs = torch.softmax(teacher_logits.float() / tau, dim=-1)  # (M, V_T)
        top_p, top_ids = probs.topk(min(top_k, probs.shape[-1]), dim=-1)  # (M, k)
        student = vocab_map.student_ids(top_ids.cpu()).to(top_ids.device)  # (M, k)
        keep = (student >= 0) & (student < n_student)
        top_p = torch.where(keep, top_p, torch.zeros_like(top_p))
        target = top_p.new_zeros((top_p.shape[0], n_student))  # (M, V_S)
        target.scatter_add_(1, torch.where(keep, student, torch.zeros_like(student)), top_p)
        return target / target.sum(-1, keepdim=True).clamp_min(torch.finfo(target.dtype).tiny)
