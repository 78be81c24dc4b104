"""The loss terms of one collated batch, per method (the session combines them with ``total_loss``).

Every function takes tensors and small typed objects: the :class:`~.plan.LayerPlan` (which layers,
which masses), the :class:`~.plan.VocabHeads` (LM heads, V∩), the two models, the config; never the
session. SRA: the teacher runs once under ``no_grad`` (mapped layers + the attentions that give their
masses, no LM head), the student keeps the graph. Span logit KD never runs an LM head on the CoMs: the
student's CoM logits are the mass-pooled token logits that the CE term computes anyway (the head is
linear), and the teacher's are ``c @ W_head[V∩]ᵀ`` with the V∩ rows of its 262k-row head copied once.
ULD / exact-token KD: last layers only, no attention, no CoMs. CE only (the control): no teacher pass.

Example:
    >>> terms = loss_terms(batch, cfg, plan, heads, pair.teacher, student, projectors)  # doctest: +SKIP
    >>> sorted(terms)  # doctest: +SKIP
    ['ce', 'geo', 'kd', 'span']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..errors import SraVizError
from ..features import saliency_weights
from ..losses import (
    aligned_response_positions,
    causal_lm_loss,
    dynamics_loss,
    exact_token_kd,
    geometric_loss,
    span_logit_kd,
    span_loss,
    target_kd,
    uld_loss,
    uniform_weights,
)
from ..mined import mapped_teacher_target
from .batch import Batch, label_positions
from .config import DistillConfig
from .plan import LayerPlan, VocabHeads
from .side_pass import SideOutput, SideView, autocast_for, pool_spans, run_side
from .span_kd import pooled_span_kd, pooled_span_kd_and_ce
from .teacher_cache import TeacherCache, teacher_spans

if TYPE_CHECKING:
    from ..models import LoadedModel


def student_forward(
    student: SideView,
    heads: VocabHeads,
    batch: Batch,
    config: DistillConfig,
    layers: list[int],
    mass_layers: dict[int, int | None],
    last: int,
    centers_for: list[int] | None = None,
) -> tuple[SideOutput, torch.Tensor]:
    """The student's pass (graph kept) and its token logits (B, L_S, V_S) from block ``last``."""
    out = run_side(
        student,
        batch,
        "student",
        layers,
        mass_layers,
        config.mass_mode,
        config.weighted_pooling,
        grad=True,
        dtype=config.dtype,
        centers_for=centers_for,
    )
    with autocast_for(out.span_index.device, config.dtype):
        logits = heads.student_logits(out.forward.hidden[last])  # (B, L_S, V_S)
    return out, logits


def teacher_forward(
    teacher: LoadedModel,
    batch: Batch,
    config: DistillConfig,
    layers: list[int],
    mass_layers: dict[int, int | None],
    centers_for: list[int] | None = None,
) -> SideOutput:
    """The teacher's pass, once per batch, without gradient."""
    with torch.no_grad():
        return run_side(
            teacher,
            batch,
            "teacher",
            layers,
            mass_layers,
            config.mass_mode,
            config.weighted_pooling,
            grad=False,
            dtype=config.dtype,
            centers_for=centers_for,
        )


def ce_term(batch: Batch, logits: torch.Tensor) -> torch.Tensor:
    """The student's CE on its label tokens (the response in prompt/response mode)."""
    rows, pos, targets = label_positions(batch, "student")
    dev = logits.device
    return causal_lm_loss(logits[rows.to(dev), pos.to(dev)], targets.to(dev))


