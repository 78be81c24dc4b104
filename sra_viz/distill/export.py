"""The distilled student of a run as a model of its own: rebuilt from its checkpoint, or written as a
complete transformers folder that loads with ``AutoModelForCausalLM.from_pretrained`` alone.

The student is rebuilt the way the run built it (base model, variant, k; :func:`.student.make_student`)
and its trainable weights are read from its checkpoint (safetensors and JSON: no pickle is read). A
truncated student is written as the k-block model it is; a LoRA student's adapters are merged into
their base weights (a plain model, no peft needed to load it). The folder holds ``model.safetensors``,
``config.json``, ``generation_config.json``, the tokenizer files and a model card ``README.md`` (base
student, teacher, method, every config field, steps, held-out evaluation before/after, licence notes).

Example:
    >>> student = load_run_student("runs/sra")  # doctest: +SKIP
    >>> export_run("runs/sra", "exported/sra-student")  # doctest: +SKIP
    >>> AutoModelForCausalLM.from_pretrained("exported/sra-student")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import SraVizError
from ..tokenizer_files import save_tokenizer
from .config import DistillConfig
from .runs import CHECKPOINT, EVALUATION, load_checkpoint, read_config

# the entries of a run folder (sra_viz.distill.runs) an export may never replace
RUN_ENTRIES = frozenset(
    {CHECKPOINT, f"{CHECKPOINT}.old", EVALUATION, "snapshots", "config.json", "status.json"}
    | {"metrics.jsonl", "run.lock"}
)


@dataclass
class RunStudent:
    """A run's trained student, usable wherever a loaded model is (``.model``, ``.tokenizer``, ``.name``)."""

    model: Any
    tokenizer: Any
    name: str
    config: DistillConfig
    step: int  # optimizer steps of the checkpoint


def load_run_student(run_dir: str | os.PathLike, device: str | None = None) -> RunStudent:
    """Rebuild a run's student from its base model and its last checkpoint, in eval mode.

    Example:
        >>> student = load_run_student("runs/sra", device="cpu")  # doctest: +SKIP
        >>> student.config.method, student.step  # doctest: +SKIP
        ('sra', 30)
    """
    from ..models import load_model
    from .student import make_student

    config = read_config(run_dir)
    saved = load_checkpoint(run_dir)
    if saved is None:
        raise SraVizError(
            f"run {str(run_dir)!r} has no checkpoint yet, so it holds no trained student: let it reach a "
            "checkpoint (it writes one at the end, on stop and every checkpoint_every steps)"
        )
    base = load_model(config.student, device=device)
    student = make_student(
        base.model, config.student_variant, config.student_k, config.freeze_embeddings, config.lora_spec()
    )
    tensors = saved.student
    named = dict(student.model.named_parameters())
    unknown = sorted(set(tensors) - set(named))
    if unknown:
        raise SraVizError(
            f"the checkpoint of {str(run_dir)!r} holds weights {unknown[:3]} that its student "
            f"({config.student!r}, {config.student_variant}) does not have: config.json was changed after "
            "the run"
        )
    with torch.no_grad():
        for name, tensor in tensors.items():
            named[name].copy_(tensor.to(named[name].device, named[name].dtype))
    if config.peft == "lora":  # the adapters folded into their base weights: a plain model
        from .lora import merge_lora

        merge_lora(student.model)
    student.model.eval()
    step = int(saved.state.get("step", 0))
    name = f"{Path(run_dir).name} ({config.method} student, step {step})"
    return RunStudent(student.model, base.tokenizer, name, config, step)


def _is_gemma(spec: str) -> bool:
    """A Gemma model, by its name or by the model_type of its folder's config.json."""
    if "gemma" in spec.lower():
        return True
    config = Path(spec).expanduser() / "config.json"
    try:
        return "gemma" in str(json.loads(config.read_text(encoding="utf-8")).get("model_type", "")).lower()
    except (OSError, ValueError, AttributeError):
        return False


