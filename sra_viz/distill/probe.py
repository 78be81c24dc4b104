"""Probe metrics: how far the student's span geometry is from the teacher's, measured the same way for
every method.

The probe is a fixed set of texts (chosen by seed, never trained on). Teacher CoMs are computed once;
student CoMs at each evaluation, at the *deepest* mapped layer pair, pooled exactly as in training
(the masses the :class:`~.plan.LayerPlan` names for that layer).

**One measurement for all methods (our choice).** ULD and exact-token KD train no projector, and an
SRA projector would favour SRA, so every method is measured through the same closed-form map: a
ridge regression student -> teacher (no bias, like the projector) fitted on the probe CoMs of half of
the probe texts and applied to the other half, and vice versa (2-fold cross-fit by text, so no span
is projected by a map that saw it; :func:`sra_viz.geometry.crossfit_scores`, which the Geometry page
uses too). From it: ``probe_cos`` (mean cosine of projected student CoMs vs
teacher CoMs) and ``probe_retrieval`` (is the nearest teacher span of the same text to a projected
student span its own counterpart? cosine after removing each side's mean, which all CoMs share).

Projector-free: ``probe_cka`` (linear CKA over all probe spans), ``probe_gram_distance`` (the
unweighted L_geo: mean over texts of the mean squared difference of the cosine Grams) and
``probe_gram_distance_weighted`` (the same with the teacher's saliency pair weights π: what L_geo
trains). SRA runs also log ``probe_cos_projector``, the cosine through their own trained projector
(not comparable across methods). Held-out: the student's CE on held-out texts and its perplexity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .. import geometry
from ..features import saliency_weights
from ..forward import n_layers
from ..losses import causal_lm_loss, uniform_weights
from .batch import PreparedExample, collate, label_positions
from .config import DistillConfig
from .plan import LayerPlan, VocabHeads
from .side_pass import SideOutput, SideView, autocast_for, run_side
from .teacher_cache import TeacherCache, teacher_spans

if TYPE_CHECKING:
    from ..models import LoadedModel


@dataclass
class ProbeTexts:
    """The aligned probe and held-out texts, and each tokenizer's padding side (to collate them)."""

    probe: list[PreparedExample]
    heldout: list[PreparedExample]
    teacher_padding_side: str
    student_padding_side: str


@dataclass
class ProbeTeacher:
    """Teacher side of the probe, computed once: CoMs of the deepest pair, per-span facts."""

    centers: np.ndarray  # (N, D_T) all probe spans, text after text
    text_id: np.ndarray  # (N,) index of the probe text of each span
    span_index: np.ndarray  # (N,) span index within its text
    span_text: list[str]
    saliency: np.ndarray  # (N,) teacher ŵ within each text


def _batches(items: list[PreparedExample], size: int):
    for i in range(0, len(items), size):
        yield i, items[i : i + size]


def _probe_passes(
    loaded: Any, side: str, texts: ProbeTexts, config: DistillConfig, plan: LayerPlan
) -> Iterator[tuple[int, list[PreparedExample], torch.Tensor, SideOutput, torch.Tensor]]:
    """Yield (start, items, CoMs (B, N, D), out, span_valid (B, N)) per probe batch: one no-grad pass of
    ``side`` at its layer of the deepest pair, with that layer's masses, pooled exactly as in training."""
    layer = plan.deepest[0 if side == "teacher" else 1]
    masses = plan.mass_layers_of(side, [layer])
    for start, items in _batches(texts.probe, config.batch_size):
        batch = collate(items, texts.teacher_padding_side, texts.student_padding_side)
        with torch.no_grad():
            out = run_side(
                loaded,
                batch,
                side,
                [layer],
                masses,
                config.mass_mode,
                config.weighted_pooling,
                grad=False,
                dtype=config.dtype,
            )
        yield start, items, out.centers[layer], out, batch.span_valid.to(out.centers[layer].device)


def teacher_probe(
    teacher: LoadedModel,
    texts: ProbeTexts,
    config: DistillConfig,
    plan: LayerPlan,
    teacher_cache: TeacherCache | None = None,
) -> ProbeTeacher:
    """Teacher CoMs and saliency of every probe span at the deepest mapped teacher layer (no grad),
    read from ``teacher_cache`` where it holds them (:func:`.teacher_cache.teacher_spans`)."""
    centers, text_id, span_idx, span_texts, sal = [], [], [], [], []
    layer = plan.deepest[0]
    masses = plan.mass_layers_of("teacher", [layer])
    for start, items in _batches(texts.probe, config.batch_size):
        batch = collate(items, texts.teacher_padding_side, texts.student_padding_side)
        out = teacher_spans(teacher, batch, config, masses, teacher_cache)
        com = out.centers[layer]  # (B, N, D_T)
        valid = batch.span_valid.to(com.device)  # (B, N)
        if layer in out.span_mass:
            w = saliency_weights(out.span_mass[layer], valid, config.saliency_power)
        else:
            w = uniform_weights(valid)
        for b, item in enumerate(items):
            n = item.n_spans
            centers.append(com[b, :n].float().cpu().numpy())
            sal.append(w[b, :n].float().cpu().numpy())
            text_id += [start + b] * n
            span_idx += list(range(n))
            span_texts += item.span_texts
    return ProbeTeacher(
        np.concatenate(centers), np.asarray(text_id), np.asarray(span_idx), span_texts, np.concatenate(sal)
    )


