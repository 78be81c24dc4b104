"""The compiled passes of span logit KD (sra_viz/_span_kd.c) against the torch operations they replace
(span_kd._kl_rows_torch, index_select + mul) and against float64: the pooled rows' KL and softmax
difference, the token gradient, the engine's use of them, thread counts, NaN, and bad input.

The package builds the module when a compiler is there (pyproject's optional extension); without one
the torch operations run and these tests are skipped.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sra_viz.distill.span_kd as span_kd
from sra_viz.distill.plan import MASKED_LOGIT
from sra_viz.distill.side_pass import span_rows
from sra_viz.distill.span_kd import _kl_rows, _kl_rows_torch, _spread_rows, pooled_span_kd_and_ce

compiled = pytest.importorskip("sra_viz._span_kd", reason="built without a compiler: torch operations run")


def _rows_case(seed: int, n_texts: int, length: int, n_vocab: int, tau: float = 1.0, masked: int = 3):
    """Token logits (B·L, V), token_row and share from span_rows (tokens outside spans and an invalid
    span among them), z^T (M, V) masked like the engine's, the mask (V,), and M."""
    g = torch.Generator().manual_seed(seed)
    logits = 4 * torch.randn(n_texts * length, n_vocab, generator=g)  # (B·L, V)
    span = torch.full((n_texts, length), -1, dtype=torch.long)  # (B, L)
    n_spans = 0
    for b in range(n_texts):  # spans of 1-3 tokens, a gap now and then
        t, k = 0, 0
        while t < length:
            width = int(torch.randint(1, 4, (1,), generator=g))
            if torch.rand(1, generator=g) < 0.8:
                span[b, t : t + width] = k
                k += 1
            t += width
        n_spans = max(n_spans, k)
    valid = torch.zeros(n_texts, max(n_spans, 1), dtype=torch.bool)
    for b in range(n_texts):
        valid[b, : int(span[b].max()) + 1] = True
    if valid.sum() > 1:
        valid[0, 0] = False  # an invalid span: its tokens pool nowhere
    mass = torch.rand(n_texts, length, generator=g)
    token_row, share, n_rows = span_rows(span, mass, valid)
    share = (share / tau).float()
    mask = torch.zeros(n_vocab)
    mask[torch.randperm(n_vocab, generator=g)[: min(masked, n_vocab - 1)]] = MASKED_LOGIT
    z_t = (3 * torch.randn(n_rows, n_vocab, generator=g)) / tau + mask
    return logits, token_row, share, z_t, mask, n_rows


def _float64_reference(logits, token_row, share, z_t, mask, n_rows):
    """KL_m and p_S − p_T in float64 from the same float32 inputs."""
    x, z_t, mask = logits.double(), z_t.double(), mask.double()
    z_s = mask.expand(n_rows, -1).clone()
    for t, row in enumerate(token_row.tolist()):
        if row < n_rows:
            z_s[row] += share[t].double() * x[t]
    log_s, log_t = torch.log_softmax(z_s, -1), torch.log_softmax(z_t, -1)
    p_t = log_t.exp()
    return (p_t * (log_t - log_s)).sum(-1), log_s.exp() - p_t


