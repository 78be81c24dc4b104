"""The distillation losses of SRA and of the token-level baselines, one function each.

Shapes: B texts, N spans (padded to the batch's longest), D_S / D_T student / teacher hidden sizes,
V a vocabulary. ``span_valid (B, N)`` marks real spans; padded spans never contribute. Span weights
``(B, N)`` are the saliency ŵ (rows sum to 1 over valid spans) or, when weighting is off, 1/n_valid.
Every reduction is written in the docstring of its function; the total is

    L = α·L_CE + (1−α)·(L_span + λ_geo·L_geo + L_KD [+ L_dyn])        (SRA)
    L = α·L_CE + (1−α)·L_ULD  or  α·L_CE + (1−α)·L_exact              (baselines)

Example:
    >>> proj = SpanProjector(576, 640)
    >>> cs, ct, valid = torch.randn(2, 5, 576), torch.randn(2, 5, 640), torch.ones(2, 5, dtype=torch.bool)
    >>> float(span_loss([cs], [ct], [proj], uniform_weights(valid), valid).detach()) > 0
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import SraVizError

COSINE_EPS = 1e-8  # floor of the norms in cosines and normalisations (zero vectors: cos 0, not NaN)


class SpanProjector(nn.Module):
    """The trainable map ``W ∈ R^{d_S×d_T}`` of one layer pair: ``x ↦ Wᵀx`` (no bias).

    init: "orthogonal" (semi-orthogonal W, preserves norms and angles at the start) or "xavier".
        >>> SpanProjector(4, 6)(torch.ones(3, 4)).shape
        torch.Size([3, 6])
    """

    def __init__(self, student_dim: int, teacher_dim: int, init: str = "orthogonal"):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(student_dim, teacher_dim))  # (D_S, D_T)
        if init == "orthogonal":
            nn.init.orthogonal_(self.weight)
        elif init == "xavier":
            nn.init.xavier_uniform_(self.weight)
        else:
            raise SraVizError(f"projector init {init!r} is unknown; expected 'orthogonal' or 'xavier'")

    def forward(self, x: Tensor) -> Tensor:  # (..., D_S) -> (..., D_T)
        return x @ self.weight


def uniform_weights(span_valid: Tensor) -> Tensor:
    """Weights 1/n_valid on the valid spans of each text (0 elsewhere): the 'no saliency' ablation.

    >>> uniform_weights(torch.tensor([[True, True, False]])).tolist()
    [[0.5, 0.5, 0.0]]
    """
    valid = span_valid.float()  # (B, N)
    return valid / valid.sum(-1, keepdim=True).clamp_min(1.0)


def _checked_weights(weights: Tensor, span_valid: Tensor) -> Tensor:
    if weights.shape != span_valid.shape:
        raise SraVizError(f"weights have shape {tuple(weights.shape)}, span_valid {tuple(span_valid.shape)}")
    return weights.detach() * span_valid  # (B, N): padded spans weigh nothing


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def span_loss(
    student_centers: Sequence[Tensor] | Tensor,
    teacher_centers: Sequence[Tensor] | Tensor,
    projectors: Sequence[nn.Module] | nn.Module,
    weights: Tensor,
    span_valid: Tensor,
    layer_weights: Sequence[float] | None = None,
) -> Tensor:
    """Span representation loss over the mapped layer pairs ℓ:

        L_span = Σ_ℓ λ_ℓ · (1/B) Σ_b Σ_k w_bk · [1 − cos(W_ℓᵀ c^{S,ℓ}_bk, c^{T,ℓ}_bk)]

    centers: one (B, N, D_S) / (B, N, D_T) tensor per pair; teacher centers carry no gradient.
        >>> v = torch.ones(1, 2, dtype=torch.bool); c = torch.randn(1, 2, 3)
        >>> abs(round(float(span_loss(c, c, nn.Identity(), uniform_weights(v), v)), 6))
        0.0
    """
    s_list, t_list, p_list = _as_list(student_centers), _as_list(teacher_centers), _as_list(projectors)
    if not (len(s_list) == len(t_list) == len(p_list)) or not s_list:
        raise SraVizError(
            f"span_loss needs one student center, teacher center and projector per layer pair; "
            f"got {len(s_list)}, {len(t_list)}, {len(p_list)}"
        )
    lam = [1.0] * len(s_list) if layer_weights is None else list(layer_weights)
    w = _checked_weights(weights, span_valid)  # (B, N)
    total = s_list[0].new_zeros(())
    for c_s, c_t, proj, lam_l in zip(s_list, t_list, p_list, lam, strict=True):
        cos = F.cosine_similarity(proj(c_s), c_t.detach(), dim=-1, eps=COSINE_EPS)  # (B, N)
        total = total + lam_l * ((1.0 - cos) * w).sum(-1).mean()
    return total


def pair_weights(weights: Tensor, span_valid: Tensor) -> Tensor:
    """π_kk' = w_k w_k' / Σ_{a≠b} w_a w_b with the diagonal (and invalid spans) excluded; (B, N, N).

    A text with fewer than two valid spans gets all-zero π.
        >>> pair_weights(torch.tensor([[1.0, 1.0]]), torch.tensor([[True, True]])).tolist()
        [[[0.0, 0.5], [0.5, 0.0]]]
    """
    w = _checked_weights(weights, span_valid)  # (B, N)
    pi = w[:, :, None] * w[:, None, :]  # (B, N, N)
    pi = pi * (1.0 - torch.eye(w.shape[-1], device=w.device, dtype=w.dtype))
    total = pi.sum((-1, -2), keepdim=True)  # (B, 1, 1)
    return torch.where(total > 0, pi / total.clamp_min(1e-30), torch.zeros_like(pi))


def geometric_loss(
    student_centers: Tensor, teacher_centers: Tensor, weights: Tensor, span_valid: Tensor
) -> Tensor:
    """Geometric regularizer on cosine Gram matrices (no projector: it compares N×N matrices):

        L_geo = (1/B) Σ_b Σ_{k≠k'} π_kk' · (⟨ĉ^S_k, ĉ^S_k'⟩ − ⟨ĉ^T_k, ĉ^T_k'⟩)²,   ĉ = c/‖c‖

    with π from :func:`pair_weights` (uniform weights give the plain mean over the N(N−1) pairs).
        >>> v = torch.ones(1, 3, dtype=torch.bool); c = torch.randn(1, 3, 4)
        >>> round(float(geometric_loss(c, 2 * c, uniform_weights(v), v)), 6)
        0.0
    """
    u_s = F.normalize(student_centers, dim=-1, eps=COSINE_EPS)  # (B, N, D_S)
    u_t = F.normalize(teacher_centers.detach(), dim=-1, eps=COSINE_EPS)  # (B, N, D_T)
    gram_s = u_s @ u_s.transpose(-1, -2)  # (B, N, N)
    gram_t = u_t @ u_t.transpose(-1, -2)  # (B, N, N)
    pi = pair_weights(weights, span_valid)
    return (pi * (gram_s - gram_t) ** 2).sum((-1, -2)).mean()


class _RowKL(torch.autograd.Function):
    """KL(softmax(z_T/τ) ‖ softmax(z_S/τ)) per row, with the hand-written gradient (p_S − p_T)/τ.

    Autograd through two log-softmaxes makes about twice as many passes over the (rows, vocabulary)
    tensors; with 46k-column rows this is most of the cost of span logit KD on a CPU.
    """

    @staticmethod
    def forward(ctx, student_logits: Tensor, teacher_logits: Tensor, tau: float) -> Tensor:
        dtype = torch.promote_types(student_logits.dtype, torch.float32)  # half precision is computed in fp32
        scaled = (lambda z: z.to(dtype)) if tau == 1.0 else (lambda z: z.to(dtype) / tau)  # τ = 1: no pass
        log_p_s = torch.log_softmax(scaled(student_logits), dim=-1)  # (..., V)
        log_p_t = torch.log_softmax(scaled(teacher_logits), dim=-1)
        p_t = log_p_t.exp()
        # KL = Σ p_T log p_T − Σ p_T log p_S as row-wise dot products (no (..., V) temporaries). Columns
        # outside V∩ carry logit -1e4: p = 0 exactly and log p finite, so they add exactly 0.
        row = p_t.unsqueeze(-2)  # (..., 1, V)
        kl = (row @ log_p_t.unsqueeze(-1) - row @ log_p_s.unsqueeze(-1)).squeeze(-1).squeeze(-1)
        ctx.save_for_backward(log_p_s, p_t)
        ctx.tau, ctx.dtype = tau, student_logits.dtype
        return kl

    @staticmethod
    def backward(ctx, grad_kl: Tensor):
        log_p_s, p_t = ctx.saved_tensors
        grad = log_p_s.exp().sub_(p_t).mul_(grad_kl.unsqueeze(-1) / ctx.tau)  # (p_S − p_T)/τ · dL/dKL
        return grad.to(ctx.dtype), None, None


def _kl_rows(teacher_logits: Tensor, student_logits: Tensor, tau: float) -> Tensor:
    """KL(softmax(z_T/τ) ‖ softmax(z_S/τ)) per row over the last dimension; (...). No gradient to z_T."""
    return _RowKL.apply(student_logits, teacher_logits.detach(), tau)


def span_logit_kd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    span_valid: Tensor,
    tau: float = 2.0,
    weights: Tensor | None = None,
) -> Tensor:
    """Aligned span logit distillation on the shared vocabulary V∩ (no τ² factor):

        L_KD = (1/B) Σ_b Σ_k a_bk · KL( softmax(z^T_bk[V∩]/τ) ‖ softmax(z^S_bk[V∩]/τ) )

    z = each model's own LM head applied to its span CoM (teacher frozen), (B, N, |V∩|); a_bk = 1
    (the published sum over spans) or the span weights ``weights`` (e.g. saliency ŵ; our option).
        >>> v = torch.ones(1, 2, dtype=torch.bool); z = torch.randn(1, 2, 7)
        >>> round(float(span_logit_kd(z, z, v)), 6)
        0.0
    """
    if student_logits.shape != teacher_logits.shape:
        raise SraVizError(
            f"span_logit_kd: student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} must both be (B, N, |V∩|)"
        )
    a = span_valid.float() if weights is None else _checked_weights(weights, span_valid)  # (B, N)
    kl = _kl_rows(teacher_logits, student_logits, tau)  # (B, N)
    return (kl * a).sum(-1).mean()


def causal_lm_loss(logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Cross-entropy of the student on its own next tokens (response tokens only in prompt/response mode):

        L_CE = −(1/M) Σ_{t: mask_t} log softmax(z_t)[y_t]

    ``logits[..., t, :]`` must already predict ``targets[..., t]`` (shift done by the caller); (..., V).
        >>> round(float(causal_lm_loss(torch.zeros(3, 4), torch.tensor([0, 1, 2]))), 4)  # ln 4
        1.3863
    """
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()  # (M', V)
    flat_targets = targets.reshape(-1)
    if mask is not None:
        keep = mask.reshape(-1).bool()
        flat_logits, flat_targets = flat_logits[keep], flat_targets[keep]
    if flat_targets.numel() == 0:
        return logits.sum() * 0.0  # keeps the graph; a batch without targets adds nothing
    return F.cross_entropy(flat_logits, flat_targets)


def aligned_response_positions(
    student_starts: Sequence[int],
    student_ends: Sequence[int],
    teacher_starts: Sequence[int],
    teacher_ends: Sequence[int],
) -> tuple[Tensor, Tensor, Tensor]:
    """ULD's position pairing: the i-th prediction after the response start on each side, i < min(n_S, n_T).

    starts/ends (per text) are half-open ranges of *predicting* positions. Returns (text, student
    position, teacher position) index tensors, each (M,).
        >>> [t.tolist() for t in aligned_response_positions([2], [5], [3], [5])]
        [[0, 0], [2, 3], [3, 4]]
    """
    rows: list[int] = []
    s_pos: list[int] = []
    t_pos: list[int] = []
    for b, (s0, s1, t0, t1) in enumerate(
        zip(student_starts, student_ends, teacher_starts, teacher_ends, strict=True)
    ):
        n = max(0, min(s1 - s0, t1 - t0))
        rows += [b] * n
        s_pos += range(s0, s0 + n)
        t_pos += range(t0, t0 + n)
    as_long = lambda xs: torch.tensor(list(xs), dtype=torch.long)  # noqa: E731
    return as_long(rows), as_long(s_pos), as_long(t_pos)


def uld_loss(student_logits: Tensor, teacher_logits: Tensor, tau: float = 1.0) -> Tensor:
    """Universal Logit Distillation on paired positions (closed-form Wasserstein-1 of sorted probabilities):

        L_ULD = (1/M) Σ_m Σ_i | sort↓(p^S_m)_i − sort↓(p^T_m)_i |,   p = softmax(z/τ)

    The smaller vocabulary is zero-padded to the larger. student (M, V_S), teacher (M, V_T) rows are
    the positions paired by :func:`aligned_response_positions`.
        >>> z = torch.randn(4, 10); round(float(uld_loss(z, z[:, torch.randperm(10)])), 5)
        0.0
    """
    if student_logits.shape[0] != teacher_logits.shape[0]:
        raise SraVizError(
            f"uld_loss: {student_logits.shape[0]} student rows but {teacher_logits.shape[0]} teacher rows"
        )
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    p_s = torch.softmax(student_logits.float() / tau, dim=-1)  # (M, V_S)
    with torch.no_grad():
        p_t = torch.softmax(teacher_logits.float() / tau, dim=-1)  # (M, V_T)
    k = min(p_s.shape[-1], p_t.shape[-1])
    # Past the k-th entry the smaller side is zero padding, so the larger side only needs its top k
    # (a partial sort, ~3x cheaper on a 262k vocabulary) plus the mass of its tail: the same sum exactly.
    top_s = p_s.topk(k, dim=-1).values  # (M, k) sorted descending
    top_t = p_t.topk(k, dim=-1).values
    tail = (p_s.sum(-1) - top_s.sum(-1)) + (p_t.sum(-1) - top_t.sum(-1))  # (M,) one side's is 0
    return ((top_s - top_t).abs().sum(-1) + tail.clamp_min(0.0)).mean()


def exact_token_kd(student_logits: Tensor, teacher_logits: Tensor, tau: float = 1.0) -> Tensor:
    """Exact-token KD on V∩ at spans that are one token on both sides (the same token string):

        L_exact = (1/M) Σ_m KL( softmax(z^T_m[V∩]/τ) ‖ softmax(z^S_m[V∩]/τ) )

    rows m are the positions predicting those tokens; logits already restricted to V∩, (M, |V∩|).
        >>> z = torch.randn(3, 5); round(float(exact_token_kd(z, z)), 6)
        0.0
    """
    if student_logits.shape != teacher_logits.shape:
        raise SraVizError(
            f"exact_token_kd: student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} must both be (M, |V∩|)"
        )
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    return _kl_rows(teacher_logits, student_logits, tau).mean()


def target_kd(student_logits: Tensor, target: Tensor, tau: float = 1.0) -> Tensor:
    """KL from a given target distribution (MinED's mapped teacher, :mod:`sra_viz.mined`) to the student:

        L = (1/M) Σ_m Σ_j p̃_mj (log p̃_mj − log softmax(z^S_m/τ)_j)

    ``student_logits`` (M, V_S); ``target`` (M, V_S), rows summing to 1 (zeros allowed: 0·log 0 = 0).
        >>> z = torch.randn(3, 5); abs(round(float(target_kd(z, torch.softmax(z, -1))), 6))
        0.0
    """
    if student_logits.shape != target.shape:
        raise SraVizError(
            f"target_kd: student logits {tuple(student_logits.shape)} and target {tuple(target.shape)} "
            "must both be (M, V_S)"
        )
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    log_q = torch.log_softmax(student_logits.float() / tau, dim=-1)  # (M, V_S)
    target = target.float()
    return (torch.xlogy(target, target) - target * log_q).sum(-1).mean()


def dynamics_loss(
    student_centers: Sequence[Tensor],
    teacher_centers: Sequence[Tensor],
    projectors: Sequence[nn.Module],
    weights: Tensor,
    span_valid: Tensor,
) -> Tensor:
    """Layer-to-layer dynamics of the CoMs, compared by cosine through the projector of the deeper pair:

        L_dyn = (1/(P−1)) Σ_{i<P} (1/B) Σ_b Σ_k w_bk [1 − cos(W_{i+1}ᵀ Δ^S_bk, Δ^T_bk)],  Δ = c^{i+1} − c^i

    over consecutive mapped pairs i (ordered shallow to deep); 0 with fewer than two pairs.
        >>> v = torch.ones(1, 2, dtype=torch.bool); c = [torch.randn(1, 2, 3), torch.randn(1, 2, 3)]
        >>> abs(round(float(dynamics_loss(c, c, [nn.Identity()] * 2, uniform_weights(v), v)), 6))
        0.0
    """
    s_list, t_list, p_list = list(student_centers), list(teacher_centers), list(projectors)
    if len(s_list) < 2:
        return weights.new_zeros(())
    terms = []
    for i in range(len(s_list) - 1):
        delta_s = s_list[i + 1] - s_list[i]  # (B, N, D_S)
        delta_t = (t_list[i + 1] - t_list[i]).detach()  # (B, N, D_T)
        terms.append(span_loss(delta_s, delta_t, p_list[i + 1], weights, span_valid))
    return torch.stack(terms).mean()


def total_loss(terms: Mapping[str, Tensor], *, alpha: float, lambda_geo: float) -> Tensor:
    """Combine the terms that are present (switched-off terms are simply absent):

    L = α·ce + (1−α)·(span + λ_geo·geo + kd + dynamics + uld + exact + mined)

    ``alpha`` and ``lambda_geo`` have no defaults here: the session passes its config's
    (``DistillConfig.alpha``, ``DistillConfig.lambda_geo``), the one place their defaults live.

    >>> terms = {"ce": torch.tensor(2.0), "span": torch.tensor(1.0), "geo": torch.tensor(0.5)}
    >>> float(total_loss(terms, alpha=0.5, lambda_geo=3.0))
    2.25
    """
    unknown = set(terms) - {"ce", "span", "geo", "kd", "dynamics", "uld", "exact", "mined"}
    if unknown:
        raise SraVizError(f"total_loss got unknown terms {sorted(unknown)}")
    if not terms:
        raise SraVizError("total_loss got no terms: switch at least one loss on")
    distill = [terms[k] * (lambda_geo if k == "geo" else 1.0) for k in terms if k != "ce"]
    out = sum(distill, start=next(iter(terms.values())).new_zeros(())) * (1.0 - alpha)
    if "ce" in terms:
        out = out + alpha * terms["ce"]
    return out
