"""Student variants: always a fresh deep copy, so a cached base model is never changed by training.

* ``full``: every weight trains (the tied embeddings / LM head stay frozen unless asked);
* ``last_k``: only the last k blocks and the final norm train;
* ``truncated``: only the first k blocks are kept (a smaller, faster student that starts far from the
  teacher), all of them train.

In SmolLM2 (and Gemma) the LM head *is* the embedding matrix: training the head would train 28 M
embedding parameters too, so ``freeze_embeddings=True`` (the default) freezes both. With LoRA
(``lora=(rank, alpha, targets)``) only the adapters train, on the blocks the variant keeps.

Example:
    >>> student = make_student(pair.student.model, "truncated", k=6)  # doctest: +SKIP
    >>> student.n_layers, student.trainable_params  # doctest: +SKIP
    (6, 21234240)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SraVizError
from ..forward import _backbone_and_blocks
from .config import field_choices


@dataclass
class Student:
    """A trainable copy of the student and the names of its trainable parameters."""

    model: Any  # HF causal LM (a copy)
    variant: str
    n_layers: int
    trainable: list[str]  # parameter names, in model.named_parameters() order

    @property
    def trainable_params(self) -> int:
        named = dict(self.model.named_parameters())
        return sum(named[n].numel() for n in self.trainable)

    def parameters(self) -> list[torch.nn.Parameter]:
        named = dict(self.model.named_parameters())
        return [named[n] for n in self.trainable]


def _tied(model: Any) -> bool:
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    return head is not None and emb is not None and head.weight is emb.weight


def _truncate(model: Any, k: int) -> None:
    """Keep the first k blocks of a (copied) model and make its config agree."""
    backbone, blocks = _backbone_and_blocks(model)
    kept = torch.nn.ModuleList(list(blocks)[:k])
    for attr in ("layers", "h", "blocks"):
        if getattr(backbone, attr, None) is blocks:
            setattr(backbone, attr, kept)
            break
    cfg = getattr(model.config, "text_config", None) or model.config
    for name in ("num_hidden_layers", "n_layer"):
        if hasattr(cfg, name):
            setattr(cfg, name, k)
    if isinstance(getattr(cfg, "layer_types", None), list):
        cfg.layer_types = cfg.layer_types[:k]


def make_student(
    base_model: Any,
    variant: str = "full",
    k: int = 6,
    freeze_embeddings: bool = True,
    lora: tuple[int, int, str] | None = None,
) -> Student:
    """Deep-copy ``base_model`` and set which weights train; the base model is left untouched.

    ``lora`` = (rank, alpha, targets): LoRA adapters (:mod:`.lora`) are the only weights that train.

    Example:
        >>> s = make_student(pair.student.model, "last_k", k=2)  # doctest: +SKIP
        >>> s.model is pair.student.model  # doctest: +SKIP
        False
    """
    _, blocks = _backbone_and_blocks(base_model)
    depth = len(blocks)
    variants = field_choices("student_variant") or ()
    if variant not in variants:
        raise SraVizError(f"student variant {variant!r} is unknown; expected one of {variants}")
    if variant != "full" and not 1 <= k <= depth:
        raise SraVizError(f"student_k={k} is out of range for a student with {depth} blocks: use 1..{depth}")
    model = copy.deepcopy(base_model)
    if variant == "truncated":
        _truncate(model, k)
    model.train()
    _, blocks = _backbone_and_blocks(model)
    tied = _tied(model)
    emb_ids = {id(model.get_input_embeddings().weight)}
    head = model.get_output_embeddings()
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    if variant == "last_k":
        train_ids = {id(p) for block in list(blocks)[-k:] for p in block.parameters()}
        block_ids = {id(p) for block in blocks for p in block.parameters()}
        # the final norm (and anything else outside the blocks, embeddings and head) trains too
        train_ids |= {id(p) for p in model.parameters() if id(p) not in block_ids | emb_ids | head_ids}
        if head is not None and not tied:
            train_ids |= head_ids
    else:
        train_ids = {id(p) for p in model.parameters()}
    if freeze_embeddings:
        train_ids -= emb_ids
        if tied:
            train_ids -= head_ids
    names = []
    for name, param in model.named_parameters():
        param.requires_grad_(id(param) in train_ids)
        if id(param) in train_ids:
            names.append(name)
    if lora is not None:
        from .lora import add_lora

        names = add_lora(model, *lora)
    if not names:
        raise SraVizError(f"student variant {variant!r} with k={k} leaves no trainable weight")
    return Student(model=model, variant=variant, n_layers=len(blocks), trainable=names)
