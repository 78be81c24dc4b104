"""The loss terms of one collated batch, per method (the session combines them with ``total_loss``).

SRA: the teacher runs once under ``no_grad`` (mapped layers + the mass layer's attention, no LM head),
the student keeps the graph. Span logit KD never runs an LM head on the CoMs: the student's CoM
logits are the mass-pooled token logits that the CE term computes anyway (the head is linear), and
the teacher's are ``c @ W_head[V∩]ᵀ`` with the V∩ rows of its 262k-row head copied once.
ULD / exact-token KD: last layers only, no attention, no CoMs. CE only (the control): no teacher pass.

Example:
    >>> terms = loss_terms(session, batch)  # doctest: +SKIP
    >>> sorted(terms)  # doctest: +SKIP
    ['ce', 'geo', 'kd', 'span']
"""

from __future__ import annotations

from typing import Any

import torch

from ..features import saliency_weights
from ..losses import (
    aligned_response_positions,
    causal_lm_loss,
    dynamics_loss,
    exact_token_kd,
    geometric_loss,
    span_logit_kd,
    span_loss,
    uld_loss,
    uniform_weights,
)
from .batch import Batch, label_positions
from .compute import SideOutput, autocast_for, pool_spans, run_side


def student_forward(
    session: Any, batch: Batch, layers: list[int], centers_for: list[int], mass_layer: int | None
) -> tuple[SideOutput, torch.Tensor]:
    """The student's pass (graph kept) and its token logits (B, L_S, V_S)."""
    cfg = session.config
    out = run_side(session.student_view, batch, "student", layers, mass_layer, cfg.mass_mode,
                   cfg.weighted_pooling, grad=True, dtype=cfg.dtype, centers_for=centers_for)  # fmt: skip
    with autocast_for(session.device, cfg.dtype):
        logits = session.student_logits(out.forward.hidden[session.student_last])  # (B, L_S, V_S)
    return out, logits


def teacher_forward(session: Any, batch: Batch, layers: list[int], mass_layer: int | None,
                    centers_for: list[int] | None = None) -> SideOutput:  # fmt: skip
    """The teacher's pass, once per batch, without gradient."""
    cfg = session.config
    with torch.no_grad():
        return run_side(session.teacher, batch, "teacher", layers, mass_layer, cfg.mass_mode,
                        cfg.weighted_pooling, grad=False, dtype=cfg.dtype, centers_for=centers_for)  # fmt: skip


def ce_term(batch: Batch, logits: torch.Tensor) -> torch.Tensor:
    """The student's CE on its label tokens (the response in prompt/response mode)."""
    rows, pos, targets = label_positions(batch, "student")
    dev = logits.device
    return causal_lm_loss(logits[rows.to(dev), pos.to(dev)], targets.to(dev))


