"""Checks of a run that need no weights, made before anything is loaded or created.

A run whose layers, student depth or sequence length do not fit its models must fail in a second with
one line, not after minutes of loading, and never after its run folder exists. The models' own
``config.json`` (default names and folders; other specs are checked once loaded) gives their depth
and the longest sequence they take.

Example:
    >>> check_against_models(DistillConfig(layer_pairs=[[40, -1]]))  # doctest: +SKIP
    Traceback (most recent call last):
    sra_viz.errors.SraVizError: layer_pairs: teacher layer 40 is out of range for ... with 18 blocks ...
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import SraVizError
from .config import DistillConfig, scheduled_pairs


@dataclass
class ModelShape:
    """What a model's config.json says about its depth and its longest sequence (None = not stated)."""

    name: str
    blocks: int
    max_positions: int | None


def model_shape(spec: str) -> ModelShape | None:
    """Depth and position limit of a default model or a model folder, from its config.json (no weights);
    None for a .gguf file, a hub id or a folder without a readable config (checked once loaded).

    Example:
        >>> model_shape("smollm2-135m").blocks  # doctest: +SKIP
        30
    """
    from .. import fetch, paths

    # a default model not fetched yet is fetched by load_pair, then checked there
    folder = paths.models_dir() / spec if spec in fetch.DEFAULT_MODELS else Path(spec).expanduser()
    if not (folder / "config.json").is_file():
        return None
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    text: dict = raw["text_config"] if isinstance(raw.get("text_config"), dict) else raw
    blocks = text.get("num_hidden_layers", text.get("n_layer"))
    positions = text.get("max_position_embeddings", text.get("n_positions"))
    if not isinstance(blocks, int) or blocks < 1:
        return None
    return ModelShape(spec, blocks, positions if isinstance(positions, int) and positions > 0 else None)


def _check_layer(side: str, layer: int, shape: ModelShape, note: str = "") -> None:
    n = shape.blocks
    if not -n <= layer < n:
        raise SraVizError(
            f"layer_pairs: {side} layer {layer} is out of range for {shape.name!r} with {n} blocks{note}: "
            f"use 0..{n - 1} or -{n}..-1 (-1 = last block)"
        )


def check_against_models(config: DistillConfig) -> None:
    """Layer pairs, student_k and max_length against the teacher's and student's config.json."""
    teacher, student = model_shape(config.teacher), model_shape(config.student)
    if student is not None and config.student_variant != "full" and config.student_k > student.blocks:
        raise SraVizError(
            f"student_k={config.student_k} is out of range for {student.name!r} with {student.blocks} "
            f"blocks: use 1..{student.blocks}"
        )
    if student is not None and config.student_variant == "truncated":
        student = ModelShape(student.name, config.student_k, student.max_positions)
        note = f" (truncated to its first {config.student_k})"
    else:
        note = ""
    if config.layer_schedule != "last" and teacher is not None and student is not None:
        scheduled_pairs(config.layer_schedule, teacher.blocks, student.blocks)  # K within both depths
    for t, s in config.layer_pairs:
        if teacher is not None:
            _check_layer("teacher", t, teacher)
        if student is not None:
            _check_layer("student", s, student, note)
    for shape in (teacher, student):
        if shape is not None and shape.max_positions is not None and config.max_length > shape.max_positions:
            raise SraVizError(
                f"max_length={config.max_length} is longer than {shape.name!r} takes ({shape.max_positions} "
                f"positions); use at most {shape.max_positions}"
            )
