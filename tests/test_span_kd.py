"""The fused span logit KD (sra_viz.distill.span_kd) against the composition it replaces in training:
pool_spans (scaled by 1/τ from the V∩ mask), then span_logit_kd at τ = 1, divided by B; and the fused KD
+ CE against the two terms taken apart."""

from __future__ import annotations

import pytest
import torch

from sra_viz.distill.plan import MASKED_LOGIT
from sra_viz.distill.side_pass import pool_spans, span_rows
from sra_viz.distill.span_kd import _pool, pooled_span_kd, pooled_span_kd_and_ce
from sra_viz.losses import causal_lm_loss, span_logit_kd


def _case(dtype=torch.double, seed=0):
    """Two texts, 6 tokens, 9 columns (3 outside V∩), tokens outside spans, an invalid span."""
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(2, 6, 9, generator=g)).to(dtype).requires_grad_(True)  # (B, L, V)
    span = torch.tensor([[-1, 0, 0, 1, 2, 2], [0, 0, 1, -1, 2, -1]])  # (B, L)
    mass = torch.rand(2, 6, generator=g).to(dtype)  # (B, L) saliency masses, not uniform
    valid = torch.tensor([[True, True, False], [True, True, True]])  # (B, N): span 2 of text 0 invalid
    mask = torch.zeros(9, dtype=dtype)
    mask[[1, 4, 8]] = MASKED_LOGIT  # columns outside V∩
    n_rows = int(valid.sum())
    z_t = torch.randn(n_rows, 9, generator=g).to(dtype) + mask  # (M, V) teacher z/τ, masked
    a = torch.rand(n_rows, generator=g).to(dtype)  # (M,) saliency a_m
    return logits, span, mass, valid, mask, z_t, a


def _unfused(logits, span, mass, valid, mask, z_t, a, tau):
    z_s = pool_spans(logits, span, mass, valid, scale=1.0 / tau, offset=mask)  # (M, V)
    every = torch.ones(1, z_s.shape[0], dtype=torch.bool)
    return span_logit_kd(z_s[None], z_t[None], every, 1.0, None if a is None else a[None]) / valid.shape[0]


@pytest.mark.parametrize("tau", [1.0, 2.5])
@pytest.mark.parametrize("weighted", [True, False])
def test_fused_span_kd_equals_the_composition_in_value_and_token_gradient(tau, weighted):
    logits, span, mass, valid, mask, z_t, a = _case()
    a = a if weighted else None
    reference = _unfused(logits, span, mass, valid, mask, z_t, a, tau)
    (grad_ref,) = torch.autograd.grad(reference, logits)
    fused = pooled_span_kd(logits, span, mass, valid, z_t, a, tau, mask)
    (grad,) = torch.autograd.grad(fused, logits)
    assert float(reference.detach()) > 0.01
    assert float(fused.detach()) == pytest.approx(float(reference.detach()), rel=1e-12, abs=0)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-14)
    assert torch.all(grad[:, :, [1, 4, 8]] == 0)  # masked columns: exactly no gradient
    outside = (span < 0) | ((span == 2) & torch.tensor([[True], [False]]))  # no span, or an invalid one
    assert torch.all(grad[outside] == 0) and torch.all(grad[~outside].abs().sum(-1) > 0)


def test_fused_span_kd_gradient_by_finite_differences_and_upstream_scale():
    logits, span, mass, valid, mask, z_t, a = _case()
    assert torch.autograd.gradcheck(
        lambda x: pooled_span_kd(x, span, mass, valid, z_t, a, 2.0, mask), (logits,)
    )
    kd = lambda: pooled_span_kd(logits, span, mass, valid, z_t, a, 2.0, mask)  # noqa: E731
    (once,) = torch.autograd.grad(kd(), logits)
    (thrice,) = torch.autograd.grad(3.0 * kd(), logits)
    torch.testing.assert_close(thrice, 3.0 * once)


def test_fused_span_kd_in_float32_and_with_poisoned_tokens_outside_spans():
    logits, span, mass, valid, mask, z_t, a = _case(torch.float32, seed=1)
    reference = _unfused(logits, span, mass, valid, mask, z_t, a, 2.0)
    fused = pooled_span_kd(logits, span, mass, valid, z_t, a, 2.0, mask)
    assert float(fused.detach()) == pytest.approx(float(reference.detach()), rel=1e-6)
    (grad,) = torch.autograd.grad(fused, logits)
    (grad_ref,) = torch.autograd.grad(reference, logits)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-7)
    poisoned = logits.detach().clone()
    poisoned[0, 0] = float("nan")  # a token outside every span
    poisoned[0, 4] = float("inf")  # a token of an invalid span
    assert torch.isfinite(pooled_span_kd(poisoned, span, mass, valid, z_t, a, 2.0, mask))