def test_the_engine_takes_the_compiled_passes_for_float32_on_the_cpu(monkeypatch):
    calls = []
    real = compiled.span_kl

    class Spy:
        spread_rows = compiled.spread_rows

        @staticmethod
        def span_kl(*args):
            calls.append(args[-1])
            return real(*args)

    monkeypatch.setattr(span_kd, "_compiled", Spy)
    logits, token_row, share, z_t, mask, n_rows = _rows_case(0, 2, 8, 40)
    _kl_rows(logits, token_row, share, n_rows, z_t, mask)
    assert calls == [torch.get_num_threads()]
    _kl_rows(logits.double(), token_row, share.double(), n_rows, z_t.double(), mask.double())  # torch
    assert len(calls) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_the_compiled_passes_bring_no_openmp_runtime_of_their_own():
    """Loaded after torch, the module adds no libgomp: its rows run on torch's worker threads (see the
    header of _span_kd.c). Other packages may bring their own copy; this asks about this module only."""
    script = (
        "import torch\n"
        "from pathlib import Path\n"
        "def gomp():\n"
        "    lines = Path('/proc/self/maps').read_text().splitlines()\n"
        "    return sorted({l.split()[-1] for l in lines if 'libgomp' in l.rsplit('/', 1)[-1]})\n"
        "before = gomp()\n"
        "import sra_viz._span_kd\n"
        "print(before == gomp(), before, gomp())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("True"), out.stdout


@pytest.mark.parametrize("n_vocab", [1, 7, 16, 49, 2048 + 5, 6000])
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_kl_rows_equal_torch_and_float64(n_vocab, tau):
    case = _rows_case(n_vocab, 3, 17, n_vocab, tau, masked=n_vocab // 10)
    kl, diff = _kl_rows(*case[:3], case[5], case[3], case[4])
    kl_torch, diff_torch = _kl_rows_torch(*case[:3], case[5], case[3], case[4])
    kl_64, diff_64 = _float64_reference(*case)
    assert kl.dtype == diff.dtype == torch.float32 and diff.shape == (case[5], n_vocab)
    scale = kl_64.abs() + 1.0  # the KL is a difference of terms the size of the logits: absolute near 0
    assert float(((kl.double() - kl_64).abs() / scale).max()) < 2e-6
    assert float(((kl_torch.double() - kl_64).abs() / scale).max()) < 2e-5  # torch's own error, for scale
    # float32 sums of V terms, one of them near 1: some units in the last place of 1 either way (3,000
    # drawn cases: at most 6.1e-7 here, 6.6e-7 with torch's operations)
    torch.testing.assert_close(diff.double(), diff_64, rtol=0, atol=1e-6)
    torch.testing.assert_close(diff, diff_torch, rtol=0, atol=1.5e-6)
    masked = case[4] == MASKED_LOGIT
    assert torch.all(diff[:, masked] == 0)  # columns outside V∩: both probabilities exactly 0


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_texts=st.integers(1, 4),
    length=st.integers(1, 12),
    n_vocab=st.integers(1, 70),
    tau=st.sampled_from([0.5, 1.0, 3.0]),
)
def test_kl_rows_equal_float64_on_drawn_shapes(seed, n_texts, length, n_vocab, tau):
    case = _rows_case(seed, n_texts, length, n_vocab, tau, masked=n_vocab // 3)
    kl, diff = _kl_rows(*case[:3], case[5], case[3], case[4])
    kl_64, diff_64 = _float64_reference(*case)
    assert torch.allclose(kl.double(), kl_64, rtol=2e-6, atol=3e-6)
    assert torch.allclose(diff.double(), diff_64, rtol=0, atol=1e-6)


def test_spread_rows_equals_index_select_and_scale_bit_for_bit():
    logits, token_row, share, z_t, mask, n_rows = _rows_case(3, 3, 20, 300)
    _, diff = _kl_rows(logits, token_row, share, n_rows, z_t, mask)
    scale = torch.rand(token_row.shape[0]) * (token_row < n_rows)  # 0 outside valid spans, as the engine
    grad = _spread_rows(diff, token_row, scale)
    expected = diff.index_select(0, token_row.clamp_max(n_rows - 1)).mul_(scale[:, None])
    assert torch.equal(grad, expected)
    assert torch.all(grad[token_row == n_rows] == 0)


def test_results_do_not_depend_on_the_thread_count():
    logits, token_row, share, z_t, mask, n_rows = _rows_case(4, 4, 30, 500)
    out = []
    for threads in (1, 2, 3, 64):
        diff, kl = torch.empty(n_rows, 500), torch.empty(n_rows, dtype=torch.float64)
        compiled.span_kl(
            logits.numpy(), token_row.numpy(), share.numpy(), mask.numpy(), z_t.numpy(),
            diff.numpy(), kl.numpy(), 500, threads,
        )  # fmt: skip
        grad = torch.empty(token_row.shape[0], 500)
        compiled.spread_rows(diff.numpy(), token_row.numpy(), share.numpy(), grad.numpy(), 500, threads)
        out.append((kl, diff, grad))
    for kl, diff, grad in out[1:]:
        assert torch.equal(kl, out[0][0]) and torch.equal(diff, out[0][1]) and torch.equal(grad, out[0][2])


def test_a_non_finite_logit_in_a_span_gives_a_non_finite_kl_and_one_outside_changes_nothing():
    logits, token_row, share, z_t, mask, n_rows = _rows_case(5, 2, 10, 30)
    clean, _ = _kl_rows(logits, token_row, share, n_rows, z_t, mask)
    inside = int((token_row < n_rows).nonzero()[0])
    outside = (token_row == n_rows).nonzero()
    for bad in (float("nan"), float("inf")):
        poisoned = logits.clone()
        poisoned[inside, 3] = bad
        kl, _ = _kl_rows(poisoned, token_row, share, n_rows, z_t, mask)
        assert not torch.isfinite(kl[token_row[inside]])  # the session's non-finite check sees it
        if len(outside):
            poisoned = logits.clone()
            poisoned[int(outside[0])] = bad
            kl, _ = _kl_rows(poisoned, token_row, share, n_rows, z_t, mask)
            assert torch.equal(kl, clean)


def test_fused_kd_and_ce_in_float32_match_float64_through_the_compiled_passes():
    """The engine's float32 path (compiled) against the same function in float64 (torch operations)."""
    g = torch.Generator().manual_seed(6)
    logits = (3 * torch.randn(2, 9, 300, generator=g)).requires_grad_(True)
    span = torch.tensor([[0, 0, 1, 2, 2, 2, -1, 3, 4], [0, 1, 1, -1, 2, 3, 3, 4, -1]])
    mass = torch.rand(2, 9, generator=g)
    valid = torch.ones(2, 5, dtype=torch.bool)
    mask = torch.zeros(300)
    mask[::7] = MASKED_LOGIT
    z_t = 2 * torch.randn(10, 300, generator=g) + mask
    a = torch.rand(10, generator=g)
    rows, targets = torch.tensor([1, 2, 5, 9, 12, 16]), torch.tensor([4, 8, 15, 16, 23, 42])
    args = (span, mass, valid)
    kd, ce = pooled_span_kd_and_ce(logits, *args, z_t, a, 2.0, mask, rows, targets)
    (grad,) = torch.autograd.grad(kd + ce, logits)
    x64 = logits.detach().double().requires_grad_(True)
    kd64, ce64 = pooled_span_kd_and_ce(
        x64, span, mass.double(), valid, z_t.double(), a.double(), 2.0, mask.double(), rows, targets
    )
    (grad64,) = torch.autograd.grad(kd64 + ce64, x64)
    assert float(kd.detach()) == pytest.approx(float(kd64.detach()), rel=2e-6)
    assert float(ce.detach()) == pytest.approx(float(ce64.detach()), rel=2e-6)
    torch.testing.assert_close(grad.double(), grad64, rtol=0, atol=1e-7)


def test_bad_buffers_are_refused_with_a_value_error():
    logits, token_row, share, z_t, mask, n_rows = _rows_case(7, 2, 6, 20)
    diff, kl = torch.empty(n_rows, 20), torch.empty(n_rows, dtype=torch.float64)

    def call(**change):
        parts = dict(x=logits, rows=token_row, share=share, mask=mask, z_t=z_t, diff=diff, kl=kl, n_vocab=20)
        parts.update(change)
        numpy = [None if v is None else v.numpy() for v in list(parts.values())[:7]]
        compiled.span_kl(*numpy, parts["n_vocab"], 2)

    call()  # the case itself is fine
    bad_rows = token_row.clone()
    bad_rows[0] = n_rows + 1
    with pytest.raises(ValueError, match="outside"):
        call(rows=bad_rows)
    bad_rows[0] = -1
    with pytest.raises(ValueError, match="outside"):
        call(rows=bad_rows)
    with pytest.raises(ValueError, match="x holds"):
        call(x=logits[:-1])
    with pytest.raises(ValueError, match="mask holds"):
        call(mask=mask[:-1])
    with pytest.raises(ValueError, match="z_t holds"):
        call(z_t=z_t[:, :-1].contiguous())
    with pytest.raises(ValueError, match="n_vocab"):
        call(n_vocab=0)
    with pytest.raises(TypeError):  # a read-only output
        compiled.span_kl(
            logits.numpy(), token_row.numpy(), share.numpy(), None, z_t.numpy(), bytes(diff.numpy()),
            kl.numpy(), 20, 1,
        )  # fmt: skip
    grad = torch.empty(token_row.shape[0], 20)
    with pytest.raises(ValueError, match="grad holds"):
        compiled.spread_rows(diff.numpy(), token_row.numpy(), share.numpy(), grad[:-1].numpy(), 20, 1)


def test_row_lse_and_the_softmax_rows_of_the_backward_equal_torch():
    """The CE's compiled parts: the label rows' log-normaliser, and their softmax added to the gradient."""
    logits, token_row, share, z_t, mask, n_rows = _rows_case(8, 3, 15, 700, tau=0.5)
    logits[4] += 60.0  # a row with large logits: exp(x − lse) must stay exact near its top
    rows = torch.tensor([0, 4, 5, 11, 44])  # (R,) some inside spans, some outside
    lse = span_kd._row_lse(logits, rows)
    torch.testing.assert_close(lse, torch.logsumexp(logits[rows].double(), -1), rtol=0, atol=2e-6)
    _, diff = _kl_rows(logits, token_row, share, n_rows, z_t, mask)
    scale = torch.rand(token_row.shape[0]) * (token_row < n_rows)
    weight = torch.zeros(token_row.shape[0])
    weight[rows] = torch.tensor([0.5, -1.0, 2.0, 0.25, 1.0])
    lse_t = torch.zeros(token_row.shape[0], dtype=torch.float64)
    lse_t[rows] = lse
    grad = _spread_rows(diff, token_row, scale, (logits, weight, lse_t))
    expected = diff.index_select(0, token_row.clamp_max(n_rows - 1)).mul_(scale[:, None]).double()
    expected[rows] += weight[rows, None].double() * torch.softmax(logits[rows].double(), -1)
    torch.testing.assert_close(grad.double(), expected, rtol=0, atol=2e-6)
    with pytest.raises(ValueError, match="outside"):
        compiled.row_lse(logits.numpy(), torch.tensor([45]).numpy(), lse.numpy()[:1].copy(), 700, 1)
    with pytest.raises(ValueError, match="lse holds"):
        compiled.row_lse(logits.numpy(), rows.numpy(), lse.numpy()[:2].copy(), 700, 1)
    with pytest.raises(ValueError, match="ce_lse holds"):
        compiled.spread_rows(
            diff.numpy(), token_row.numpy(), scale.numpy(), grad.numpy(), 700, 1,
            logits.numpy(), weight.numpy(), lse_t[:-1].numpy(),
        )  # fmt: skip
