"""The SRA tensor math: token mass, span masses, centers of mass (CoMs) and saliency weights.

Pure functions of tensors, shared by the analysis (:mod:`sra_viz.extraction`), the distillation engine
and the probe. Per SRA (docs/METHOD.md), for the layer whose hidden states ``h`` are pooled and that
layer's attention ``A``:

    m_t = Σ_h A[h, q, t] / Σ_t' Σ_h A[h, q, t']      (q = last real token, no gradient)
    c_k = Σ_{t∈k} w_t h_t / Σ_{t∈k} w_t,  w_t = m_t + POOL_EPS
    M_k = Σ_{t∈k} m_t,   ŵ_k = (M_k^T)^p / Σ_k' (M_k'^T)^p

Special tokens (``<bos>``) get no mass, so masses sum to 1 over the text's own tokens.

Example:
    >>> att = torch.softmax(torch.randn(1, 2, 3, 3), -1); mask = torch.ones(1, 3)
    >>> m = token_mass(att, mask); span = torch.tensor([[0, 0, 1]])
    >>> span_masses(m, span, 2).sum().round(decimals=4).item()
    1.0
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import SraVizError

MASS_MODES = ("last_token", "received", "uniform")
POOL_EPS = (
    1e-12  # added to every token's mass inside span_centers; far below float32 resolution of real masses
)


# ----------------------------------------------------------------------------- tensor functions


def token_mass(
    attentions: torch.Tensor | None,
    attention_mask: torch.Tensor,
    mode: str = "last_token",
    head: int | None = None,
    valid_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token mass (B, L), float32, without gradient; each row sums to 1 over valid real tokens.

    ``last_token``: attention the last real token pays to each key, summed over heads (or one head).
    ``received``: attention each key receives, averaged over the real queries that can see it
    (causal: queries at or after it), so early tokens are not favoured just for being seen more often.
    ``uniform``: 1/n (plain mean pooling; ``attentions`` may be None). Pads and ``valid_mask == 0``
    (special tokens) get 0; a row with no valid token is all zeros.

    Example:
        >>> att = torch.softmax(torch.randn(1, 2, 3, 3), -1); mask = torch.ones(1, 3)
        >>> round(token_mass(att, mask, "last_token").sum().item(), 4)
        1.0
    """
    if mode not in MASS_MODES:
        raise SraVizError(f"mass mode {mode!r} is unknown; expected one of {MASS_MODES}")
    with torch.no_grad():
        real = attention_mask.detach().bool()  # (B, L)
        valid = real if valid_mask is None else real & valid_mask.detach().to(real.device).bool()
        if mode == "uniform":
            raw = valid.float()
        else:
            att = _heads(attentions, real, head)  # (B, L, L) summed over the chosen heads
            if mode == "last_token":
                positions = torch.arange(real.shape[1], device=real.device)
                last = (positions * real).argmax(-1)  # (B,) index of the last real token
                raw = att[torch.arange(att.shape[0], device=att.device), last]  # (B, L)
            else:
                queries = real.float()  # (B, L)
                received = torch.einsum("bqk,bq->bk", att, queries)  # (B, L) sum over real queries
                seen_by = queries.flip(-1).cumsum(-1).flip(-1)  # (B, L) real queries at or after each key
                raw = received / seen_by.clamp_min(1.0)
        raw = raw * valid
        total = raw.sum(-1, keepdim=True)  # (B, 1)
        return torch.where(
            total > 0, raw / total.clamp_min(torch.finfo(raw.dtype).tiny), torch.zeros_like(raw)
        )


def _heads(attentions: torch.Tensor | None, real: torch.Tensor, head: int | None) -> torch.Tensor:
    if attentions is None:
        raise SraVizError("no attentions were given; only mass mode 'uniform' works without them")
    if attentions.dim() != 4 or attentions.shape[0] != real.shape[0] or attentions.shape[-1] != real.shape[1]:
        raise SraVizError(
            f"attentions have shape {tuple(attentions.shape)}; expected (B, H, L, L) = ({real.shape[0]}, H, "
            f"{real.shape[1]}, {real.shape[1]}) to match the attention mask"
        )
    att = attentions.detach().float()  # (B, H, L, L)
    if head is None:
        return att.sum(1)
    n_heads = att.shape[1]
    if isinstance(head, bool) or not isinstance(head, int) or not -n_heads <= head < n_heads:
        raise SraVizError(
            f"head {head!r} is out of range for attention with {n_heads} heads: use 0..{n_heads - 1}"
        )
    return att[:, head]


def token_weights(mass: torch.Tensor, span_index: torch.Tensor) -> torch.Tensor:
    """The pooling weight of every token (B, L): ``m_t + POOL_EPS`` inside a span, 0 outside (no gradient).

    Shared by :func:`span_centers` and the training engine's logit pooling, so both weigh tokens alike.
        >>> token_weights(torch.tensor([[0.5, 0.0, 2.0]]), torch.tensor([[0, 0, -1]]))
        tensor([[5.0000e-01, 1.0000e-12, 0.0000e+00]])
    """
    m = mass.detach()
    return torch.where(span_index >= 0, m + POOL_EPS, torch.zeros_like(m))