def sra_terms(session: Any, batch: Batch) -> dict[str, torch.Tensor]:
    """span / geo / kd / dynamics / ce, as switched on in the config."""
    cfg = session.config
    t_layers = sorted(set(session.teacher_layers) | ({session.teacher_last} if cfg.use_kd else set()))
    t = teacher_forward(session, batch, t_layers, session.teacher_mass_layer)
    s_layers = sorted(set(session.student_layers) | {session.student_last})
    s, logits = student_forward(session, batch, s_layers, sorted(set(session.student_layers)),
                                session.student_mass_layer)  # fmt: skip
    valid = batch.span_valid.to(session.device)  # (B, N)
    if cfg.weighted_loss and t.span_mass is not None:
        weights = saliency_weights(t.span_mass, valid, cfg.saliency_power)  # (B, N) teacher ŵ
    else:
        weights = uniform_weights(valid)
    s_list = [s.centers[layer] for layer in session.student_layers]  # each (B, N, D_S)
    t_list = [t.centers[layer] for layer in session.teacher_layers]  # each (B, N, D_T)
    projectors = list(session.projectors) if session.projectors is not None else []
    terms: dict[str, torch.Tensor] = {}
    if cfg.use_span:
        terms["span"] = span_loss(s_list, t_list, projectors, weights, valid, cfg.layer_weights)
    if cfg.use_geo:
        terms["geo"] = geometric_loss(s_list[-1], t_list[-1], weights, valid)
    if cfg.use_kd:
        # z/τ of the CoMs on both sides, V∩ columns live, the rest masked to -1e4: the student's from the
        # token logits the CE term computes anyway (pooling scaled by 1/τ, starting from the mask), so the
        # KL below runs at τ = 1 without dividing or masking (M, V_S) tensors again
        z_s = pool_spans(logits.float(), s.span_index, s.pool_mass, valid, scale=1.0 / cfg.tau,
                         offset=session.shared_mask)[None]  # (1, M, V_S)  # fmt: skip
        z_t = session.teacher_shared_logits(t.centers[session.teacher_last][valid], tau=cfg.tau)[None]
        kd_w = weights[valid][None] if cfg.kd_weighting == "saliency" else None
        # (1, M) holds every valid span once; dividing by B keeps span_logit_kd's (1/B) Σ_b Σ_k
        every = torch.ones(z_s.shape[:2], dtype=torch.bool, device=session.device)
        terms["kd"] = span_logit_kd(z_s, z_t, every, 1.0, kd_w) / valid.shape[0]
    if "dynamics" in cfg.distill_terms():
        terms["dynamics"] = dynamics_loss(s_list, t_list, projectors, weights, valid)
    if cfg.use_ce:
        terms["ce"] = ce_term(batch, logits)
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


def token_terms(session: Any, batch: Batch) -> dict[str, torch.Tensor]:
    """uld or exact (+ ce): the token-level baselines."""
    cfg, dev = session.config, session.device
    t = teacher_forward(session, batch, [session.teacher_last], None, centers_for=[])
    t_hidden = t.forward.hidden[session.teacher_last]  # (B, L_T, D_T)
    _, logits = student_forward(session, batch, [session.student_last], [], None)  # (B, L_S, V_S)
    terms: dict[str, torch.Tensor] = {}
    if cfg.method == "uld":
        rows, s_pos, t_pos = (x.to(dev) for x in _uld_positions(batch))
        with autocast_for(dev, cfg.dtype):
            z_t = session.teacher_logits(t_hidden[rows, t_pos])  # (M, V_T): ULD needs the full head
        terms["uld"] = uld_loss(logits[rows, s_pos], z_t, cfg.uld_tau)
    else:
        pairs = [(b, int(batch.teacher_offset[b]) + tp - 1, int(batch.student_offset[b]) + sp - 1)
                 for b, item in enumerate(batch.items) for tp, sp in item.exact_pairs]  # fmt: skip
        idx = torch.tensor(pairs, dtype=torch.long, device=dev).reshape(-1, 3)  # (M, 3) text, t pos, s pos
        z_s = session.student_shared_logits(logits[idx[:, 0], idx[:, 2]])  # (M, V_S) V∩ live, rest masked
        z_t = session.teacher_shared_logits(t_hidden[idx[:, 0], idx[:, 1]])  # (M, V_S)
        terms["exact"] = exact_token_kd(z_s, z_t, cfg.tau)
    if cfg.use_ce:
        terms["ce"] = ce_term(batch, logits)
    return terms


def ce_only_terms(session: Any, batch: Batch) -> dict[str, torch.Tensor]:
    """ce alone (the plain fine-tuning control): the student's pass only, the teacher never runs."""
    _, logits = student_forward(session, batch, [session.student_last], [], None)  # (B, L_S, V_S)
    return {"ce": ce_term(batch, logits)}


def loss_terms(session: Any, batch: Batch) -> dict[str, torch.Tensor]:
    """Every active loss term of the session's method on one collated batch."""
    method = session.config.method
    if method == "ce":
        return ce_only_terms(session, batch)
    return sra_terms(session, batch) if method == "sra" else token_terms(session, batch)
