"""One side's forward pass over a batch, its token masses and span CoMs (training and probe share it).

Reuses :func:`sra_viz.forward.forward_features` (hooks keep only the mapped layers and the attentions
that give their masses; the LM head is skipped) and :mod:`sra_viz.features` (token_mass,
span_masses, span_centers).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from ..features import POOL_EPS, span_centers, span_masses, token_mass, token_weights
from ..forward import ForwardResult, forward_features
from .batch import Batch


@dataclass
class SideView:
    """A model as forward_features wants it: ``.model``, ``.tokenizer``, ``.name`` (a trainable copy fits)."""

    model: Any
    tokenizer: Any
    name: str


def autocast_for(device: torch.device | str, dtype: str):
    """bfloat16 autocast on CUDA when asked; a no-op context otherwise (CPU runs stay float32)."""
    if dtype == "bfloat16" and str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class SideOutput:
    """What a side contributes to the losses: hidden states of its layers, masses, CoMs."""

    forward: ForwardResult
    span_index: torch.Tensor  # (B, L) long, -1 = none, padded like the ids
    pool_mass: dict[int, torch.Tensor]  # layer -> (B, L) masses pooling its CoMs (uniform when unweighted)
    span_mass: dict[int, torch.Tensor]  # layer -> (B, N) attention span masses M_k (absent: uniform masses)
    centers: dict[int, torch.Tensor]  # layer -> (B, N, D)


def run_side(
    loaded: Any,
    batch: Batch,
    side: str,
    layers: list[int],
    mass_layers: dict[int, int | None],
    mass_mode: str,
    weighted_pooling: bool,
    grad: bool,
    dtype: str = "float32",
    centers_for: list[int] | None = None,
) -> SideOutput:
    """Forward ``batch`` through one side, keeping the hidden states of ``layers``; pool masses for every
    layer of ``mass_layers`` (layer -> block whose attention gives its masses, None = uniform) and CoMs
    for ``centers_for`` (default: every layer of ``mass_layers``).

    Only the attentions named in ``mass_layers`` are kept, and each is dropped once reduced to masses.
    Example:
        >>> out = run_side(
        ...     pair.teacher, batch, "teacher", [17], {17: 17}, "last_token", True, grad=False
        ... )  # doctest: +SKIP
    """
    device = next(loaded.model.parameters()).device
    blocks = sorted({b for b in mass_layers.values() if b is not None}) if mass_mode != "uniform" else []
    with autocast_for(device, dtype):
        fwd = forward_features(
            loaded, batch.ids(side), layers=layers, attention_layer=None, attention_layers=blocks, grad=grad
        )
    span_index = (batch.teacher_span if side == "teacher" else batch.student_span).to(device)  # (B, L)
    valid = span_index >= 0
    uniform = token_mass(None, fwd.attention_mask, "uniform", valid_mask=valid)  # (B, L)
    by_block = {
        block: token_mass(fwd.attentions[block], fwd.attention_mask, mass_mode, valid_mask=valid)
        for block in blocks
    }  # block -> (B, L)
    fwd.attentions, fwd.attention = {}, None  # (B, H, L, L) each: no longer needed, let them go early
    pool_mass, span_mass = {}, {}
    for layer, block in mass_layers.items():
        mass = by_block.get(block, uniform) if block is not None else uniform
        if block is not None and block in by_block:
            span_mass[layer] = span_masses(mass, span_index, batch.n_spans)  # (B, N)
        pool_mass[layer] = mass if weighted_pooling else uniform
    centers = {}
    for layer in centers_for if centers_for is not None else list(mass_layers):
        centers[layer], _ = span_centers(
            fwd.hidden[layer].float(), pool_mass[layer], span_index, batch.n_spans
        )
    return SideOutput(fwd, span_index, pool_mass, span_mass, centers)  # centers: layer -> (B, N, D)


def pool_spans(
    values: torch.Tensor,
    span_index: torch.Tensor,
    pool_mass: torch.Tensor,
    span_valid: torch.Tensor,
    scale: float = 1.0,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pool per-token rows (B, L, V) to the M valid spans (M, V), weighting tokens exactly as
    :func:`sra_viz.features.span_centers` does: ``(m_t + POOL_EPS) / Σ_{t∈k} (m_t + POOL_EPS)``; the result is
    ``offset + scale · pooled`` (``offset`` (V,) broadcast over rows, no gradient) at no extra pass.

    Rows come in the order of ``span_valid.nonzero()``. Used on the token logits: the LM head is linear,
    so ``head(c_k) = Σ_t w_t head(h_t)`` and the student's CoM logits come from the logits the CE term
    computes anyway. Each token is in at most one span, so this is one weighted ``index_add`` (B·L·V
    multiply-adds), not a matmul. span_index, pool_mass (B, L); span_valid (B, N). Span logit KD in
    training pools, softmaxes and takes the KL in one step (:mod:`.span_kd`).
        >>> v = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
        >>> pool_spans(
        ...     v, torch.tensor([[0, 0, 1]]), torch.tensor([[0.25, 0.75, 0.0]]), torch.tensor([[True, True]])
        ... )
        tensor([[0.2500, 0.7500],
                [5.0000, 5.0000]])
    """
    token_row, share, n_rows = span_rows(span_index, pool_mass, span_valid)
    return _PoolRows.apply(values, token_row, (share * scale).to(values.dtype), n_rows, offset)


