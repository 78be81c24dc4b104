"""One batched forward pass that keeps only the hidden states and the attention that SRA needs.

Layer indexing (used everywhere in sra_viz): layer ``ℓ`` is the *output of transformer block ℓ*,
negatives counting from the end (``-1`` = last block). In Hugging Face's ``output_hidden_states``
tuple (index 0 = embeddings) that is ``hidden_states[ℓ + 1]`` for ``ℓ >= 0``, and the attention
that produced it is ``attentions[ℓ]``. Like Hugging Face, the last layer's hidden states are taken
*after* the final norm (what the LM head reads); every other layer is the raw residual stream.

Instead of ``output_hidden_states=True, output_attentions=True`` (which keeps every layer: all
attentions of SmolLM2 at 512 tokens are ~280 MB), forward hooks keep the chosen blocks' outputs and
one attention module's probabilities; the LM head is skipped unless logits are asked for, and the
pass stops after the deepest block needed. Each tokenizer's own padding side is honoured; left
padding gets position ids counted from the first real token.

Example:
    >>> out = forward_features(pair.teacher, [[2, 9259, 1902], [2, 9259]], layers=(-1,))  # doctest: +SKIP
    >>> out.hidden[17].shape, out.attention.shape  # doctest: +SKIP
    (torch.Size([2, 3, 640]), torch.Size([2, 4, 3, 3]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import SraVizError

_ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention")


@dataclass
class ForwardResult:
    """What one batched pass kept; every tensor is padded to the batch's longest sequence L."""

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L) 1 = real token, 0 = padding
    hidden: dict[int, torch.Tensor]  # resolved layer -> (B, L, D)
    attention: torch.Tensor | None  # (B, H, L, L) probabilities of block `attention_layer`
    attention_layer: int | None
    padding_side: str
    logits: torch.Tensor | None = None  # (B, L, V) only when asked for
    attentions: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> (B, H, L, L), every kept one


class _StopForward(Exception):
    """Raised by a hook once every needed block has run, so deeper blocks are skipped."""


def _model_of(loaded: Any) -> Any:
    return getattr(loaded, "model", loaded)


def _name_of(loaded: Any) -> str:
    return str(getattr(loaded, "name", None) or type(_model_of(loaded)).__name__)


def n_layers(loaded: Any) -> int:
    """Number of transformer blocks of a model (or LoadedModel).

    Example:
        >>> n_layers(pair.student)  # doctest: +SKIP
        30
    """
    cfg = _model_of(loaded).config
    cfg = getattr(cfg, "text_config", None) or cfg
    n = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    if not n:
        raise SraVizError(f"model {_name_of(loaded)!r} has no num_hidden_layers in its config")
    return int(n)


def resolve_layer(loaded: Any, layer: int) -> int:
    """The non-negative block index of ``layer`` (negatives count from the end).

    Example:
        >>> resolve_layer(pair.teacher, -1)  # doctest: +SKIP
        17
    """
    n = n_layers(loaded)
    if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
        raise SraVizError(
            f"layer {layer!r} is out of range for model {_name_of(loaded)!r} with {n} layers: "
            f"use 0..{n - 1} or -{n}..-1 (-1 = last block)"
        )
    return layer % n


def _backbone_and_blocks(model: Any) -> tuple[Any, Any]:
    backbone = model.get_decoder() if hasattr(model, "get_decoder") else model
    for owner in (backbone, getattr(backbone, "transformer", None)):
        for attr in ("layers", "h", "blocks"):
            blocks = getattr(owner, attr, None) if owner is not None else None
            if isinstance(blocks, torch.nn.ModuleList) and len(blocks) > 0:
                return backbone, blocks
    raise SraVizError(
        f"cannot find the transformer blocks of {type(model).__name__}: expected a ModuleList named "
        "'layers', 'h' or 'blocks' on its decoder"
    )


def _attention_module(block: Any, model: Any) -> Any:
    for attr in _ATTENTION_NAMES:
        if isinstance(getattr(block, attr, None), torch.nn.Module):
            return getattr(block, attr)
    raise SraVizError(f"cannot find the self-attention module of a {type(model).__name__} block")


def check_ids(loaded: Any, batch_ids: Sequence[Sequence[int]]) -> None:
    """Raise when a token id cannot be embedded by the model (tokenizer and model do not match).

    Example:
        >>> check_ids(pair.student, [[262000]])  # doctest: +SKIP
        Traceback (most recent call last):
        sra_viz.errors.SraVizError: token id 262000 ... outside the vocabulary of model 'smollm2-135m' ...
    """
    vocab = _model_of(loaded).get_input_embeddings().num_embeddings
    for row in batch_ids:
        if len(row) == 0:
            raise SraVizError(f"an empty token sequence was given to model {_name_of(loaded)!r}")
        top, low = max(row), min(row)
        if top >= vocab or low < 0:
            bad = top if top >= vocab else low
            raise SraVizError(
                f"token id {bad} is outside the vocabulary of model {_name_of(loaded)!r} (size {vocab}): "
                "the tokenizer does not belong to this model; tokenize with the model's own tokenizer"
            )