def _licence_notes(config: DistillConfig) -> list[str]:
    from ..fetch import DEFAULT_MODELS

    notes = []
    if config.student in DEFAULT_MODELS:
        notes.append(f"Base student `{config.student}`: {DEFAULT_MODELS[config.student].licence_note}")
    else:
        notes.append(f"Base student `{config.student}`: its own licence applies to these weights.")
    if _is_gemma(config.teacher):
        notes.append(
            f"Teacher `{config.teacher}` is a Gemma model. Gemma is provided under and subject to the Gemma "
            "Terms of Use (https://ai.google.dev/gemma/terms). A model trained on a Gemma model's outputs "
            '(as by distillation) may be a "Model Derivative" under those terms: their use restrictions '
            "and the Gemma Prohibited Use Policy then apply to this model and must be passed on with it."
        )
    else:
        notes.append(
            f"Teacher `{config.teacher}`: check whether its licence covers models trained on its outputs."
        )
    return notes


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(run_dir: str | os.PathLike, student: RunStudent) -> str:
    """The README.md of an exported student (see the module docstring)."""
    from ..evaluation import load_run_evaluations

    cfg = student.config
    evals = load_run_evaluations(run_dir)
    lines = [
        f"# Distilled student: {cfg.student} ← {cfg.teacher} ({cfg.method})",
        "",
        f"Trained with sra_viz (`sra-viz distill`, method `{cfg.method}`) for **{student.step}** of "
        f"{cfg.steps} planned optimizer steps; exported from run `{Path(run_dir).name}`.",
        "",
        f"- base student: `{cfg.student}` ({cfg.student_variant}"
        + (f", k = {cfg.student_k}" if cfg.student_variant != "full" else "")
        + ")",
        f"- teacher: `{cfg.teacher}`",
        f"- method: `{cfg.method}`",
        "",
    ]
    if cfg.student_variant == "truncated":
        lines += [
            f"This is the **truncated** student: the first {cfg.student_k} blocks of the base model, saved "
            f"as the {cfg.student_k}-block model it is.",
            "",
        ]
    lines += ["## Held-out evaluation", ""]
    shown = [("teacher", evals.teacher), ("student before", evals.before), ("student after", evals.after)]
    shown = [(label, r) for label, r in shown if r is not None]
    if shown:
        keys = ("n", "rouge_l", "teacher_agreement", "vcap_kl", "heldout_loss", "heldout_ppl")
        lines += ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        lines += [
            f"| {label} | " + " | ".join(_fmt(getattr(r, k)) for k in keys) + " |" for label, r in shown
        ]
        lines += [
            "",
            "Fixed held-out split of the corpus (sra_viz.evaluation): ROUGE-L F1 of greedy generations "
            "(rouge-score, stemming), top-1 agreement and KL(teacher‖student) on the shared vocabulary at "
            "span level, cross-entropy of the response tokens (each model on its own tokens).",
            "",
        ]
    else:
        lines += ["The run saved no held-out evaluation (eval_size = 0).", ""]
    lines += ["## Licence notes", ""] + [f"- {note}" for note in _licence_notes(cfg)] + [""]
    lines += ["## Every config field", "", "| field | value |", "|---|---|"]
    lines += [f"| `{k}` | `{json.dumps(v)}` |" for k, v in cfg.to_dict().items()]
    lines += [
        "",
        "## Load it",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained(PATH)",
        "tokenizer = AutoTokenizer.from_pretrained(PATH)",
        "```",
        "",
    ]
    return "\n".join(lines)


def check_export_folder(
    out: Path, force: bool, what: str = "--out", replace_hint: str = "pass --force to replace it"
) -> None:
    """Refuse a file, or an existing non-empty folder unless ``force``; ``what`` names the folder's field
    and ``replace_hint`` says how to replace it (the CLI's flags by default, the app passes its own)."""
    if out.exists() and not out.is_dir():
        raise SraVizError(f"{what} {str(out)!r} is a file; give a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise SraVizError(
            f"{what} {str(out)!r} exists and is not empty; choose a new folder or {replace_hint}"
        )


def _outside_run_files(run_dir: str | os.PathLike, out: Path, what: str) -> None:
    """Refuse an export folder that is the run folder, holds it, or is one of its own files: replacing
    it would delete the run (a new sub-folder such as ``<run>/export`` is fine)."""
    run, target = Path(run_dir).resolve(), out.expanduser().resolve()
    entry = target.relative_to(run).parts[0] if run in target.parents else None  # first part under the run
    if target == run or target in run.parents or entry in RUN_ENTRIES:
        raise SraVizError(
            f"{what} {str(out)!r} is the run folder, holds it or is one of its own files: exporting there "
            f"would overwrite the run; give a new folder such as {str(run / 'export')!r}"
        )


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    force: bool = False,
    device: str | None = "cpu",
    **folder_words: str,
) -> Path:
    """Write the run's student to ``out`` as a complete transformers folder (written aside, then moved in).

    An existing non-empty ``out`` is refused unless ``force`` (then it is replaced); ``folder_words``
    (``what``, ``replace_hint``) word that refusal for the caller (:func:`check_export_folder`).
    Returns ``out``.
    Example:
        >>> export_run("runs/sra", "exported/sra", force=True)  # doctest: +SKIP
        PosixPath('exported/sra')
    """
    out = Path(out)
    check_export_folder(out, force, **folder_words)
    read_config(run_dir)  # a clear line when run_dir is not a run
    _outside_run_files(
        run_dir, out, folder_words.get("what", "--out")
    )  # a clear line when run_dir is not a run
    student = load_run_student(run_dir, device=device)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model, tokenizer = student.model, student.tokenizer
        model.config.use_cache = True
        generation = model.generation_config
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(generation, name, None) is None and getattr(tokenizer, name, None) is not None:
                setattr(generation, name, getattr(tokenizer, name))
        model.save_pretrained(staging, safe_serialization=True)
        generation.save_pretrained(staging)
        save_tokenizer(tokenizer, staging)
        (staging / "README.md").write_text(model_card(run_dir, student), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
