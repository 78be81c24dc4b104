"""LoRA students (``peft``): low-rank adapters injected into the student copy, merged back for export.

``add_lora`` injects ``W x + (α/r)·B A x`` into every linear layer ``targets`` names (comma-separated
module names such as ``q_proj,v_proj``, or ``all-linear``: every linear layer but the LM head) with
``peft.inject_adapter_in_model``: the model keeps its class and structure (hooks, LM head, layer
count), so the engine runs on it unchanged, and only the adapters (``lora_A``, ``lora_B``) train.
``merge_lora`` folds each adapter into its base weight and puts the plain layer back: a model that
``save_pretrained`` writes as an ordinary transformers folder.

Example:
    >>> names = add_lora(model, rank=8, alpha=16, targets="q_proj,v_proj")  # doctest: +SKIP
    >>> merge_lora(model)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import SraVizError


def linear_names(model: Any) -> list[str]:
    """The distinct last names of the model's linear layers (the LM head left out)."""
    head = model.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head
        }
    )


def add_lora(model: Any, rank: int, alpha: int, targets: str) -> list[str]:
    """Inject LoRA adapters (rank ``rank``, scale ``alpha / rank``) into ``targets``; freeze every other
    weight; returns the adapter parameter names (the trainable ones), in ``named_parameters`` order."""
    from peft import LoraConfig, inject_adapter_in_model

    wanted = [t.strip() for t in targets.split(",") if t.strip()]
    if not wanted:
        raise SraVizError(f"lora_targets={targets!r} names no module; give e.g. q_proj,v_proj or all-linear")
    known = linear_names(model)
    if wanted != ["all-linear"]:
        missing = [t for t in wanted if t not in known]
        if missing:
            raise SraVizError(
                f"lora_targets {', '.join(missing)} match no linear layer of the student; its linear layers "
                f"are named {', '.join(known)}: give some of them, comma-separated, or all-linear"
            )
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules="all-linear" if wanted == ["all-linear"] else wanted,
        lora_dropout=0.0,
        bias="none",
    )
    model.requires_grad_(False)
    inject_adapter_in_model(config, model)
    names = []
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
        if "lora_" in name:
            names.append(name)
    if not names:
        raise SraVizError(f"lora_targets={targets!r} injected no adapter into the student")
    return names


def merge_lora(model: Any) -> int:
    """Fold every LoRA adapter into its base weight and put the plain base layer back (in place);
    returns how many layers were merged (0: the model had none)."""
    from peft.tuners.lora import LoraLayer

    merged = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    for name, module in merged:
        module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    return len(merged)
