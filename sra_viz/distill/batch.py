"""From text examples to the padded index tensors one distillation step needs.

Each example is aligned once (spans, both tokenizations; cached by the session) and truncated to
``max_length`` tokens per side; a span counts only when it fits on both sides. Positions below are
token indices into each side's own (unpadded) id list; :func:`collate` pads them exactly as
:func:`sra_viz.forward.forward_features` pads the ids (each tokenizer's own padding side).

Example:
    >>> item = prepare_example(example, teacher_tok, student_tok, max_length=64)  # doctest: +SKIP
    >>> batch = collate([item], "left", "right")  # doctest: +SKIP
    >>> batch.teacher_span.shape, batch.span_valid.shape  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..alignment import align_spans
from ..mined import edit_distance_pairs, token_texts

SIDES = ("teacher", "student")


@dataclass
class PreparedExample:
    """One aligned, truncated text: ids, span of every token, where the labels start, one-token spans."""

    teacher_ids: list[int]
    student_ids: list[int]
    teacher_span: np.ndarray  # (L_T,) int64 span index per token, -1 = none
    student_span: np.ndarray  # (L_S,)
    n_spans: int  # spans that fit on both sides
    span_texts: list[str]
    teacher_label_start: int  # first teacher token that is a training target (>= 1)
    student_label_start: int
    exact_pairs: list[tuple[int, int]]  # (teacher pos, student pos) of spans one token on both sides
    # (teacher pos, student pos) of MinED's one-to-one edit-distance pairs among the labels (method mined)
    mined_pairs: list[tuple[int, int]] = field(default_factory=list)

    def ids(self, side: str) -> list[int]:
        return self.teacher_ids if side == "teacher" else self.student_ids


def trim_prompt(example, student_tokenizer, max_prompt_tokens: int):
    """The example with its prompt cut from the left to its last ``max_prompt_tokens`` student tokens.

    Long contexts would otherwise use up ``max_length`` and leave no response token to train on.
    Example:
        >>> trim_prompt(Example("a b c d e f", "g"), s_tok, 2).prompt  # doctest: +SKIP
        ' e f'
    """
    if not example.prompt or max_prompt_tokens <= 0:
        return example
    offsets = student_tokenizer(example.prompt, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    if len(offsets) <= max_prompt_tokens:
        return example
    cut = offsets[len(offsets) - max_prompt_tokens][0]
    return replace(example, prompt=example.prompt[cut:])


def prepare_example(
    example,
    teacher_tokenizer,
    student_tokenizer,
    max_length: int,
    max_prompt_fraction: float = 0.5,
    mined: bool = False,
) -> PreparedExample:
    """Align one ``Example`` (prompt/response or plain text) and truncate it to ``max_length`` per side.

    When the text does not fit, a prompt longer than ``max_prompt_fraction·max_length`` tokens is cut
    from the left first (our choice), so the response keeps room. ``mined``: also pair the tokens by
    edit distance (:mod:`sra_viz.mined`), for the MinED baseline.
    Example:
        >>> p = prepare_example(Example("Q: hi", " A: yo"), t_tok, s_tok, 64)  # doctest: +SKIP
    """
    al = align_spans(example.text, teacher_tokenizer, student_tokenizer, prompt_end=example.prompt_end)
    too_long = max(len(al.teacher.ids), len(al.student.ids)) > max_length
    if too_long and example.prompt and max_prompt_fraction < 1.0:
        trimmed = trim_prompt(example, student_tokenizer, max(1, int(max_prompt_fraction * max_length)))
        if trimmed is not example:
            example = trimmed
            al = align_spans(
                example.text, teacher_tokenizer, student_tokenizer, prompt_end=example.prompt_end
            )
    t_ids, s_ids = list(al.teacher.ids[:max_length]), list(al.student.ids[:max_length])
    n = 0
    for span in al.spans:
        if span.teacher_end > len(t_ids) or span.student_end > len(s_ids):
            break
        n += 1
    t_span = al.token_to_span("teacher")[: len(t_ids)].copy()
    s_span = al.token_to_span("student")[: len(s_ids)].copy()
    t_span[t_span >= n] = -1
    s_span[s_span >= n] = -1
    if al.spans:  # the labels start at the first aligned token (the response in prompt/response mode)
        t_first, s_first = al.spans[0].teacher_start, al.spans[0].student_start
    else:  # nothing aligned (e.g. an empty response): no labels
        t_first, s_first = len(t_ids), len(s_ids)
    if not example.prompt_end and min(t_first, s_first) == 0:
        # plain text and a side without BOS: its first token has no predictor, so both sides skip it
        t_first, s_first = t_first + 1, s_first + 1
    exact = [
        (sp.teacher_start, sp.student_start)
        for sp in al.spans[:n]
        if sp.teacher_end - sp.teacher_start == 1
        and sp.student_end - sp.student_start == 1
        and sp.teacher_start >= 1
        and sp.student_start >= 1
    ]
    mined_pairs = []
    if mined:
        t_label, s_label = max(1, t_first), max(1, s_first)
        t_texts, s_texts = token_texts(al.teacher)[: len(t_ids)], token_texts(al.student)[: len(s_ids)]
        mined_pairs = [
            (tp, sp) for tp, sp in edit_distance_pairs(t_texts, s_texts) if tp >= t_label and sp >= s_label
        ]
    return PreparedExample(
        teacher_ids=t_ids,
        student_ids=s_ids,
        teacher_span=t_span,
        student_span=s_span,
        n_spans=n,
        span_texts=[sp.text for sp in al.spans[:n]],
        teacher_label_start=max(1, t_first),
        student_label_start=max(1, s_first),
        exact_pairs=exact,
        mined_pairs=mined_pairs,
    )


@dataclass
class Batch:
    """Padded per-side tensors of a list of prepared examples (N = most spans in the batch)."""

    items: list[PreparedExample]
    teacher_span: torch.Tensor  # (B, L_T) long, padded like the teacher ids
    student_span: torch.Tensor  # (B, L_S) long
    span_valid: torch.Tensor  # (B, N) bool
    teacher_offset: torch.Tensor  # (B,) long: padded position = own position + offset
    student_offset: torch.Tensor  # (B,)
    n_spans: int

    def ids(self, side: str) -> list[list[int]]:
        return [item.ids(side) for item in self.items]

    def to(self, device) -> Batch:
        moved = {k: v.to(device) for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        return Batch(items=self.items, n_spans=self.n_spans, **moved)


def _pad(rows: list[np.ndarray], padding_side: str, fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(r) for r in rows)
    out = torch.full((len(rows), length), fill, dtype=torch.long)  # (B, L)
    offsets = torch.zeros(len(rows), dtype=torch.long)  # (B,)
    for b, row in enumerate(rows):
        off = length - len(row) if padding_side == "left" else 0
        out[b, off : off + len(row)] = torch.from_numpy(np.asarray(row, dtype=np.int64))
        offsets[b] = off
    return out, offsets


def collate(items: list[PreparedExample], teacher_padding_side: str, student_padding_side: str) -> Batch:
    """Pad span indices on each tokenizer's padding side; ``span_valid`` marks each text's real spans.

    Example:
        >>> batch = collate([p1, p2], "left", "right")  # doctest: +SKIP
    """
    t_span, t_off = _pad([it.teacher_span for it in items], teacher_padding_side, -1)
    s_span, s_off = _pad([it.student_span for it in items], student_padding_side, -1)
    n = max(1, max(it.n_spans for it in items))
    valid = torch.arange(n)[None, :] < torch.tensor([it.n_spans for it in items])[:, None]  # (B, N)
    return Batch(items, t_span, s_span, valid, t_off, s_off, n)


def label_positions(batch: Batch, side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predicting positions (padded) of every label token: (text index, position, target id), each (M,).

    Position p predicts the token at p + 1; labels run from the label start to the end of the text.
    """
    rows, pos, targets = [], [], []
    offsets = batch.teacher_offset if side == "teacher" else batch.student_offset
    for b, item in enumerate(batch.items):
        ids = item.ids(side)
        start = item.teacher_label_start if side == "teacher" else item.student_label_start
        off = int(offsets[b])
        for t in range(start, len(ids)):
            rows.append(b)
            pos.append(off + t - 1)
            targets.append(ids[t])
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return as_long(rows), as_long(pos), as_long(targets)
