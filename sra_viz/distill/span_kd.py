"""Span logit KD straight from the student's token logits: pooling, softmax and KL in one autograd step,
with the student's CE on the same logits when both are trained.

The training path of L_KD (:func:`.loss_terms.sra_terms`) composes three things over the student's
vocabulary V_S (49k columns): the student's span logits pooled from its token logits
(:func:`.side_pass.pool_spans`), the teacher's span logits on V∩ and the row-wise KL
(:func:`sra_viz.losses.span_logit_kd`). :func:`pooled_span_kd` gives the same value and the same
gradient in fewer passes over (rows, V_S) tensors:

    z^S_m = mask + Σ_t s_t x_t / τ   over the tokens t of span m (x_t (V_S,) token logits,
                                     s_t = (m_t + ε) / Σ_{t'∈m} (m_t' + ε), mask 0 on V∩, -1e4 elsewhere)
    L_KD  = (1/B) Σ_m a_m · KL( softmax(z^T_m) ‖ softmax(z^S_m) )
    KL_m  = Σ_v p^T_v (z^T_v − z^S_v) − lse(z^T) + lse(z^S)     (log p = z − lse, Σ_v p^T_v = 1)
    ∂L_KD/∂x_t = (s_t / τ) · (a_m / B) · (softmax(z^S_m) − softmax(z^T_m)),   m the span of t; 0 elsewhere

Each side's softmax is taken once (one pass of exponentials); lse(z) = max(z) − log max(softmax(z)) reads
the same row again, so no log-softmax is formed. The pooling is one sparse (M, B·L) × (B·L, V_S) product
on the CPU (rows of tokens outside valid spans are never read); the forward keeps only ``p_S − p_T``
(M, V_S) for the backward, which writes the token gradient in one gather and one scaling by
``(s_t/τ)(a_m/B)``. Columns outside V∩ carry -1e4 on both sides, so their probabilities are exactly 0
and their gradient exactly 0: the KL is the KL over V∩ alone.

:func:`pooled_span_kd_and_ce` adds the student's cross-entropy on its label positions r (targets y_r):

    L_CE = (1/R) Σ_r (lse(x_r) − x_r[y_r]),      ∂L_CE/∂x_r = (softmax(x_r) − onehot(y_r)) / R

Both gradients land in one (B·L, V_S) buffer: trained as two separate terms, autograd would zero-fill a
second buffer for the CE rows and add the two (two more passes over the logits' size each step).

Example:
    >>> z_t = heads.teacher_shared_logits(c_t, tau=2.0)  # doctest: +SKIP
    >>> kd = pooled_span_kd(logits, span_index, mass, valid, z_t, a, 2.0, heads.shared_mask)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings

import torch

from .side_pass import add_pooled_rows, span_rows

try:  # the passes over the vocabulary in C (sra_viz/_span_kd.c); torch operations without it
    from sra_viz import _span_kd as _compiled
except ImportError:  # built without a compiler
    _compiled = None  # type: ignore[assignment]


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
    kd, _ = pooled_span_kd_and_ce(
        logits, span_index, pool_mass, span_valid, teacher_logits, weights, tau, mask
    )
    return kd


def pooled_span_kd_and_ce(
    logits: torch.Tensor,
    span_index: torch.Tensor,
    pool_mass: torch.Tensor,
    span_valid: torch.Tensor,
    teacher_logits: torch.Tensor,
    weights: torch.Tensor | None,
    tau: float,
    mask: torch.Tensor | None,
    ce_rows: torch.Tensor | None = None,
    ce_targets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_KD, L_CE)``: :func:`pooled_span_kd` and the student's mean cross-entropy at the flattened
    positions ``ce_rows`` (R,) (``text · L + position``, each once) against ``ce_targets`` (R,), with one
    gradient buffer for both. L_CE equals ``causal_lm_loss(logits.reshape(-1, V)[ce_rows], ce_targets)``
    (0, with a zero gradient, when R = 0 or no rows are given).
        >>> x = torch.zeros(1, 2, 4, requires_grad=True)
        >>> span, mass, valid = torch.tensor([[0, 1]]), torch.ones(1, 2), torch.tensor([[True, True]])
        >>> kd, ce = pooled_span_kd_and_ce(
        ...     x, span, mass, valid, torch.zeros(2, 4), None, 1.0, None, torch.tensor([0]), torch.tensor([3])
        ... )
        >>> float(kd.detach()), round(float(ce.detach()), 4)  # CE of a uniform row: ln 4
        (0.0, 1.3863)
    """
    token_row, share, n_rows = span_rows(span_index, pool_mass, span_valid)
    dtype = torch.promote_types(logits.dtype, torch.float32)  # half precision is computed in float32
    a = torch.ones(n_rows, device=logits.device) if weights is None else weights.detach()
    a = (a / span_valid.shape[0]).to(dtype)  # (M,) a_m / B
    offset = None if mask is None else mask.detach().to(dtype)
    share = (share * (1.0 / tau)).to(dtype)  # s_t/τ, rounded as pool_spans rounds it
    z_t = teacher_logits.detach().to(dtype)
    return _PooledSpanKD.apply(logits, token_row, share, n_rows, z_t, a, offset, ce_rows, ce_targets)


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
    flat: torch.Tensor,
    token_row: torch.Tensor,
    share: torch.Tensor,
    n_rows: int,
    sparse: bool | None = None,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """``out[r] = offset + Σ_{t: row_t = r} share_t · flat[t]``: (B·L, V) -> (M, V), reading only tokens of
    valid spans; ``offset`` (V,) or None (0). ``sparse`` (default: on the CPU, where it was measured) one
    sparse × dense product added to the offset in the same pass; else a weighted ``index_add``."""
    if flat.device.type == "cpu" if sparse is None else sparse:
        pooling = _pooling_matrix(token_row, share, n_rows, flat.shape[0])
        if offset is None:
            return pooling @ flat
        return torch.addmm(offset.expand(n_rows, -1), pooling, flat)
    if offset is None:
        out = flat.new_zeros((n_rows, flat.shape[1]))
    else:
        out = offset.expand(n_rows, -1).clone()
    return add_pooled_rows(out, flat, token_row, share)


