"""Span logit KD straight from the student's token logits: pooling, log-softmax and KL in one autograd step.

The training path of L_KD (:func:`.loss_terms.sra_terms`) composes three things over the student's
vocabulary V_S (49k columns): the student's span logits pooled from its token logits
(:func:`.side_pass.pool_spans`), the teacher's span logits on V∩ and the row-wise KL
(:func:`sra_viz.losses.span_logit_kd`). :func:`pooled_span_kd` gives the same value and the same
gradient in fewer passes over (rows, V_S) tensors:

    z^S_m = mask + Σ_t s_t x_t / τ   over the tokens t of span m (x_t (V_S,) token logits,
                                     s_t = (m_t + ε) / Σ_{t'∈m} (m_t' + ε), mask 0 on V∩, -1e4 elsewhere)
    L_KD  = (1/B) Σ_m a_m · KL( softmax(z^T_m) ‖ softmax(z^S_m) )
    ∂L_KD/∂x_t = (s_t / τ) · (a_m / B) · (softmax(z^S_m) − softmax(z^T_m)),   m the span of t; 0 elsewhere

The pooling is one sparse (M, B·L) × (B·L, V_S) product on the CPU (rows of tokens outside valid spans
are never read); the forward keeps only ``p_S − p_T`` (M, V_S) for the backward, which writes the token
gradient in one gather and one scaling by ``(s_t/τ)(a_m/B)``. Columns outside V∩ carry -1e4 on both
sides, so their probabilities are exactly 0 and their gradient exactly 0: the KL is the KL over V∩ alone.

Example:
    >>> z_t = heads.teacher_shared_logits(c_t, tau=2.0)  # doctest: +SKIP
    >>> kd = pooled_span_kd(logits, span_index, mass, valid, z_t, a, 2.0, heads.shared_mask)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings

import torch

from .side_pass import add_pooled_rows, span_rows


def pooled_span_kd(
    logits: torch.Tensor,
    span_index: torch.Tensor,
    pool_mass: torch.Tensor,
    span_valid: torch.Tensor,
    teacher_logits: torch.Tensor,
    weights: torch.Tensor | None,
    tau: float,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """``L_KD = (1/B) Σ_m a_m KL(softmax(z^T_m) ‖ softmax(z^S_m))`` with ``z^S`` pooled from ``logits``.

    logits (B, L, V) token logits (graph kept); span_index, pool_mass (B, L); span_valid (B, N);
    teacher_logits (M, V) ``z^T/τ`` of the M valid spans in ``span_valid.nonzero()`` order, masked as
    ``mask`` (V,) masks the student (None: no mask), no gradient; weights (M,) a_m (None: 1); B =
    ``span_valid.shape[0]``. Equal to ``span_logit_kd(pool_spans(logits, ..., 1/τ, mask)[None],
    teacher_logits[None], ones, 1.0, weights[None]) / B``.
        >>> x = torch.zeros(1, 3, 2, requires_grad=True)
        >>> z_t = torch.zeros(2, 2)
        >>> span, mass, valid = torch.tensor([[0, 0, 1]]), torch.ones(1, 3), torch.tensor([[True, True]])
        >>> kd = pooled_span_kd(x, span, mass, valid, z_t, None, 2.0, None)  # equal uniform rows: KL 0
        >>> float(kd.detach()), kd.requires_grad
        (0.0, True)
    """
    token_row, share, n_rows = span_rows(span_index, pool_mass, span_valid)
    dtype = torch.promote_types(logits.dtype, torch.float32)  # half precision is computed in float32
    a = torch.ones(n_rows, device=logits.device) if weights is None else weights.detach()
    a = (a / span_valid.shape[0]).to(dtype)  # (M,) a_m / B
    offset = None if mask is None else mask.detach().to(dtype)
    share = (share * (1.0 / tau)).to(dtype)  # s_t/τ, rounded as pool_spans rounds it
    return _PooledSpanKD.apply(logits, token_row, share, n_rows, teacher_logits.detach().to(dtype), a, offset)


def _pooling_matrix(token_row: torch.Tensor, share: torch.Tensor, n_rows: int, n_tokens: int) -> torch.Tensor:
    """The sparse (M, B·L) CSR matrix P with ``P[row_t, t] = share_t`` for the tokens of valid spans."""
    keep = (token_row < n_rows).nonzero().squeeze(-1)  # (T,) tokens of valid spans
    rows = token_row[keep]
    order = torch.argsort(rows, stable=True)  # CSR: the entries of a row together, tokens in order
    columns, rows = keep[order], rows[order]
    crow = torch.zeros(n_rows + 1, dtype=torch.long, device=token_row.device)
    crow[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            crow, columns, share[columns], (n_rows, n_tokens), check_invariants=False
        )


def _pool(
    flat: torch.Tensor, token_row: torch.Tensor, share: torch.Tensor, n_rows: int, sparse: bool | None = None
) -> torch.Tensor:
    """``out[r] = Σ_{t: row_t = r} share_t · flat[t]``: (B·L, V) -> (M, V), reading only tokens of valid
    spans. ``sparse`` (default: on the CPU, where it was measured) one sparse × dense product; else a
    weighted ``index_add``."""
    if flat.device.type == "cpu" if sparse is None else sparse:
        return _pooling_matrix(token_row, share, n_rows, flat.shape[0]) @ flat
    return add_pooled_rows(flat.new_zeros((n_rows, flat.shape[1])), flat, token_row, share)


class _PooledSpanKD(torch.autograd.Function):
    """Forward: ``z^S = mask + P x``, ``log p_S``, ``log p_T``, the row KLs, ``Σ_m (a_m/B) KL_m``; it keeps
    ``D = p_S − p_T`` (M, V) alone. Backward: ``∂L/∂x_t = g · share_t · (a_m/B) · D[m]``, m = row_t (one
    gather and one scaling pass)."""

    @staticmethod
    def forward(
        ctx,
        logits: torch.Tensor,
        token_row: torch.Tensor,
        share: torch.Tensor,
        n_rows: int,
        teacher_logits: torch.Tensor,
        a: torch.Tensor,
        mask: torch.Tensor | None,
    ):
        dtype = share.dtype
        flat = logits.reshape(-1, logits.shape[-1]).to(dtype)  # (B·L, V); a view when already float32
        z_s = _pool(flat, token_row, share, n_rows)  # (M, V) Σ s_t x_t / τ
        if mask is not None:
            z_s.add_(mask)
        log_p_s = torch.log_softmax(z_s, dim=-1)  # (M, V)
        del z_s
        log_p_t = torch.log_softmax(teacher_logits, dim=-1)  # (M, V)
        p_t = log_p_t.exp()
        # KL_m = Σ p_T log p_T − Σ p_T log p_S as row-wise dot products (masked columns: p = 0, log p
        # finite, so they add exactly 0)
        row = p_t.unsqueeze(-2)  # (M, 1, V)
        kl = (row @ log_p_t.unsqueeze(-1) - row @ log_p_s.unsqueeze(-1)).reshape(-1)  # (M,)
        diff = log_p_s.exp_().sub_(p_t)  # (M, V) p_S − p_T, in place of log p_S
        ctx.save_for_backward(diff, token_row, share, a)
        ctx.shape, ctx.dtype = logits.shape, logits.dtype
        return (kl * a).sum()

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        diff, token_row, share, a = ctx.saved_tensors
        if diff.shape[0] == 0:
            return grad_loss.new_zeros(ctx.shape, dtype=ctx.dtype), None, None, None, None, None, None
        # tokens outside valid spans read some row and get share 0 (a NaN there is caught by the
        # session's non-finite gradient check, which sees the same NaN in the span's own tokens)
        row = token_row.clamp_max(diff.shape[0] - 1)  # (B·L,)
        scale = share * a[row] * grad_loss  # (B·L,) g · (s_t/τ) · (a_m/B): one pass over (B·L, V) below
        grad = diff.index_select(0, row).mul_(scale[:, None])  # (B·L, V)
        return grad.reshape(ctx.shape).to(ctx.dtype), None, None, None, None, None, None