def student_span_logits(
    heads: VocabHeads,
    logits: torch.Tensor,
    student: SideOutput,
    last: int,
    valid: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """``z/τ`` of the student's span CoMs, (M, V_S) over the M valid spans, V∩ live and the rest masked.

    The head is linear, so head(CoM) = the CoM's mass-pooled token logits: these are pooled from the
    token ``logits`` (B, L_S, V_S) the CE term computes anyway (scaled by 1/τ, starting from the mask),
    and no head runs on the CoMs. A softcapped head ``s·tanh(Wh/s)`` is not linear: then the head runs
    on the last layer's CoMs (``student.centers[last]``, which the caller must have asked for).
    """
    if heads.student_softcap:
        if last not in student.centers:
            raise SraVizError(f"a softcapped student head needs the CoMs of block {last}; none were pooled")
        z = heads.student_logits(student.centers[last][valid]).float()  # (M, V_S) softcap(W c)
        return heads.student_shared_logits(z / tau)
    return pool_spans(
        logits.float(),
        student.span_index,
        student.pool_mass[last],
        valid,
        scale=1.0 / tau,
        offset=heads.shared_mask,
    )


def exact_pair_logits(
    heads: VocabHeads, student_logits: torch.Tensor, teacher_hidden: torch.Tensor, tau: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z_S/τ, z_T/τ)`` at the exact-token positions, each (M, V_S) in student order, V∩ live.

    The mask is added after dividing by τ: masked first, a column outside V∩ at ``MASKED_LOGIT/τ``
    would come back into the softmax at large τ (−1e4/1000 = −10). ``student_logits`` (M, V_S),
    ``teacher_hidden`` (M, D_T).
    """
    z_s = heads.student_shared_logits(student_logits.float() / tau)
    z_t = heads.teacher_shared_logits(teacher_hidden, tau=tau)
    return z_s, z_t


def _kd_targets(
    heads: VocabHeads,
    teacher_centers: torch.Tensor,
    valid: torch.Tensor,
    weights: torch.Tensor,
    config: DistillConfig,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(z_T/τ (M, V_S), a (M,) or None)``: the teacher's span logits on V∩ (the rest masked) of the M
    valid spans and their KD weights (None: uniform)."""
    z_t = heads.teacher_shared_logits(teacher_centers[valid], tau=config.tau)
    kd_w = weights[valid] if config.kd_weighting == "saliency" else None
    return z_t, kd_w


def kd_term(
    heads: VocabHeads,
    logits: torch.Tensor,
    student: SideOutput,
    teacher_centers: torch.Tensor,
    plan: LayerPlan,
    valid: torch.Tensor,
    weights: torch.Tensor,
    config: DistillConfig,
) -> torch.Tensor:
    """L_KD of the batch: z/τ of the CoMs on both sides, V∩ columns live, the rest masked, the KL at τ = 1.

    A linear student head: :func:`.span_kd.pooled_span_kd` pools the token ``logits`` (B, L_S, V_S) and
    takes the KL in one autograd step. A softcapped one: its span logits from the CoMs
    (:func:`student_span_logits`) and :func:`span_logit_kd`. Both are (1/B) Σ_m a_m KL_m over the M
    valid spans; teacher_centers (B, N, D_T), valid and the saliency ``weights`` (B, N).
    """
    z_t, kd_w = _kd_targets(heads, teacher_centers, valid, weights, config)
    if not heads.student_softcap:
        mass = student.pool_mass[plan.student_last]
        return pooled_span_kd(
            logits, student.span_index, mass, valid, z_t, kd_w, config.tau, heads.shared_mask
        )
    z_s = student_span_logits(heads, logits, student, plan.student_last, valid, config.tau)  # (M, V_S)
    # (1, M) holds every valid span once; dividing by B keeps span_logit_kd's (1/B) Σ_b Σ_k
    every = torch.ones((1, z_s.shape[0]), dtype=torch.bool, device=valid.device)
    kd_weights = None if kd_w is None else kd_w[None]
    return span_logit_kd(z_s[None], z_t[None], every, 1.0, kd_weights) / valid.shape[0]


def kd_and_ce_terms(
    batch: Batch,
    heads: VocabHeads,
    logits: torch.Tensor,
    student: SideOutput,
    teacher_centers: torch.Tensor,
    plan: LayerPlan,
    valid: torch.Tensor,
    weights: torch.Tensor,
    config: DistillConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_KD, L_CE)``: :func:`kd_term` and :func:`ce_term`, the same values and gradients.

    A linear student head takes both in :func:`.span_kd.pooled_span_kd_and_ce`, which writes their
    gradients into one buffer the size of ``logits`` (B, L_S, V_S) instead of two that autograd adds.
    """
    if heads.student_softcap:
        kd = kd_term(heads, logits, student, teacher_centers, plan, valid, weights, config)
        return kd, ce_term(batch, logits)
    z_t, kd_w = _kd_targets(heads, teacher_centers, valid, weights, config)
    rows, pos, targets = label_positions(batch, "student")  # (R,) each
    dev = logits.device
    flat_rows = (rows * logits.shape[1] + pos).to(dev)  # (R,) index into the (B·L_S) token rows
    mass = student.pool_mass[plan.student_last]
    return pooled_span_kd_and_ce(
        logits,
        student.span_index,
        mass,
        valid,
        z_t,
        kd_w,
        config.tau,
        heads.shared_mask,
        flat_rows,
        targets.to(dev),
    )


def sra_terms(
    batch: Batch,
    config: DistillConfig,
    plan: LayerPlan,
    heads: VocabHeads,
    teacher: LoadedModel,
    student: SideView,
    projectors: Sequence[torch.nn.Module],
    teacher_cache: TeacherCache | None = None,
) -> dict[str, torch.Tensor]:
    """span / geo / kd / dynamics / ce, as switched on in the config.

    Each mapped layer's CoMs are pooled with the masses ``plan`` names for it; ŵ, L_geo and the
    dynamics weights come from the deepest pair; L_KD pools both last layers. The teacher's CoMs and
    span masses come from ``teacher_cache`` where it holds them (:mod:`.teacher_cache`), the span
    logits on V∩ are computed from the last-layer CoMs through the frozen head either way.
    """
    cfg = config
    t_pooled = plan.teacher_layers + ([plan.teacher_last] if cfg.use_kd else [])
    t_masses = plan.mass_layers_of("teacher", sorted(set(t_pooled)))
    t = teacher_spans(teacher, batch, cfg, t_masses, teacher_cache)
    s_masses = plan.mass_layers_of("student", sorted(set(plan.student_layers) | {plan.student_last}))
    s_centers = plan.student_layers + ([plan.student_last] if cfg.use_kd and heads.student_softcap else [])
    s, logits = student_forward(
        student, heads, batch, cfg, sorted(s_masses), s_masses, plan.student_last, s_centers
    )
    valid = batch.span_valid.to(logits.device)  # (B, N)
    deepest_t = plan.deepest[0]
    if cfg.weighted_loss and deepest_t in t.span_mass:
        weights = saliency_weights(t.span_mass[deepest_t], valid, cfg.saliency_power)  # (B, N) teacher ŵ
    else:
        weights = uniform_weights(valid)
    s_list = [s.centers[layer] for layer in plan.student_layers]  # each (B, N, D_S), shallow -> deep
    t_list = [t.centers[layer] for layer in plan.teacher_layers]  # each (B, N, D_T)
    projectors = list(projectors)
    terms: dict[str, torch.Tensor] = {}
    if cfg.use_span:
        terms["span"] = span_loss(s_list, t_list, projectors, weights, valid, plan.weights)
    if cfg.use_geo:
        terms["geo"] = geometric_loss(s_list[-1], t_list[-1], weights, valid)  # the deepest pair
    ce = None
    if cfg.use_kd:
        kd_args = (heads, logits, s, t.centers[plan.teacher_last], plan, valid, weights, cfg)
        if cfg.use_ce:  # one gradient buffer for both terms
            terms["kd"], ce = kd_and_ce_terms(batch, *kd_args)
        else:
            terms["kd"] = kd_term(*kd_args)
    if "dynamics" in cfg.distill_terms():
        terms["dynamics"] = dynamics_loss(s_list, t_list, projectors, weights, valid)
    if cfg.use_ce:
        terms["ce"] = ce_term(batch, logits) if ce is None else ce
    return terms


def _uld_positions(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(text, student pos, teacher pos) of the predictions paired from each side's response start."""
    bounds = {}
    for side, offsets in (("student", batch.student_offset), ("teacher", batch.teacher_offset)):
        starts, ends = [], []
        for item, off in zip(batch.items, offsets.tolist(), strict=True):
            label_start = item.student_label_start if side == "student" else item.teacher_label_start
            starts.append(off + label_start - 1)  # position predicting the first label token
            ends.append(off + len(item.ids(side)) - 1)
        bounds[side] = (starts, ends)
    return aligned_response_positions(*bounds["student"], *bounds["teacher"])


def _predicting_positions(batch: Batch, kind: str, device: torch.device) -> torch.Tensor:
    """(M, 3) long: text, teacher position, student position of the predictions of each paired token
    (``kind`` "exact": one-token spans; "mined": MinED's edit-distance pairs), in padded coordinates."""
    rows = [
        (b, int(batch.teacher_offset[b]) + tp - 1, int(batch.student_offset[b]) + sp - 1)
        for b, item in enumerate(batch.items)
        for tp, sp in (item.exact_pairs if kind == "exact" else item.mined_pairs)
    ]
    return torch.tensor(rows, dtype=torch.long, device=device).reshape(-1, 3)


def token_terms(
    batch: Batch,
    config: DistillConfig,
    plan: LayerPlan,
    heads: VocabHeads,
    teacher: LoadedModel,
    student: SideView,
) -> dict[str, torch.Tensor]:
    """uld, exact or mined (+ ce): the token-level baselines (last layers only, no attention, no CoMs)."""
    cfg = config
    t = teacher_forward(teacher, batch, cfg, [plan.teacher_last], {}, centers_for=[])
    t_hidden = t.forward.hidden[plan.teacher_last]  # (B, L_T, D_T)
    _, logits = student_forward(student, heads, batch, cfg, [plan.student_last], {}, plan.student_last)
    dev = logits.device  # logits: (B, L_S, V_S)
    terms: dict[str, torch.Tensor] = {}
    if cfg.method == "uld":
        rows, s_pos, t_pos = (x.to(dev) for x in _uld_positions(batch))
        with autocast_for(dev, cfg.dtype):
            z_t = heads.teacher_logits(t_hidden[rows, t_pos])  # (M, V_T): ULD needs the full head
        terms["uld"] = uld_loss(logits[rows, s_pos], z_t, cfg.uld_tau)
    elif cfg.method == "mined":
        idx = _predicting_positions(batch, "mined", dev)  # (M, 3) text, teacher pos, student pos
        with autocast_for(dev, cfg.dtype):
            z_t = heads.teacher_logits(t_hidden[idx[:, 0], idx[:, 1]])  # (M, V_T): top-k needs the full head
        target = mapped_teacher_target(z_t, heads.vocab_map, logits.shape[-1], cfg.tau)  # (M, V_S)
        terms["mined"] = target_kd(logits[idx[:, 0], idx[:, 2]], target, cfg.tau)
    else:
        idx = _predicting_positions(batch, "exact", dev)  # (M, 3) text, teacher pos, student pos
        z_s, z_t = exact_pair_logits(
            heads, logits[idx[:, 0], idx[:, 2]], t_hidden[idx[:, 0], idx[:, 1]], cfg.tau
        )  # each (M, V_S), already divided by τ
        terms["exact"] = exact_token_kd(z_s, z_t, 1.0)
    if cfg.use_ce:
        terms["ce"] = ce_term(batch, logits)
    return terms


def ce_only_terms(
    batch: Batch, config: DistillConfig, plan: LayerPlan, heads: VocabHeads, student: SideView
) -> dict[str, torch.Tensor]:
    """ce alone (the plain fine-tuning control): the student's pass only, the teacher never runs."""
    last = plan.student_last
    _, logits = student_forward(student, heads, batch, config, [last], {}, last, centers_for=[])
    return {"ce": ce_term(batch, logits)}  # logits (B, L_S, V_S)


def loss_terms(
    batch: Batch,
    config: DistillConfig,
    plan: LayerPlan,
    heads: VocabHeads,
    teacher: LoadedModel,
    student: SideView,
    projectors: Sequence[torch.nn.Module] = (),
    teacher_cache: TeacherCache | None = None,
) -> dict[str, torch.Tensor]:
    """Every active loss term of the config's method on one collated batch (``teacher_cache``: SRA's
    teacher side read from / written to it; the token-level methods always run the teacher)."""
    if config.method == "ce":
        return ce_only_terms(batch, config, plan, heads, student)
    if config.method == "sra":
        return sra_terms(batch, config, plan, heads, teacher, student, projectors, teacher_cache)
    return token_terms(batch, config, plan, heads, teacher, student)
