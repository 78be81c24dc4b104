"""``DistillConfig``: every option of a distillation run, one documented field each, JSON round-trip.

Each field's ``metadata["help"]`` is its documentation; the CLI builds its flags from it.

Example:
    >>> cfg = DistillConfig(method="uld", steps=10)
    >>> DistillConfig.from_json(cfg.to_json()) == cfg
    True
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from ..errors import SraVizError
from ..fetch import DEFAULT_STUDENT, DEFAULT_TEACHER

METHODS = ("sra", "uld", "exact")
VARIANTS = ("full", "last_k", "truncated")
MASS_MODES = ("last_token", "received", "uniform")
MASS_LAYERS = ("per_layer", "last_pair")
KD_WEIGHTINGS = ("sum", "saliency")
DTYPES = ("float32", "bfloat16")


def _opt(default: Any, help: str, **extra: Any) -> Any:
    if callable(default) and not isinstance(default, type):
        return field(default_factory=default, metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class DistillConfig:
    """Options of one distillation run (SRA or a token-level baseline). Defaults follow the method
    (docs/METHOD.md), with λ_geo = 50 (the DSKD port's default; 3 is a variant) and L_KD weighted by
    saliency instead of summed over spans (ours): docs/LOSS_SCALES.md gives the measured gradient
    scales behind both. ``DistillConfig(lambda_geo=3, kd_weighting="sum")`` is the summed-KD form.

    Example:
        >>> DistillConfig(student_variant="truncated", student_k=6).layer_pairs
        [[-1, -1]]
    """

    teacher: str = _opt(DEFAULT_TEACHER, "teacher model: default name, folder, .gguf file or HF id")
    student: str = _opt(DEFAULT_STUDENT, "student model: default name, folder, .gguf file or HF id")
    method: str = _opt(
        "sra", "distillation method: sra (span alignment), uld or exact (token-level baselines)"
    )
    steps: int = _opt(30, "number of optimizer steps of the run")
    batch_size: int = _opt(4, "texts per optimizer step (per process when distributed)")
    max_length: int = _opt(64, "tokens kept per text on each side (longer texts are truncated)")
    max_prompt_fraction: float = _opt(
        0.5, "a prompt of a text longer than max_length is cut from the left to this share of max_length"
    )
    lr: float = _opt(1e-4, "peak learning rate of the student's trainable weights")
    projector_lr: float = _opt(5e-4, "peak learning rate of the span projectors (no weight decay)")
    weight_decay: float = _opt(0.01, "AdamW weight decay of the student's trainable weights")
    warmup_steps: int = _opt(3, "linear warm-up steps before the cosine decay to 0")
    max_grad_norm: float = _opt(1.0, "gradient clipping norm (0 = no clipping)")
    alpha: float = _opt(0.5, "weight of the CE term: L = α·CE + (1−α)·distillation terms")
    lambda_geo: float = _opt(
        50.0,
        "weight λ_geo of the geometric regularizer (50: the DSKD port's default, which puts its gradient on "
        "the scale of CE's and KD's, see docs/LOSS_SCALES.md; 3 is a variant)",
    )
    tau: float = _opt(2.0, "softmax temperature τ of span logit KD and exact-token KD")
    uld_tau: float = _opt(1.0, "softmax temperature of ULD")
    layer_pairs: list = _opt(
        lambda: [[-1, -1]],
        "mapped layers as [teacher, student] pairs (block index, -1 = last), any order: they are sorted by depth "
        "and the deepest pair gives L_geo, the probe and the saliency",
        flag_type="pairs",
    )
    layer_weights: list | None = _opt(
        None, "weight λ_ℓ of each layer pair in L_span (None = all 1)", flag=False
    )
    mass_mode: str = _opt("last_token", "token mass: last_token (SRA), received or uniform")
    mass_layers: str = _opt(
        "per_layer",
        "which attention gives each mapped layer's masses: per_layer (its own, the method) or last_pair "
        "(the deepest pair's attention for every layer)",
    )
    saliency_power: float = _opt(1.0, "exponent p of the saliency weights ŵ = M^p / Σ M^p")
    weighted_pooling: bool = _opt(
        True, "pool span CoMs with attention masses (off: plain mean of the tokens)"
    )
    weighted_loss: bool = _opt(True, "weight spans by teacher saliency ŵ in L_span/L_geo (off: uniform)")
    kd_weighting: str = _opt(
        "saliency",
        "span logit KD over spans: saliency (Σ ŵ_k KL, our default) or sum (Σ_k KL, the published form; it "
        "grows with the number of spans and outweighs every other term ~40x, see docs/LOSS_SCALES.md)",
    )
    teacher_head_dtype: str = _opt(
        "auto",
        "dtype of the teacher's frozen V∩ head in span/exact KD: float32, bfloat16, or auto (bfloat16 where "
        "the device multiplies it natively: CUDA, CPUs with AVX512-BF16/AMX; fp32 accumulation either way)",
    )
    use_span: bool = _opt(True, "SRA: span representation loss L_span")
    use_geo: bool = _opt(True, "SRA: geometric regularizer L_geo")
    use_kd: bool = _opt(True, "SRA: aligned span logit KD on the shared vocabulary")
    use_ce: bool = _opt(True, "the student's own cross-entropy term (weight α)")
    use_dynamics: bool = _opt(False, "SRA: layer-to-layer CoM dynamics loss (needs 2+ layer pairs)")
    projector_init: str = _opt("orthogonal", "projector init: orthogonal or xavier")
    student_variant: str = _opt(
        "full", "full, last_k (only the last k blocks train) or truncated (first k blocks)"
    )
    student_k: int = _opt(6, "k of the last_k / truncated student variants")
    freeze_embeddings: bool = _opt(True, "keep the (tied) embeddings / LM head frozen")
    seed: int = _opt(0, "seed of the data order, the probe split and the projector init")
    log_every: int = _opt(10, "evaluate the probe metrics every N steps (and at step 0)")
    snapshot_every: int = _opt(
        10, "save probe CoM snapshots every N steps (a multiple of log_every is cheapest)"
    )
    checkpoint_every: int = _opt(50, "write a checkpoint every N steps (0 = only at the end / on stop)")
    probe_size: int = _opt(8, "texts of the fixed probe set (geometry metrics, snapshots)")
    heldout_size: int = _opt(8, "held-out texts for the student's loss / perplexity")
    probe_ridge: float = _opt(
        0.1, "ridge strength (relative) of the probe's student->teacher measurement map"
    )
    data: str | None = _opt(None, "JSONL/CSV file of prompt/response or text rows (None = bundled corpus)")
    out: str | None = _opt(None, "run directory (None = a new folder under sra_viz.paths.runs_dir())")
    reuse_memory: bool = _opt(
        True,
        "glibc: keep freed tensor memory for reuse instead of page-faulting it back every step (~3x "
        "faster large element-wise ops; process-wide, see sra_viz.distill.perf)",
    )
    device: str | None = _opt(None, "cpu, cuda, cuda:1 ... (None = cuda when available, else cpu)")
    dtype: str = _opt("float32", "compute dtype: float32, or bfloat16 autocast on CUDA")

    def __post_init__(self) -> None:
        self.layer_pairs = [[int(t), int(s)] for t, s in self.layer_pairs]

    def validate(self) -> DistillConfig:
        """Raise SraVizError naming the first bad field; returns self.

        Example:
            >>> DistillConfig(method="x").validate()
            Traceback (most recent call last):
            ...
            sra_viz.errors.SraVizError: method='x' is unknown; expected one of ('sra', 'uld', 'exact')
        """
        for name, allowed in (
            ("method", METHODS),
            ("student_variant", VARIANTS),
            ("mass_mode", MASS_MODES),
            ("kd_weighting", KD_WEIGHTINGS),
            ("dtype", DTYPES),
            ("projector_init", ("orthogonal", "xavier")),
            ("teacher_head_dtype", ("auto", "float32", "bfloat16")),
        ):
            if getattr(self, name) not in allowed:
                raise SraVizError(f"{name}={getattr(self, name)!r} is unknown; expected one of {allowed}")
        positive = ("steps", "batch_size", "max_length", "log_every", "snapshot_every", "probe_size")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise SraVizError(f"{name}={getattr(self, name)!r} must be at least 1")
        for name in ("warmup_steps", "checkpoint_every", "heldout_size", "student_k"):
            if int(getattr(self, name)) < 0:
                raise SraVizError(f"{name}={getattr(self, name)!r} must not be negative")
        if not 0.0 <= self.alpha <= 1.0:
            raise SraVizError(f"alpha={self.alpha} must be in [0, 1]")
        if self.tau <= 0 or self.uld_tau <= 0:
            raise SraVizError(f"tau={self.tau}, uld_tau={self.uld_tau}: temperatures must be > 0")
        if not 0.0 < self.max_prompt_fraction <= 1.0:
            raise SraVizError(f"max_prompt_fraction={self.max_prompt_fraction} must be in (0, 1]")
        if self.max_length < 4:
            raise SraVizError(f"max_length={self.max_length} is too short; use at least 4 tokens")
        if not self.layer_pairs:
            raise SraVizError(
                "layer_pairs is empty; give at least one [teacher, student] pair such as [[-1, -1]]"
            )
        if self.layer_weights is not None and len(self.layer_weights) != len(self.layer_pairs):
            raise SraVizError(
                f"{len(self.layer_weights)} layer_weights for {len(self.layer_pairs)} layer pairs"
            )
        if self.student_variant != "full" and self.student_k < 1:
            raise SraVizError(f"student_variant={self.student_variant!r} needs student_k >= 1")
        if self.method == "sra" and not (self.use_span or self.use_geo or self.use_kd or self.use_ce):
            raise SraVizError(
                "every SRA loss term is switched off; switch on at least one of span, geo, kd, ce"
            )
        return self

    def distill_terms(self) -> list[str]:
        """The loss terms this config trains with, in total_loss names.

        Example:
            >>> DistillConfig(use_geo=False).distill_terms()
            ['span', 'kd', 'ce']
        """
        if self.method == "uld":
            terms = ["uld"]
        elif self.method == "exact":
            terms = ["exact"]
        else:
            flags = (("span", self.use_span), ("geo", self.use_geo), ("kd", self.use_kd))
            terms = [name for name, on in flags if on]
            if self.use_dynamics and len(self.layer_pairs) > 1:
                terms.append("dynamics")
        return terms + (["ce"] if self.use_ce else [])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillConfig:
        """Build from a dict; unknown keys are an error (they would be silently ignored otherwise)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SraVizError(f"unknown DistillConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> DistillConfig:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SraVizError(f"config is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise SraVizError(f"config JSON must be an object, got {type(data).__name__}")
        return cls.from_dict(data)


def field_defaults() -> dict[str, Any]:
    """name -> default of every DistillConfig field (what the CLI leaves unchanged)."""
    out = {}
    for f in fields(DistillConfig):
        # ignore: mypy cannot tell from `f.default is MISSING` that default_factory is set
        out[f.name] = f.default_factory() if f.default is MISSING else f.default  # type: ignore[operator]
    return out
