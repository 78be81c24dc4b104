"""A tiny, seeded teacher/student pair with the real default tokenizers, for fast engine tests.

The architectures are the default pair's (Gemma 3 teacher, Llama/SmolLM2 student) with 2 blocks and a
few dozen hidden units, random weights from a fixed seed; the tokenizers are the real ones, so
alignment, V∩ and prompt handling behave exactly as with the real models. Each model is written to an
ordinary transformers folder, so the same folders serve the library (``load_pair``) and the CLI
(``--teacher DIR --student DIR``). Building both takes about a second.

Tests that need real weights (geometry that really moves, real attentions) use ``default_pair``.
"""

from __future__ import annotations

from pathlib import Path

from sra_viz.tokenizer_files import save_tokenizer

TINY_SEED = 0


def _save(model, tokenizer, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(tokenizer, folder)
    return folder


def build_tiny_pair(root: Path) -> tuple[Path, Path]:
    """Write a 2-block Gemma 3 teacher and a 2-block Llama student into ``root``; returns both folders.

    Example:
        >>> teacher_dir, student_dir = build_tiny_pair(tmp_path)  # doctest: +SKIP
        >>> pair = load_pair(teacher_dir, student_dir, device="cpu")  # doctest: +SKIP
    """
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    from sra_viz.models import load_tokenizer

    root = Path(root)
    teacher_tok = load_tokenizer("gemma3-270m")
    student_tok = load_tokenizer("smollm2-135m")
    torch.manual_seed(TINY_SEED)
    teacher_cfg = Gemma3TextConfig(
        vocab_size=len(teacher_tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=1024,
        bos_token_id=teacher_tok.bos_token_id,
        eos_token_id=teacher_tok.eos_token_id,
        pad_token_id=teacher_tok.pad_token_id,
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    teacher = Gemma3ForCausalLM(teacher_cfg)
    torch.manual_seed(TINY_SEED + 1)
    student_cfg = LlamaConfig(
        vocab_size=len(student_tok),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=3,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        bos_token_id=student_tok.bos_token_id,
        eos_token_id=student_tok.eos_token_id,
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    student = LlamaForCausalLM(student_cfg)
    return (
        _save(teacher, teacher_tok, root / "tiny-teacher"),
        _save(student, student_tok, root / "tiny-student"),
    )