def test_fused_span_kd_without_valid_spans_is_zero_with_a_zero_gradient():
    logits, span, mass, _, mask, _, _ = _case()
    none = torch.zeros(2, 3, dtype=torch.bool)
    loss = pooled_span_kd(logits, span, mass, none, torch.zeros(0, 9, dtype=torch.double), None, 2.0, mask)
    (grad,) = torch.autograd.grad(loss, logits)
    assert float(loss.detach()) == 0.0 and torch.all(grad == 0)


def test_sparse_and_index_add_pooling_agree():
    """The CPU's sparse product and the index_add used on other devices pool alike."""
    logits, span, mass, valid, *_ = _case()
    token_row, share, n_rows = span_rows(span, mass, valid)
    flat = logits.detach().reshape(-1, 9)
    sparse = _pool(flat, token_row, share.double(), n_rows, sparse=True)
    dense = _pool(flat.clone(), token_row, share.double(), n_rows, sparse=False)
    torch.testing.assert_close(sparse, dense, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sparse, pool_spans(logits.detach(), span, mass, valid), rtol=1e-12, atol=1e-12)
    mask = torch.linspace(-3.0, 3.0, 9, dtype=torch.double)  # (V,) added to every pooled row
    with_mask = [_pool(flat, token_row, share.double(), n_rows, sparse=k, offset=mask) for k in (True, False)]
    torch.testing.assert_close(with_mask[0], sparse + mask, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(with_mask[1], sparse + mask, rtol=1e-12, atol=1e-12)


def _labels():
    """Label rows of the flattened (2 · 6) tokens, one outside every span (0) and one of an invalid span
    (4), with their targets."""
    return torch.tensor([0, 1, 2, 4, 6, 7, 10]), torch.tensor([3, 0, 8, 1, 5, 2, 7])


@pytest.mark.parametrize("tau", [1.0, 2.5])
def test_fused_kd_and_ce_equal_the_two_terms_in_value_and_gradient(tau):
    logits, span, mass, valid, mask, z_t, a = _case(seed=2)
    rows, targets = _labels()
    kd_ref = _unfused(logits, span, mass, valid, mask, z_t, a, tau)
    ce_ref = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 9)[rows], targets
    )  # causal_lm_loss in float64
    (grad_ref,) = torch.autograd.grad(kd_ref + 0.3 * ce_ref, logits)
    kd, ce = pooled_span_kd_and_ce(logits, span, mass, valid, z_t, a, tau, mask, rows, targets)
    (grad,) = torch.autograd.grad(kd + 0.3 * ce, logits)
    assert float(kd_ref.detach()) > 0.01 and float(ce_ref.detach()) > 0.01
    assert float(kd.detach()) == pytest.approx(float(kd_ref.detach()), rel=1e-12, abs=0)
    assert float(ce.detach()) == pytest.approx(float(ce_ref.detach()), rel=1e-12, abs=0)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-14)
    # each term alone: the other's upstream gradient is 0
    kd_ref = _unfused(logits, span, mass, valid, mask, z_t, a, tau)
    (kd_only,) = torch.autograd.grad(kd_ref, logits)
    kd, _ = pooled_span_kd_and_ce(logits, span, mass, valid, z_t, a, tau, mask, rows, targets)
    torch.testing.assert_close(torch.autograd.grad(kd, logits)[0], kd_only, rtol=1e-10, atol=1e-14)
    assert torch.autograd.gradcheck(
        lambda x: sum(pooled_span_kd_and_ce(x, span, mass, valid, z_t, a, tau, mask, rows, targets)),
        (logits,),
    )


def test_fused_kd_and_ce_in_float32_and_without_label_rows():
    logits, span, mass, valid, mask, z_t, a = _case(torch.float32, seed=3)
    rows, targets = _labels()
    kd, ce = pooled_span_kd_and_ce(logits, span, mass, valid, z_t, a, 2.0, mask, rows, targets)
    kd_ref = _unfused(logits, span, mass, valid, mask, z_t, a, 2.0)
    ce_ref = causal_lm_loss(logits.reshape(-1, 9)[rows], targets)
    assert float(kd.detach()) == pytest.approx(float(kd_ref.detach()), rel=1e-6)
    assert float(ce.detach()) == pytest.approx(float(ce_ref.detach()), rel=1e-6)
    (grad,) = torch.autograd.grad(kd + ce, logits)
    (grad_ref,) = torch.autograd.grad(kd_ref + ce_ref, logits)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-7)
    none = torch.zeros(0, dtype=torch.long)
    kd, ce = pooled_span_kd_and_ce(logits, span, mass, valid, z_t, a, 2.0, mask, none, none)
    (grad,) = torch.autograd.grad(kd + ce, logits)
    (kd_grad,) = torch.autograd.grad(_unfused(logits, span, mass, valid, mask, z_t, a, 2.0), logits)
    assert float(ce.detach()) == 0.0
    torch.testing.assert_close(grad, kd_grad, rtol=1e-5, atol=1e-7)