def _softmax_and_lse(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(softmax(z), logsumexp(z))`` of each row of ``z`` (rows, V) with one pass of exponentials:
    ``lse = max(z) − log max(softmax(z))`` (the largest probability is at least 1/V: no underflow)."""
    p = torch.softmax(z, dim=-1)
    return p, z.amax(dim=-1) - p.amax(dim=-1).log()


def _compiled_fits(rows: torch.Tensor, *values: torch.Tensor | None) -> bool:
    """The compiled passes take int64 rows and float32 values on the CPU (anything else: torch)."""
    return (
        _compiled is not None
        and rows.device.type == "cpu"
        and rows.dtype == torch.long
        and all(v is None or (v.device.type == "cpu" and v.dtype == torch.float32) for v in values)
    )


def _numpy(t: torch.Tensor):
    """A C-contiguous numpy view of ``t`` (no copy when ``t`` is already contiguous)."""
    return t.detach().contiguous().numpy()


def _kl_rows_torch(
    flat: torch.Tensor,
    token_row: torch.Tensor,
    share: torch.Tensor,
    n_rows: int,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_kl_rows` with torch operations (any device and dtype; each step one pass over (M, V))."""
    z_s = _pool(flat, token_row, share, n_rows, offset=mask)  # (M, V) mask + Σ s_t x_t / τ
    p_s, lse_s = _softmax_and_lse(z_s)  # (M, V), (M,)
    p_t, lse_t = _softmax_and_lse(teacher_logits)
    # KL_m = Σ p_T (z_T − z_S) − lse_T + lse_S; masked columns have p_T = 0 exactly and add 0. An
    # element-wise product and a row sum (a (1, V) @ (V, 1) product per row loses ~100x more digits),
    # both in z_S's buffer: z_S is not read again
    gap = torch.sub(teacher_logits, z_s, out=z_s).mul_(p_t)  # (M, V) p_T (z_T − z_S)
    kl = gap.sum(dim=-1) - lse_t + lse_s  # (M,)
    del z_s, gap
    return kl, p_s.sub_(p_t)  # (M, V) p_S − p_T, in place of p_S


def _kl_rows(
    flat: torch.Tensor,
    token_row: torch.Tensor,
    share: torch.Tensor,
    n_rows: int,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(KL_m (M,), p_S − p_T (M, V))`` with ``z^S = mask + P flat`` (P from ``token_row``, ``share``).

    flat (B·L, V) token logits, token_row and share (B·L,) from :func:`.side_pass.span_rows` (share
    already holding 1/τ), teacher_logits (M, V) ``z^T``, mask (V,) or None. Float32 on the CPU: the
    compiled passes (sra_viz/_span_kd.c), which keep each span's rows in cache and cross the memory once;
    otherwise torch operations. Both give the KL to ~1e-6 relative and the difference to ~1e-7.
    """
    if n_rows == 0 or not _compiled_fits(token_row, flat, share, teacher_logits, mask):
        return _kl_rows_torch(flat, token_row, share, n_rows, teacher_logits, mask)
    n_vocab = flat.shape[-1]
    diff = torch.empty((n_rows, n_vocab), dtype=torch.float32)
    kl = torch.empty(n_rows, dtype=torch.float64)
    _compiled.span_kl(
        _numpy(flat),
        _numpy(token_row),
        _numpy(share),
        None if mask is None else _numpy(mask),
        _numpy(teacher_logits),
        diff.numpy(),
        kl.numpy(),
        n_vocab,
        torch.get_num_threads(),
    )
    return kl.to(torch.float32), diff


def _spread_rows(
    diff: torch.Tensor,
    token_row: torch.Tensor,
    scale: torch.Tensor,
    softmax_rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``grad[t] = scale_t · diff[row_t]`` (B·L, V); a token outside every valid span (row_t = M, scale_t
    = 0) gets 0: the compiled pass writes it, the torch one scales some row by 0 (a NaN in that row, which
    the session's non-finite gradient check sees in the span's own tokens anyway, comes through).

    ``softmax_rows`` = (x (B·L, V), w (B·L,), lse (B·L,) float64), compiled path only: adds
    ``w_t · exp(x_t − lse_t)`` to the tokens with w_t ≠ 0 in the same pass (the CE's softmax term)."""
    n_rows, n_vocab = diff.shape
    if not _compiled_fits(token_row, diff, scale):
        if softmax_rows is not None:
            raise ValueError("softmax rows are added on the compiled path only")
        if n_rows == 0:
            return diff.new_zeros((token_row.shape[0], n_vocab))
        row = token_row.clamp_max(n_rows - 1)  # tokens outside valid spans read some row, scaled by 0
        return diff.index_select(0, row).mul_(scale[:, None])
    grad = torch.empty((token_row.shape[0], n_vocab), dtype=torch.float32)
    extra = () if softmax_rows is None else tuple(_numpy(t) for t in softmax_rows)
    _compiled.spread_rows(
        _numpy(diff), _numpy(token_row), _numpy(scale), grad.numpy(), n_vocab, torch.get_num_threads(), *extra
    )
    return grad


def _row_lse(flat: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``log Σ_v exp(flat[r, v])`` (R,) float64 of the rows ``rows`` (R,), compiled (float32 on the CPU)."""
    lse = torch.empty(rows.shape[0], dtype=torch.float64)
    _compiled.row_lse(_numpy(flat), _numpy(rows), lse.numpy(), flat.shape[-1], torch.get_num_threads())
    return lse


class _PooledSpanKD(torch.autograd.Function):
    """Forward: ``z^S = mask + P x``, both softmaxes, the row KLs, ``Σ_m (a_m/B) KL_m``, and the CE of the
    label rows when given; it keeps ``D = p_S − p_T`` (M, V) and, for the CE, the label rows' softmax
    (R, V) or, on the compiled path, their lse (R,) (the softmax is taken again in the backward's pass).
    Backward: ``∂L/∂x_t = g_KD · share_t · (a_m/B) · D[m]`` (m = row_t), plus ``g_CE (softmax(x_r) −
    onehot(y_r)) / R`` on the label rows, in one buffer."""

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
        ce_rows: torch.Tensor | None,
        ce_targets: torch.Tensor | None,
    ):
        dtype = share.dtype
        flat = logits.reshape(-1, logits.shape[-1]).to(dtype)  # (B·L, V); a view when already float32
        kl, diff = _kl_rows(flat, token_row, share, n_rows, teacher_logits, mask)  # (M,), (M, V)
        kd = (kl * a).sum()
        p_ce = lse_ce = None
        if ce_rows is None or ce_targets is None or len(ce_rows) == 0:  # no label tokens: CE adds nothing
            ce = kd.new_zeros(())
        elif _compiled_fits(ce_rows, flat):
            lse_ce = _row_lse(flat, ce_rows)  # (R,) float64
            ce = (lse_ce - flat[ce_rows, ce_targets].double()).mean().to(dtype)
        else:
            x = flat.index_select(0, ce_rows)  # (R, V)
            p_ce, lse = _softmax_and_lse(x)
            ce = (lse - x.gather(1, ce_targets[:, None]).squeeze(1)).mean()
        ctx.save_for_backward(diff, token_row, share, a, p_ce, lse_ce, flat, ce_rows, ce_targets)
        ctx.shape, ctx.dtype = logits.shape, logits.dtype
        return kd, ce

    @staticmethod
    def backward(ctx, grad_kd: torch.Tensor, grad_ce: torch.Tensor):
        diff, token_row, share, a, p_ce, lse_ce, flat, ce_rows, ce_targets = ctx.saved_tensors
        n_tokens, n_rows = token_row.shape[0], diff.shape[0]
        row = token_row.clamp_max(max(n_rows - 1, 0))  # (B·L,)
        scale = share * a[row] * grad_kd if n_rows else torch.zeros_like(share)  # (B·L,) g (s_t/τ) (a_m/B)
        if ce_rows is None or ce_targets is None or (p_ce is None and lse_ce is None):  # no CE term
            return _spread_rows(diff, token_row, scale).reshape(ctx.shape).to(ctx.dtype), *(None,) * 8
        step = grad_ce / len(ce_rows)  # g_CE / R
        if lse_ce is not None:  # compiled: the label rows' g_CE softmax(x_r) / R added in the same pass
            weight = torch.zeros(n_tokens, dtype=torch.float32)
            weight[ce_rows] = step.float()
            lse = torch.zeros(n_tokens, dtype=torch.float64)
            lse[ce_rows] = lse_ce
            grad = _spread_rows(diff, token_row, scale, (flat, weight, lse))  # (B·L, V)
        else:
            grad = _spread_rows(diff, token_row, scale)  # (B·L, V)
            # the scaling rides on index_add (no (R, V) product); the saved softmax stays as it is, so a
            # second backward (retain_graph, gradcheck) reads it unchanged
            grad.index_add_(0, ce_rows, p_ce, alpha=float(step))
        minus = -step.expand(ce_rows.shape).to(grad.dtype)  # − g_CE / R at each label row's target
        grad.index_put_((ce_rows, ce_targets), minus, accumulate=True)
        nothing = (None,) * 8
        return grad.reshape(ctx.shape).to(ctx.dtype), *nothing