def span_centers(
    hidden: torch.Tensor, mass: torch.Tensor, span_index: torch.Tensor, n_spans: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centers of mass (B, N, D) and span masses (B, N): ``c_k = Σ m_t h_t / Σ m_t`` over tokens of span k.

    Differentiable in ``hidden``, never in ``mass`` (detached). Every token counts with mass
    ``m_t + POOL_EPS`` (POOL_EPS = 1e-12), so a span whose tokens all have zero mass gets its plain mean;
    a span with no token gets a zero vector and zero mass. ``span_index`` -1 = in no span.

    Example:
        >>> h = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
        >>> span_centers(h, torch.tensor([[0.25, 0.75, 0.0]]), torch.tensor([[0, 0, 1]]), 2)[0]
        tensor([[[0.2500, 0.7500],
                 [5.0000, 5.0000]]])
    """
    batch, length, dim = hidden.shape
    if mass.shape != (batch, length) or span_index.shape != (batch, length):
        raise SraVizError(
            f"span_centers got hidden {tuple(hidden.shape)}, mass {tuple(mass.shape)}, span_index "
            f"{tuple(span_index.shape)}; expected (B, L, D), (B, L), (B, L)"
        )
    if span_index.numel() and int(span_index.max()) >= n_spans:
        raise SraVizError(f"span_index holds {int(span_index.max())} but n_spans is {n_spans}")
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    in_span = span_index >= 0  # (B, L)
    index = span_index.clamp_min(0)  # (B, L)
    m = mass.detach().to(device=hidden.device, dtype=dtype)
    weights = token_weights(m, span_index)  # (B, L)
    weighted = torch.where(in_span.unsqueeze(-1), hidden.to(dtype) * weights.unsqueeze(-1), 0.0)  # (B, L, D)
    numerator = hidden.new_zeros((batch, n_spans, dim), dtype=dtype).scatter_add(
        1, index.unsqueeze(-1).expand(batch, length, dim), weighted
    )  # (B, N, D)
    denominator = weights.new_zeros((batch, n_spans)).scatter_add(1, index, weights)  # (B, N)
    span_mass = weights.new_zeros((batch, n_spans)).scatter_add(1, index, torch.where(in_span, m, 0.0))
    centers = numerator / denominator.clamp_min(POOL_EPS).unsqueeze(
        -1
    )  # (B, N, D); empty spans: 0 / POOL_EPS = 0
    return centers, span_mass


def span_masses(mass: torch.Tensor, span_index: torch.Tensor, n_spans: int) -> torch.Tensor:
    """Span masses (B, N): ``M_k = Σ_{t∈k} m_t`` of token masses (B, L), no gradient; 0 for empty spans.

    Equal to the second output of :func:`span_centers`, without pooling any hidden state.
        >>> span_masses(torch.tensor([[0.25, 0.75, 0.0]]), torch.tensor([[0, 0, 1]]), 2)
        tensor([[1., 0.]])
    """
    if mass.shape != span_index.shape:
        raise SraVizError(
            f"span_masses got mass {tuple(mass.shape)} and span_index {tuple(span_index.shape)}; expected "
            "(B, L) both"
        )
    if span_index.numel() and int(span_index.max()) >= n_spans:
        raise SraVizError(f"span_index holds {int(span_index.max())} but n_spans is {n_spans}")
    m = mass.detach().float()
    in_span = span_index >= 0  # (B, L)
    return m.new_zeros((mass.shape[0], n_spans)).scatter_add(
        1, span_index.clamp_min(0), torch.where(in_span, m, 0.0)
    )  # (B, N)


def saliency_weights(span_mass: torch.Tensor, span_valid: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """Saliency ``ŵ_k = M_k^p / Σ M_k'^p`` over valid spans (B, N), no gradient; 0 on invalid spans.

    A row whose valid spans all have zero mass gets uniform weights.

    Example:
        >>> saliency_weights(torch.tensor([[0.2, 0.6, 0.2]]), torch.tensor([[True, True, False]]))
        tensor([[0.2500, 0.7500, 0.0000]])
    """
    if not np.isfinite(power) or power < 0:
        raise SraVizError(f"saliency power must be a finite number >= 0, got {power!r}")
    with torch.no_grad():
        valid = span_valid.bool()
        mass = span_mass.detach().float().clamp_min(0.0)
        raised = torch.where(valid, mass.pow(power), torch.zeros_like(mass))  # (B, N)
        total = raised.sum(-1, keepdim=True)
        uniform = valid.float() / valid.sum(-1, keepdim=True).clamp_min(1)
        return torch.where(total > 0, raised / total.clamp_min(torch.finfo(mass.dtype).tiny), uniform)


__all__ = [
    "POOL_EPS",
    "MASS_MODES",
    "saliency_weights",
    "span_centers",
    "span_masses",
    "token_mass",
    "token_weights",
]
