"""What the engine computes with, built once per session from the pair and the config.

``LayerPlan``: the mapped layer pairs, resolved, validated and ordered by depth, and which attention
gives the token masses of each mapped layer. ``VocabHeads``: the two LM heads, their logit softcaps
and the teacher's rows of the shared vocabulary V∩ (the teacher's 262k-row head is never run whole
for SRA). Loss terms and the probe take these two small objects, never the session.

Example:
    >>> plan = LayerPlan.build([[-1, -1], [12, 4]], None, pair.teacher, student)  # doctest: +SKIP
    >>> plan.pairs, plan.deepest  # doctest: +SKIP
    ([(12, 4), (17, 29)], (17, 29))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SraVizError
from ..forward import n_layers, resolve_layer
from .config import MASS_LAYERS

MASKED_LOGIT = -1e4  # logit of a column outside V∩: probability exactly 0 on both sides after softmax


@dataclass(frozen=True)
class LayerPlan:
    """Mapped (teacher, student) blocks ordered shallow to deep, and where their masses come from.

    ``mass_layers="per_layer"`` (the method): the CoMs of layer ℓ are pooled with masses from layer
    ℓ's own attention. ``"last_pair"``: every layer is pooled with the deepest pair's masses. L_geo,
    the probe, the dynamics term's weights and the saliency ŵ of L_geo / L_KD use the deepest pair.
    """

    pairs: tuple[tuple[int, int], ...]  # (teacher block, student block), shallow -> deep
    weights: tuple[float, ...] | None  # λ_ℓ of each pair in L_span (None = all 1), same order
    teacher_last: int  # last block of the teacher (its LM head reads it)
    student_last: int
    mass_layers: str
    teacher_masses: bool  # teacher masses come from attention (else uniform): pooling or saliency needs them
    student_masses: bool  # student masses come from attention: weighted pooling needs them

    @classmethod
    def build(
        cls,
        layer_pairs: list,
        layer_weights: list | None,
        teacher: Any,
        student: Any,
        *,
        mass_layers: str = "per_layer",
        teacher_masses: bool = True,
        student_masses: bool = True,
    ) -> LayerPlan:
        """Resolve ``layer_pairs`` against both models, reject duplicates and crossings, sort by depth.

        Example:
            >>> plan = LayerPlan.build(
            ...     [[-1, -1], [0, 0]], [2.0, 1.0], tiny.teacher, tiny.student
            ... )  # doctest: +SKIP
            >>> plan.weights  # doctest: +SKIP
            (1.0, 2.0)
        """
        if mass_layers not in MASS_LAYERS:
            raise SraVizError(f"mass_layers={mass_layers!r} is unknown; expected one of {MASS_LAYERS}")
        if not layer_pairs:
            raise SraVizError(
                "layer_pairs is empty; give at least one [teacher, student] pair such as [[-1, -1]]"
            )
        if layer_weights is not None and len(layer_weights) != len(layer_pairs):
            raise SraVizError(f"{len(layer_weights)} layer_weights for {len(layer_pairs)} layer pairs")
        resolved = [(resolve_layer(teacher, t), resolve_layer(student, s)) for t, s in layer_pairs]
        for side, index in (("teacher", 0), ("student", 1)):
            blocks = [pair[index] for pair in resolved]
            if len(set(blocks)) != len(blocks):
                raise SraVizError(
                    f"layer_pairs {layer_pairs} map {side} block {_repeated(blocks)} twice; "
                    f"give each {side} layer at most once"
                )
        order = sorted(range(len(resolved)), key=lambda i: resolved[i])
        pairs = tuple(resolved[i] for i in order)
        if [s for _, s in pairs] != sorted(s for _, s in pairs):
            raise SraVizError(
                f"layer_pairs {layer_pairs} cross (as blocks {list(pairs)}): a deeper teacher layer must map "
                "to a deeper student layer"
            )
        weights = None if layer_weights is None else tuple(float(layer_weights[i]) for i in order)
        return cls(
            pairs,
            weights,
            n_layers(teacher) - 1,
            n_layers(student) - 1,
            mass_layers,
            teacher_masses,
            student_masses,
        )

    @property
    def teacher_layers(self) -> list[int]:
        return [t for t, _ in self.pairs]

    @property
    def student_layers(self) -> list[int]:
        return [s for _, s in self.pairs]

    @property
    def deepest(self) -> tuple[int, int]:
        """The deepest pair: L_geo, the probe and the saliency of L_geo / L_KD use it."""
        return self.pairs[-1]

    def mass_layer(self, side: str, layer: int) -> int | None:
        """The block whose attention gives the masses that pool ``side``'s CoMs of block ``layer``
        (None: uniform masses, no attention kept)."""
        if not (self.teacher_masses if side == "teacher" else self.student_masses):
            return None
        if self.mass_layers == "per_layer":
            return layer
        return self.deepest[0] if side == "teacher" else self.deepest[1]

    def mass_layers_of(self, side: str, layers: list[int]) -> dict[int, int | None]:
        """``{layer: mass block}`` for every layer of ``side`` whose CoMs are pooled."""
        return {layer: self.mass_layer(side, layer) for layer in layers}


def _repeated(blocks: list[int]) -> int:
    return next(b for b in blocks if blocks.count(b) > 1)


def _softcap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    return logits if not cap else cap * torch.tanh(logits / cap)


def _final_softcap(model: Any) -> float | None:
    cfg = model.config
    return getattr(getattr(cfg, "text_config", None) or cfg, "final_logit_softcapping", None)


def head_dtype(choice: str, device: torch.device) -> torch.dtype:
    """float32, or bfloat16 for "bfloat16" / for "auto" where the device multiplies bf16 natively."""
    if choice == "float32":
        return torch.float32
    if choice == "bfloat16":
        return torch.bfloat16
    try:
        if device.type == "cuda":
            fast = torch.cuda.is_bf16_supported()
        else:
            fast = device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        fast = False
    return torch.bfloat16 if fast else torch.float32


@dataclass
class VocabHeads:
    """Both LM heads with their softcaps, and the teacher's V∩ rows in the student's vocabulary order.

    KD on V∩ is computed in the student's vocabulary order with the columns outside V∩ masked
    (logit ``MASKED_LOGIT``: probability exactly 0 on both sides, so KL and gradients equal those on
    V∩ alone), which spares gathering 46k columns of every logit row forward and backward.
    """

    student_model: Any  # the trainable student copy (its output embedding is the student head)
    teacher_model: Any
    student_softcap: float | None
    teacher_softcap: float | None
    shared: Any = None  # sra_viz.vocab.SharedVocab, when V∩ is used
    teacher_shared_rows: torch.Tensor | None = None  # (V_S, D_T) teacher head rows, zero outside V∩
    shared_mask: torch.Tensor | None = None  # (V_S,) 0 on V∩, MASKED_LOGIT elsewhere
    vocab_map: Any = None  # sra_viz.mined.VocabMap (teacher id -> nearest student id), for MinED

    @classmethod
    def build(
        cls,
        teacher: Any,
        student_model: Any,
        student_tokenizer: Any,
        device: torch.device,
        *,
        shared_vocab: bool,
        teacher_head_dtype: str = "auto",
        min_edit_map: bool = False,
    ) -> VocabHeads:
        """The heads of ``teacher`` (LoadedModel) and ``student_model``; V∩ rows copied once if asked.

        Example:
            >>> heads = VocabHeads.build(
            ...     pair.teacher, student.model, tok, dev, shared_vocab=True
            ... )  # doctest: +SKIP
        """
        heads = cls(
            student_model, teacher.model, _final_softcap(student_model), _final_softcap(teacher.model)
        )
        if min_edit_map:
            from ..mined import VocabMap

            heads.vocab_map = VocabMap(teacher.tokenizer, student_tokenizer)
        if not shared_vocab:
            return heads
        from ..vocab import shared_vocab as find_shared

        heads.shared = find_shared(teacher.tokenizer, student_tokenizer).to(device)
        head = teacher.model.get_output_embeddings().weight.detach()  # (V_T, D_T)
        n_student = student_model.get_output_embeddings().weight.shape[0]
        dtype = head_dtype(teacher_head_dtype, device)
        rows = head.new_zeros((n_student, head.shape[1]), dtype=dtype)  # (V_S, D_T)
        rows[heads.shared.student_ids] = head[heads.shared.teacher_ids].to(dtype)
        heads.teacher_shared_rows = rows
        heads.shared_mask = torch.full((n_student,), MASKED_LOGIT, device=device)  # (V_S,)
        heads.shared_mask[heads.shared.student_ids] = 0.0
        return heads

    def student_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The student's LM head on last-layer hidden states (..., D_S) -> (..., V_S), with its softcap."""
        return _softcap(self.student_model.get_output_embeddings()(hidden), self.student_softcap)

    def teacher_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The teacher's full LM head (all V_T rows; only ULD needs it), no grad: (..., D_T) -> (..., V_T)."""
        with torch.no_grad():
            return _softcap(self.teacher_model.get_output_embeddings()(hidden), self.teacher_softcap)

    def teacher_shared_logits(self, hidden: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
        """``z/τ = softcap(h @ W_head[V∩]ᵀ)/τ`` in student vocabulary order, columns outside V∩ masked:
        (..., D_T) -> (..., V_S), float32, no gradient."""
        if self.teacher_shared_rows is None or self.shared_mask is None:
            raise SraVizError("these heads were built without the shared vocabulary (shared_vocab=False)")
        with torch.no_grad():
            weight = self.teacher_shared_rows  # (V_S, D_T), zero rows outside V∩
            logits = hidden.to(weight.dtype) @ weight.T  # bf16 GEMMs accumulate in fp32
            if self.teacher_softcap:
                logits = _softcap(logits.float(), self.teacher_softcap)
            # one pass: to float32 (the mask's dtype), scale by 1/τ and mask
            return torch.add(self.shared_mask, logits, alpha=1.0 / tau)

    def student_shared_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Student logits (..., V_S) with the columns outside V∩ masked (see teacher_shared_logits)."""
        if self.shared_mask is None:
            raise SraVizError("these heads were built without the shared vocabulary (shared_vocab=False)")
        return logits + self.shared_mask