def student_probe(student: SideView, texts: ProbeTexts, config: DistillConfig, plan: LayerPlan) -> np.ndarray:
    """Student CoMs (N, D_S) of every probe span at the deepest mapped student layer (no grad)."""
    rows = []
    for _, items, com, _, _ in _probe_passes(student, "student", texts, config, plan):
        rows += [com[b, : item.n_spans].float().cpu().numpy() for b, item in enumerate(items)]
    return np.concatenate(rows)


def label_loss(
    model: Any,
    items: list[PreparedExample],
    side: str,
    head: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    padding_sides: tuple[str, str],
    dtype: str = "float32",
) -> tuple[float, int]:
    """(mean CE, label tokens) of one side's model on the label tokens of ``items`` (the responses).

    ``model`` is what forward_features takes (``.model``, ``.tokenizer``); ``head`` maps its last hidden
    states (M, D) to logits (M, V); ``padding_sides`` is (teacher side, student side). No gradient.
    Example:
        >>> loss, tokens = label_loss(
        ...     student_view, items, "student", heads.student_logits, 8, ("left", "right")
        ... )  # doctest: +SKIP
    """
    last = n_layers(model) - 1
    device = next(model.model.parameters()).device
    total, count = 0.0, 0
    for _, chunk in _batches(items, batch_size):
        batch = collate(chunk, *padding_sides)
        rows, pos, targets = label_positions(batch, side)
        if rows.numel() == 0:
            continue
        with torch.no_grad():
            out = run_side(
                model, batch, side, [last], {}, "uniform", False, grad=False, dtype=dtype, centers_for=[]
            )
            hidden = out.forward.hidden[last][rows.to(device), pos.to(device)]  # (M, D)
            with autocast_for(device, dtype):
                logits = head(hidden)  # (M, V)
            total += float(causal_lm_loss(logits, targets.to(device))) * rows.numel()
            count += rows.numel()
    return (total / count if count else float("nan")), count


def heldout_loss(
    student: SideView, heads: VocabHeads, texts: ProbeTexts, config: DistillConfig, plan: LayerPlan
) -> float:
    """Mean CE of the student on the held-out texts' label tokens (NaN without held-out texts)."""
    sides = (texts.teacher_padding_side, texts.student_padding_side)
    loss, _ = label_loss(
        student, texts.heldout, "student", heads.student_logits, config.batch_size, sides, config.dtype
    )
    return loss


def evaluate_probe(
    teacher: ProbeTeacher,
    student: SideView,
    heads: VocabHeads,
    texts: ProbeTexts,
    config: DistillConfig,
    plan: LayerPlan,
    projector: torch.nn.Module | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Probe + held-out metrics, and the snapshot arrays of this step; ``projector`` (the deepest pair's,
    SRA only) adds ``probe_cos_projector``.

    Example:
        >>> metrics, snapshot = evaluate_probe(teacher, student, heads, texts, cfg, plan)  # doctest: +SKIP
    """
    S = student_probe(student, texts, config, plan)  # (N, D_S)
    T = teacher.centers  # (N, D_T)
    scores, projected = geometry.crossfit_scores(
        S, T, teacher.text_id, config.probe_ridge, weights=teacher.saliency
    )  # projected (N, D_T)
    metrics = {f"probe_{name}": value for name, value in scores.items()}
    # the student's own CoMs too: the app's Gram-change view needs the student's Gram, not its projection's
    snapshot = {"student_projected": projected.astype(np.float32), "student": S.astype(np.float32)}
    if projector is not None:
        device = next(projector.parameters()).device
        with torch.no_grad():
            own = projector(torch.from_numpy(S).to(device)).float().cpu().numpy()  # (N, D_T)
        metrics["probe_cos_projector"] = geometry.mean_matched_cosine(own, T)
        snapshot["student_projector"] = own.astype(np.float32)
    loss = heldout_loss(student, heads, texts, config, plan)
    metrics["heldout_loss"] = loss
    metrics["heldout_ppl"] = math.exp(min(loss, 50.0)) if math.isfinite(loss) else float("nan")
    return metrics, snapshot


def teacher_snapshot(teacher: ProbeTeacher) -> dict[str, np.ndarray]:
    """The arrays of ``snapshots/teacher.npz``."""
    return {
        "teacher": teacher.centers.astype(np.float32),
        "text_id": teacher.text_id.astype(np.int64),
        "span_index": teacher.span_index.astype(np.int64),
        "span_text": np.asarray(teacher.span_text, dtype=str),
        "saliency": teacher.saliency.astype(np.float32),
    }
