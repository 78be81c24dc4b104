"""Losses (formulas checked against independent computations) and the shared vocabulary V∩."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sra_viz.errors import SraVizError
from sra_viz.losses import (
    SpanProjector,
    aligned_response_positions,
    causal_lm_loss,
    dynamics_loss,
    exact_token_kd,
    geometric_loss,
    pair_weights,
    span_logit_kd,
    span_loss,
    total_loss,
    uld_loss,
    uniform_weights,
)


def _valid(*counts: int, n: int | None = None) -> torch.Tensor:
    n = n or max(counts)
    return torch.arange(n)[None, :] < torch.tensor(counts)[:, None]  # (B, N)


def _random_orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(
        torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    return q.float()


# ------------------------------------------------------------------ projector and span loss


def test_orthogonal_projector_preserves_norms_and_xavier_differs():
    proj = SpanProjector(576, 640, "orthogonal")
    x = torch.randn(10, 576)
    assert torch.allclose(proj(x).norm(dim=-1), x.norm(dim=-1), rtol=1e-4)
    xav = SpanProjector(576, 640, "xavier")
    bound = math.sqrt(6 / (576 + 640))
    assert xav.weight.abs().max() <= bound and not torch.allclose(
        xav(x).norm(dim=-1), x.norm(dim=-1), rtol=1e-2
    )
    with pytest.raises(SraVizError, match="projector init"):
        SpanProjector(2, 3, "kaiming")


def test_span_loss_matches_hand_computation_and_ignores_padding():
    torch.manual_seed(0)
    proj = SpanProjector(4, 6)
    c_s, c_t = torch.randn(2, 3, 4), torch.randn(2, 3, 6)
    valid = _valid(3, 2)
    w = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]])
    got = span_loss([c_s], [c_t], [proj], w, valid)
    cos = F.cosine_similarity(c_s @ proj.weight, c_t, dim=-1)
    expected = ((1 - cos[0]) * w[0]).sum() / 2 + ((1 - cos[1, :2]) * w[1, :2]).sum() / 2
    assert torch.allclose(got, expected, atol=1e-6)
    # a padded span's content never matters
    c_s2, c_t2 = c_s.clone(), c_t.clone()
    c_s2[1, 2], c_t2[1, 2] = 100.0, -7.0
    assert torch.allclose(span_loss(c_s2, c_t2, proj, w, valid), got)


def test_span_loss_bounds_and_gradients():
    valid = _valid(4)
    c_t = torch.randn(1, 4, 3)
    ident = torch.nn.Identity()
    assert float(span_loss(c_t, c_t, ident, uniform_weights(valid), valid)) == pytest.approx(0.0, abs=1e-6)
    assert float(span_loss(-c_t, c_t, ident, uniform_weights(valid), valid)) == pytest.approx(2.0, abs=1e-6)
    proj = SpanProjector(5, 3)
    c_s = torch.randn(1, 4, 5, requires_grad=True)
    teacher = c_t.clone().requires_grad_(True)
    span_loss([c_s], [teacher], [proj], uniform_weights(valid), valid).backward()
    assert c_s.grad is not None and proj.weight.grad is not None and teacher.grad is None


def test_span_loss_sums_layer_pairs_with_weights():
    valid = _valid(3)
    w = uniform_weights(valid)
    a = [torch.randn(1, 3, 4) for _ in range(2)]
    b = [torch.randn(1, 3, 4) for _ in range(2)]
    ident = [torch.nn.Identity(), torch.nn.Identity()]
    single = [span_loss(a[i], b[i], ident[i], w, valid) for i in range(2)]
    both = span_loss(a, b, ident, w, valid, layer_weights=[1.0, 0.5])
    assert torch.allclose(both, single[0] + 0.5 * single[1])
    with pytest.raises(SraVizError, match="one student center"):
        span_loss(a, b[:1], ident, w, valid)


# ------------------------------------------------------------------ geometry


def test_pair_weights_exclude_diagonal_and_normalise():
    w = torch.tensor([[0.5, 0.3, 0.2, 0.0]])
    pi = pair_weights(w, _valid(3, n=4))
    assert torch.all(torch.diagonal(pi[0]) == 0)
    assert float(pi.sum()) == pytest.approx(1.0)
    assert torch.all(pi[0, 3] == 0) and torch.all(pi[0, :, 3] == 0)
    expected = 0.5 * 0.3 / (2 * (0.5 * 0.3 + 0.5 * 0.2 + 0.3 * 0.2))
    assert float(pi[0, 0, 1]) == pytest.approx(expected)
    assert float(pair_weights(torch.tensor([[1.0, 0.0]]), _valid(1, n=2)).sum()) == 0.0  # one span: no pair


def test_geometric_loss_matches_hand_computation():
    s = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    t = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]])
    valid = _valid(3)
    gs = torch.tensor([[1, 0, 2**-0.5], [0, 1, 2**-0.5], [2**-0.5, 2**-0.5, 1]])
    gt = torch.tensor([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]])
    off = ~torch.eye(3, dtype=torch.bool)
    expected = ((gs - gt) ** 2)[off].mean()
    assert float(geometric_loss(s, t, uniform_weights(valid), valid)) == pytest.approx(
        float(expected), rel=1e-5
    )


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 7), scale=st.floats(0.1, 10.0))
def test_geometric_loss_is_invariant_to_rotation_and_scale_of_either_side(seed, n, scale):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(1, n, 5, generator=g), torch.randn(1, n, 3, generator=g)
    valid = _valid(n)
    w = torch.softmax(torch.randn(1, n, generator=g), -1)
    base = geometric_loss(s, t, w, valid)
    moved = geometric_loss(
        scale * s @ _random_orthogonal(5, seed), t @ _random_orthogonal(3, seed + 1), w, valid
    )
    assert float(base) >= 0
    assert float(moved) == pytest.approx(float(base), rel=1e-3, abs=1e-5)


# ------------------------------------------------------------------ logit losses


def test_span_logit_kd_matches_kl_div_and_its_options():
    torch.manual_seed(1)
    z_s, z_t = torch.randn(2, 3, 11), torch.randn(2, 3, 11)
    valid = _valid(3, 1)
    tau = 2.0
    kl = F.kl_div(
        F.log_softmax(z_s / tau, -1), F.log_softmax(z_t / tau, -1), log_target=True, reduction="none"
    ).sum(-1)
    expected_sum = (kl[0].sum() + kl[1, 0]) / 2
    assert float(span_logit_kd(z_s, z_t, valid, tau)) == pytest.approx(float(expected_sum), rel=1e-5)
    w = torch.tensor([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0]])
    expected_w = ((kl[0] * w[0]).sum() + kl[1, 0]) / 2
    assert float(span_logit_kd(z_s, z_t, valid, tau, weights=w)) == pytest.approx(float(expected_w), rel=1e-5)
    assert float(span_logit_kd(z_t, z_t, valid, tau)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(SraVizError, match="must both be"):
        span_logit_kd(z_s[..., :5], z_t, valid)


def test_span_logit_kd_sends_no_gradient_to_the_teacher():
    z_s, z_t = torch.randn(1, 2, 5, requires_grad=True), torch.randn(1, 2, 5, requires_grad=True)
    span_logit_kd(z_s, z_t, _valid(2)).backward()
    assert z_s.grad is not None and z_t.grad is None


def test_causal_lm_loss_matches_cross_entropy_with_mask():
    logits, targets = torch.randn(2, 4, 9), torch.randint(0, 9, (2, 4))
    mask = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 0]], dtype=torch.bool)
    expected = F.cross_entropy(logits[mask], targets[mask])
    assert float(causal_lm_loss(logits, targets, mask)) == pytest.approx(float(expected), rel=1e-6)
    assert float(causal_lm_loss(logits, targets, torch.zeros_like(mask))) == 0.0


def test_aligned_response_positions_pairs_from_each_start():
    rows, s_pos, t_pos = aligned_response_positions([3, 0], [6, 2], [5, 1], [7, 9])
    assert rows.tolist() == [0, 0, 1, 1]
    assert s_pos.tolist() == [3, 4, 0, 1] and t_pos.tolist() == [5, 6, 1, 2]


def test_uld_loss_is_sorted_l1_with_zero_padding():
    torch.manual_seed(2)
    z_s, z_t = torch.randn(3, 4), torch.randn(3, 7)
    p_s = torch.softmax(z_s, -1).sort(-1, descending=True).values
    p_t = torch.softmax(z_t, -1).sort(-1, descending=True).values
    expected = (F.pad(p_s, (0, 3)) - p_t).abs().sum(-1).mean()
    assert float(uld_loss(z_s, z_t)) == pytest.approx(float(expected), rel=1e-5)
    # invariant to any vocabulary permutation of either side, 0 for the same sorted distribution
    assert float(uld_loss(z_s[:, torch.randperm(4)], z_t[:, torch.randperm(7)])) == pytest.approx(
        float(expected), rel=1e-5
    )
    padded = torch.cat([z_s, torch.full((3, 3), -1e9)], -1)  # extra tokens of probability 0
    assert float(uld_loss(z_s, padded)) == pytest.approx(0.0, abs=1e-6)
    # a high temperature flattens both sides: same-size vocabularies then nearly agree
    assert float(uld_loss(z_s, z_t[:, :4], tau=100.0)) < 0.05 < float(uld_loss(z_s, z_t[:, :4], tau=1.0))


def test_exact_token_kd_is_mean_kl():
    z_s, z_t = torch.randn(4, 6), torch.randn(4, 6)
    kl = F.kl_div(F.log_softmax(z_s, -1), F.log_softmax(z_t, -1), log_target=True, reduction="none").sum(-1)
    assert float(exact_token_kd(z_s, z_t, tau=1.0)) == pytest.approx(float(kl.mean()), rel=1e-5)
    assert float(exact_token_kd(z_s[:0], z_t[:0])) == 0.0


def test_dynamics_loss_compares_layer_differences():
    valid = _valid(3)
    w = uniform_weights(valid)
    ident = [torch.nn.Identity()] * 2
    s = [torch.randn(1, 3, 4) for _ in range(2)]
    assert float(dynamics_loss(s[:1], s[:1], ident[:1], w, valid)) == 0.0
    t = [s[0] * 2, s[0] * 2 + 3 * (s[1] - s[0])]  # same direction of change, other scale and start
    assert float(dynamics_loss(s, t, ident, w, valid)) == pytest.approx(0.0, abs=1e-5)
    assert float(dynamics_loss(s, [t[1], t[0]], ident, w, valid)) == pytest.approx(2.0, abs=1e-5)


def test_total_loss_combines_present_terms():
    terms = {
        "ce": torch.tensor(4.0),
        "span": torch.tensor(1.0),
        "geo": torch.tensor(0.5),
        "kd": torch.tensor(2.0),
    }
    assert float(total_loss(terms, alpha=0.25, lambda_geo=2.0)) == pytest.approx(
        0.25 * 4 + 0.75 * (1 + 1 + 2)
    )
    assert float(total_loss({"uld": torch.tensor(2.0)}, alpha=0.5, lambda_geo=3.0)) == pytest.approx(1.0)
    with pytest.raises(SraVizError, match="unknown terms"):
        total_loss({"bogus": torch.tensor(1.0)}, alpha=0.5, lambda_geo=3.0)


# ------------------------------------------------------------------ shared vocabulary


def test_token_bytes_reads_each_family():
    from sra_viz.vocab import token_bytes

    assert token_bytes("Ġthe", "byte_level") == b" the" == token_bytes("▁the", "metaspace")
    assert token_bytes("Ċ", "byte_level") == b"\n"
    assert token_bytes("<0xE6>", "metaspace") == b"\xe6"
    assert token_bytes("æĿ±", "byte_level") == "東".encode()
    assert token_bytes("##ing", "wordpiece") == b"ing"


def test_shared_vocab_of_the_default_pair(teacher_tokenizer, student_tokenizer, tmp_path, monkeypatch):
    from sra_viz import vocab

    monkeypatch.setenv("SRA_VIZ_HOME", str(tmp_path))
    monkeypatch.setattr(vocab, "_MEMORY", {})
    shared = vocab.shared_vocab(teacher_tokenizer, student_tokenizer)
    t_ids, s_ids = shared.teacher_ids.numpy(), shared.student_ids.numpy()
    assert 20_000 < len(shared) <= len(student_tokenizer)
    assert len(set(t_ids)) == len(t_ids) and len(set(s_ids)) == len(s_ids)  # one-to-one
    specials = set(teacher_tokenizer.all_special_ids) | set(student_tokenizer.all_special_ids)
    assert not specials & (set(t_ids) | set(s_ids))
    # " the" is spelled ▁the and Ġthe: the space markers are normalised so both match
    the_t = teacher_tokenizer.convert_tokens_to_ids("▁the")
    the_s = student_tokenizer.convert_tokens_to_ids("Ġthe")
    assert s_ids[np.flatnonzero(t_ids == the_t)].tolist() == [the_s]
    # every matched pair stands for the same text
    rng = np.random.default_rng(0)
    for i in rng.choice(len(shared), 300, replace=False):
        a = teacher_tokenizer.decode([int(t_ids[i])])
        b = student_tokenizer.decode([int(s_ids[i])])
        if "\ufffd" not in a + b:  # single bytes of a multi-byte character decode to U+FFFD
            assert a == b
    # cached: same object in memory, and the file on disk gives the same arrays
    assert vocab.shared_vocab(teacher_tokenizer, student_tokenizer) is shared
    files = list((tmp_path / "vocab").glob("*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(vocab, "_MEMORY", {})
    again = vocab.shared_vocab(teacher_tokenizer, student_tokenizer)
    assert again is not shared and torch.equal(again.teacher_ids, shared.teacher_ids)


def test_shared_vocab_of_a_tokenizer_with_itself_is_its_whole_vocabulary(
    student_tokenizer, tmp_path, monkeypatch
):
    from sra_viz import vocab

    monkeypatch.setenv("SRA_VIZ_HOME", str(tmp_path))
    t_ids, s_ids = vocab.compute_shared_vocab(student_tokenizer, student_tokenizer)
    assert np.array_equal(t_ids, s_ids)
    specials = set(student_tokenizer.all_special_ids)
    specials |= {i for i, tok in student_tokenizer.added_tokens_decoder.items() if tok.special}
    assert len(t_ids) == len(student_tokenizer.get_vocab()) - len(specials)


def test_kl_has_the_exact_gradient_and_ignores_masked_columns():
    g = torch.Generator().manual_seed(3)
    z_s = torch.randn(2, 3, 9, dtype=torch.float64, generator=g, requires_grad=True)
    z_t = torch.randn(2, 3, 9, dtype=torch.float64, generator=g)
    valid = _valid(3, 2)
    assert torch.autograd.gradcheck(lambda a: span_logit_kd(a, z_t, valid, tau=2.0), (z_s,))
    # columns masked to -1e4 on both sides (outside V∩) change neither the value nor the gradient
    pad = torch.full((2, 3, 4), -1e4, dtype=torch.float64)
    wide_s = torch.cat([z_s.detach(), pad], -1).requires_grad_(True)
    narrow = span_logit_kd(z_s, z_t, valid)
    wide = span_logit_kd(wide_s, torch.cat([z_t, pad], -1), valid)
    assert float(wide.detach()) == pytest.approx(float(narrow.detach()), rel=1e-12)
    narrow.backward()
    wide.backward()
    assert torch.allclose(wide_s.grad[..., :9], z_s.grad) and torch.all(wide_s.grad[..., 9:] == 0)
