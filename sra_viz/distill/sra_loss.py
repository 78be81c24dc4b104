"""``SRALoss``: the distillation objective of a :class:`~.config.DistillConfig` as a ``torch.nn.Module``.

It holds what the loss of one batch needs, built once: the :class:`~.plan.LayerPlan` (mapped layers,
which attention gives their masses), the :class:`~.plan.VocabHeads` (both LM heads, V∩) and the span
projectors (its only parameters). ``forward`` prepares and collates texts (:mod:`.batch`), computes
the method's terms (:func:`.loss_terms.loss_terms`: the teacher under ``no_grad``, the student with
its graph) and combines them (:func:`sra_viz.losses.total_loss`):

    L = α·CE + (1−α)·(L_span + λ_geo·L_geo + L_KD)      (method "sra"; "ce": L = CE)

``DistillSession`` computes its loss through this module too, so a training loop of one's own (or
``sra_viz.hf_trainer.SRATrainer``) trains on exactly the engine's objective.

Example:
    >>> sra = SRALoss(pair.teacher, student_model, student_tokenizer=tok)  # doctest: +SKIP
    >>> out = sra(["The cat sat on the mat.", "Paris is the capital of France."])  # doctest: +SKIP
    >>> out["loss"].backward()  # student and projector gradients  # doctest: +SKIP
    >>> sorted(out)  # doctest: +SKIP
    ['ce', 'geo', 'kd', 'loss', 'span']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import SraVizError
from ..forward import n_layers
from ..losses import SpanProjector, total_loss
from . import loss_terms
from .batch import Batch, PreparedExample, collate, prepare_example
from .config import DistillConfig, scheduled_pairs
from .plan import LayerPlan, VocabHeads
from .side_pass import SideView


def hidden_size(loaded: Any) -> int:
    """The width D of a model's hidden states (its text config's, for multimodal configs)."""
    cfg = loaded.model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    return int(getattr(cfg, "hidden_size", 0) or cfg.n_embd)


def as_side(model: Any, tokenizer: Any, role: str) -> Any:
    """A ``LoadedModel`` / ``SideView`` as given, or a bare HF model with ``tokenizer`` as a SideView."""
    if hasattr(model, "model") and hasattr(model, "tokenizer"):
        return model
    if tokenizer is None:
        raise SraVizError(
            f"the {role} was given as a bare model without its tokenizer; pass {role}_tokenizer= "
            f"(or a sra_viz LoadedModel, which holds both)"
        )
    name = getattr(getattr(model, "config", None), "_name_or_path", "") or role
    return SideView(model, tokenizer, str(name))


def to_example(item: Any) -> Any:
    """A text, a ``{"prompt", "response"}`` / ``{"text"}`` mapping or an ``Example``, as an ``Example``."""
    from ..data import Example

    if isinstance(item, Example):
        return item
    if isinstance(item, str):
        return Example(prompt="", response=item)
    if isinstance(item, dict):
        if "response" in item:
            return Example(prompt=str(item.get("prompt") or ""), response=str(item["response"]))
        if "text" in item:
            return Example(prompt="", response=str(item["text"]))
        raise SraVizError(
            f"a training row has the fields {sorted(item)}; give 'text', or 'prompt' and 'response'"
        )
    raise SraVizError(
        f"cannot train on a {type(item).__name__}; give texts, Examples or prompt/response mappings"
    )


class SRALoss(torch.nn.Module):
    """The config's distillation loss between a frozen teacher and a student (see module docstring).

    ``teacher`` / ``student``: sra_viz ``LoadedModel``s, or HF causal LMs with ``teacher_tokenizer`` /
    ``student_tokenizer``. Attention masses need the eager attention kernel on the sides that pool
    with them. The student's weights are not copied: the terms' gradients reach the model given.
    """

    def __init__(
        self,
        teacher: Any,
        student: Any,
        config: DistillConfig | None = None,
        *,
        teacher_tokenizer: Any = None,
        student_tokenizer: Any = None,
        teacher_cache: Any = None,
    ):
        super().__init__()
        self.teacher_cache = teacher_cache  # a TeacherCache: SRA's teacher side read where cached
        cfg = self.config = config if config is not None else DistillConfig()
        self.teacher = as_side(teacher, teacher_tokenizer, "teacher")
        self.student = as_side(student, student_tokenizer, "student")
        device = next(self.teacher.model.parameters()).device
        self.teacher_padding_side = self.teacher.tokenizer.padding_side or "right"
        self.student_padding_side = self.student.tokenizer.padding_side or "right"
        attention = cfg.mass_mode != "uniform"
        layer_pairs, layer_weights = cfg.layer_pairs, cfg.layer_weights
        if cfg.layer_schedule != "last":
            layer_pairs, layer_weights = scheduled_pairs(
                cfg.layer_schedule, n_layers(self.teacher), n_layers(self.student)
            )
        self.plan = LayerPlan.build(
            layer_pairs,
            layer_weights,
            self.teacher,
            self.student,
            mass_layers=cfg.mass_layers,
            teacher_masses=attention and (cfg.weighted_pooling or cfg.weighted_loss),
            student_masses=attention and cfg.weighted_pooling,
        )
        self.heads = VocabHeads.build(
            self.teacher,
            self.student.model,
            self.student.tokenizer,
            device,
            shared_vocab=(cfg.method == "sra" and cfg.use_kd) or cfg.method == "exact",
            teacher_head_dtype=cfg.teacher_head_dtype,
            min_edit_map=cfg.method == "mined",
        )
        self.projectors: torch.nn.ModuleList | None = None  # one per layer pair, shallow -> deep
        if cfg.method == "sra" and (cfg.use_span or "dynamics" in cfg.distill_terms()):
            d_s, d_t = hidden_size(self.student), hidden_size(self.teacher)
            self.projectors = torch.nn.ModuleList(
                [SpanProjector(d_s, d_t, cfg.projector_init) for _ in self.plan.pairs]
            ).to(device)

    # ------------------------------------------------------------------ batches

    def prepare(self, example: Any) -> PreparedExample:
        """One text / mapping / ``Example`` aligned and truncated to ``config.max_length`` per side."""
        return prepare_example(
            to_example(example),
            self.teacher.tokenizer,
            self.student.tokenizer,
            self.config.max_length,
            self.config.max_prompt_fraction,
            mined=self.config.method == "mined",
        )

    def collate(self, items: Sequence[PreparedExample]) -> Batch:
        """Prepared examples padded on each tokenizer's own padding side."""
        if not items:
            raise SraVizError("an empty batch: give at least one text")
        return collate(list(items), self.teacher_padding_side, self.student_padding_side)

    def as_batch(self, batch: Any) -> Batch:
        """A ``Batch`` as given, or one collated from texts, mappings, Examples or PreparedExamples."""
        if isinstance(batch, Batch):
            return batch
        if isinstance(batch, (str, dict)):
            batch = [batch]
        items = [it if isinstance(it, PreparedExample) else self.prepare(it) for it in batch]
        return self.collate(items)

    # ------------------------------------------------------------------ the loss

    def terms(self, batch: Any) -> dict[str, torch.Tensor]:
        """Every active loss term of the method on one batch (graph kept on the student side)."""
        projectors = list(self.projectors) if self.projectors is not None else []
        return loss_terms.loss_terms(
            self.as_batch(batch),
            self.config,
            self.plan,
            self.heads,
            self.teacher,
            self.student,
            projectors,
            teacher_cache=self.teacher_cache,
        )

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """``total_loss`` of the terms with the config's α and λ_geo (α = 1 for the CE-only control)."""
        alpha = 1.0 if self.config.method == "ce" else self.config.alpha
        return total_loss(terms, alpha=alpha, lambda_geo=self.config.lambda_geo)

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """The terms of one batch and their total under ``"loss"``."""
        terms = self.terms(batch)
        return {**terms, "loss": self.total(terms)}