def span_rows(
    span_index: torch.Tensor, pool_mass: torch.Tensor, span_valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Where each token pools to: ``(token_row (B·L,) long, share (B·L,) float32, M)``.

    ``token_row`` is the row (in ``span_valid.nonzero()`` order) of the valid span holding the token, M
    for a token outside every valid span; ``share_t = (m_t + POOL_EPS) / Σ_{t'∈k} (m_t' + POOL_EPS)``
    there, 0 elsewhere. M = number of valid spans. span_index, pool_mass (B, L); span_valid (B, N).
        >>> span_rows(torch.tensor([[0, 0, -1, 1]]), torch.ones(1, 4), torch.tensor([[True, False]]))
        (tensor([0, 0, 1, 1]), tensor([0.5000, 0.5000, 0.0000, 0.0000]), 1)
    """
    in_span = span_index >= 0  # (B, L)
    index = span_index.clamp_min(0)
    weights = token_weights(pool_mass.float(), span_index)  # (B, L), as span_centers weighs tokens
    totals = weights.new_zeros(span_valid.shape).scatter_add(1, index, weights)  # (B, N)
    n_rows = int(span_valid.sum())
    row_of = torch.full(span_valid.shape, n_rows, dtype=torch.long, device=span_index.device)  # (B, N)
    row_of[span_valid] = torch.arange(n_rows, device=span_index.device)
    # output row of each token; n_rows marks tokens outside a valid span (weight 0)
    token_row = torch.where(in_span, row_of.gather(1, index), n_rows).reshape(-1)  # (B·L,)
    share = torch.where(
        token_row < n_rows, (weights / totals.gather(1, index).clamp_min(POOL_EPS)).reshape(-1), 0.0
    )
    return token_row, share, n_rows


def add_pooled_rows(
    out: torch.Tensor, flat: torch.Tensor, token_row: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """``out[r] += Σ_{t: row_t = r} scale_t · flat[t]`` in place, reading only the tokens of valid spans
    (``row_t < M``); out (M, V), flat (B·L, V), token_row and scale (B·L,). Returns ``out``."""
    keep = (token_row < out.shape[0]).nonzero().squeeze(-1)  # (T,) tokens of valid spans
    return out.index_add_(0, token_row[keep], flat.index_select(0, keep).mul_(scale[keep, None]))


class _PoolRows(torch.autograd.Function):
    """``out[r] = Σ_{t: row_t = r} scale_t · values[t]`` over flattened tokens, with the gradient
    ``grad_values[t] = scale_t · grad_out[row_t]`` written in one gather (autograd through
    index_select/index_add would make two more passes over the (B·L, V) tensor and one more zero fill)."""

    @staticmethod
    def forward(
        ctx,
        values: torch.Tensor,
        token_row: torch.Tensor,
        scale: torch.Tensor,
        n_rows: int,
        offset: torch.Tensor | None,
    ):
        flat = values.reshape(-1, values.shape[-1])  # (B·L, V)
        if offset is None:
            out = values.new_zeros((n_rows, flat.shape[1]))
        else:
            out = offset.detach().to(values.dtype).reshape(1, -1).expand(n_rows, -1).clone()
        add_pooled_rows(out, flat, token_row, scale)
        ctx.save_for_backward(token_row, scale)
        ctx.shape = values.shape
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        token_row, scale = ctx.saved_tensors
        if grad_out.shape[0] == 0:
            return grad_out.new_zeros(ctx.shape), None, None, None, None
        # tokens outside valid spans read some row and get scale 0 (a NaN there is caught by the
        # session's non-finite gradient check, which sees the same NaN in the span's own tokens)
        grad = grad_out.index_select(0, token_row.clamp_max(grad_out.shape[0] - 1)).mul_(scale[:, None])
        return grad.reshape(ctx.shape), None, None, None, None