def pad_batch(
    batch_ids: Sequence[Sequence[int]], pad_id: int, padding_side: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad id lists to one (B, L) tensor on ``padding_side``; returns ids, attention mask, position ids.

    Example:
        >>> ids, mask, pos = pad_batch([[5, 6, 7], [8]], pad_id=0, padding_side="left")
        >>> ids.tolist(), mask.tolist(), pos.tolist()
        ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]], [[0, 1, 2], [0, 0, 0]])
    """
    if padding_side not in ("left", "right"):
        raise SraVizError(f"padding side {padding_side!r} is not 'left' or 'right'")
    length = max(len(row) for row in batch_ids)
    ids = torch.full((len(batch_ids), length), int(pad_id), dtype=torch.long)  # (B, L)
    mask = torch.zeros((len(batch_ids), length), dtype=torch.long)  # (B, L)
    for b, row in enumerate(batch_ids):
        sl = slice(length - len(row), length) if padding_side == "left" else slice(0, len(row))
        ids[b, sl] = torch.as_tensor(list(row), dtype=torch.long)
        mask[b, sl] = 1
    # A left-padded text starts at position 0 exactly like the same text alone; pads get 0 (masked anyway).
    positions = (mask.cumsum(-1) - 1).clamp_min(0)  # (B, L)
    return ids, mask, positions


def needs_eager(loaded: Any) -> None:
    """Raise when the model was loaded with a kernel that returns no attention probabilities.

    Example:
        >>> needs_eager(pair.teacher)  # doctest: +SKIP
    """
    impl = getattr(_model_of(loaded).config, "_attn_implementation", "eager")
    if impl not in (None, "eager"):
        raise SraVizError(_no_attention_message(loaded, impl))


def _no_attention_message(loaded: Any, impl: Any) -> str:
    return (
        f"model {_name_of(loaded)!r} returned no attentions (attn_implementation={impl!r}): load it with "
        "attn_implementation='eager' (sra_viz.models.load_model does), or call "
        "model.set_attn_implementation('eager') on the loaded model"
    )


def forward_features(
    loaded: Any,
    batch_ids: Sequence[Sequence[int]],
    layers: Sequence[int] = (-1,),
    attention_layer: int | None = -1,
    *,
    attention_layers: Sequence[int] = (),
    padding_side: str | None = None,
    logits: bool = False,
    grad: bool = False,
) -> ForwardResult:
    """Run ``loaded`` (LoadedModel or HF causal LM) on a batch of id lists, keeping only what is asked.

    ``attention_layer=None`` keeps no attention (and then any attention kernel works);
    ``attention_layers`` keeps more blocks' attentions (all of them land in ``attentions``). ``grad=True``
    keeps the autograd graph (distillation); otherwise the pass runs under ``torch.no_grad``.

    Example:
        >>> out = forward_features(
        ...     pair.student, [[19556, 905]], layers=(0, -1), attention_layer=-1
        ... )  # doctest: +SKIP
    """
    model = _model_of(loaded)
    tokenizer = getattr(loaded, "tokenizer", None)
    wanted = sorted({resolve_layer(loaded, layer) for layer in layers})
    attn_at = None if attention_layer is None else resolve_layer(loaded, attention_layer)
    attn_set = {resolve_layer(loaded, a) for a in attention_layers}
    attn_blocks = sorted(attn_set | {attn_at} if attn_at is not None else attn_set)
    if attn_blocks:
        needs_eager(loaded)
    check_ids(loaded, batch_ids)
    padding_side = padding_side or getattr(tokenizer, "padding_side", None) or "right"
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = 0 if pad_id is None else pad_id
    ids, mask, positions = pad_batch(batch_ids, pad_id, padding_side)
    device = next(model.parameters()).device
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)

    backbone, blocks = _backbone_and_blocks(model)
    last = len(blocks) - 1
    deepest = max(wanted + attn_blocks)
    stop_early = not logits and deepest < last
    kept: dict[str, Any] = {}
    handles = []

    def keep_block(index: int):
        def hook(_module, _args, output):
            kept[f"h{index}"] = output[0] if isinstance(output, tuple) else output  # (B, L, D)
            if stop_early and index == deepest:
                raise _StopForward

        return hook

    def keep_attention(index: int):
        def hook(_module, _args, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise SraVizError(
                    _no_attention_message(loaded, getattr(model.config, "_attn_implementation", None))
                )
            kept[f"a{index}"] = weights  # (B, H, L, L)
            if stop_early and index == deepest and deepest not in wanted:
                raise _StopForward

        return hook

    def keep_backbone(_module, _args, output):
        kept["last"] = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    try:
        if logits and last in wanted:
            handles.append(backbone.register_forward_hook(keep_backbone))
        for index in attn_blocks:
            handles.append(
                _attention_module(blocks[index], model).register_forward_hook(keep_attention(index))
            )
        for index in wanted:
            if index != last:
                handles.append(blocks[index].register_forward_hook(keep_block(index)))
        kwargs = dict(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
        out: Any = None  # the model's output (set unless stopped early, and then never read)
        with torch.set_grad_enabled(grad):
            try:
                out = model(**kwargs) if logits else backbone(**kwargs)
            except _StopForward:
                pass
    finally:
        for handle in handles:
            handle.remove()

    hidden = {}
    for index in wanted:
        if index == last:  # post-final-norm, as Hugging Face returns it and the LM head reads it
            hidden[index] = kept["last"] if logits else out.last_hidden_state
        else:
            hidden[index] = kept[f"h{index}"]
    attentions = {index: kept[f"a{index}"] for index in attn_blocks}
    return ForwardResult(
        input_ids=ids,
        attention_mask=mask,
        hidden=hidden,
        attention=attentions.get(attn_at) if attn_at is not None else None,
        attention_layer=attn_at,
        padding_side=padding_side,
        logits=getattr(out, "logits", None) if logits else None,
        attentions=attentions,
    )
