"""``DistillConfig``: every option of a distillation run, one documented field each, JSON round-trip.

Each field declares itself in its metadata: ``help`` (its documentation; the CLI builds its flags from
it), ``choices`` (the allowed values) and ``min`` / ``above`` / ``max`` (its range). Every check runs
at construction, so a config that exists is a valid one:

Example:
    >>> cfg = DistillConfig(method="uld", steps=10)
    >>> DistillConfig.from_json(cfg.to_json()) == cfg
    True
    >>> field_choices("method")
    ('sra', 'uld', 'exact', 'mined', 'ce')
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from ..errors import SraVizError
from ..fetch import DEFAULT_STUDENT, DEFAULT_TEACHER
from .tracking import REPORT_TO

METHODS = ("sra", "uld", "exact", "mined", "ce")
VARIANTS = ("full", "last_k", "truncated")
MASS_MODES = ("last_token", "received", "uniform")
MASS_LAYERS = ("per_layer", "last_pair")
KD_WEIGHTINGS = ("sum", "saliency")
DTYPES = ("float32", "bfloat16")
PROJECTOR_INITS = ("orthogonal", "xavier")
HEAD_DTYPES = ("auto", "float32", "bfloat16")
PEFTS = ("none", "lora")
ON_OFF = ("on", "off")
# Below this, logits / τ overflow float32 for ordinary logits (|z| ~ 30 -> 3e4 / 1e-2 is still finite,
# 1e-45 is not even a normal float): the softmax is one-hot or NaN and the KD term means nothing.
MIN_TEMPERATURE = 0.01
DEVICE_PATTERN = r"cpu|mps|cuda(:\d+)?"
LAYER_SCHEDULE_PATTERN = r"last|uniform:[1-9]\d*"
LAST_PAIR = [[-1, -1]]  # layer_pairs' default: the last block of each model


def _opt(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    min: float | None = None,
    above: float | None = None,
    max: float | None = None,
    **extra: Any,
) -> Any:
    """A documented field: ``choices`` (allowed values), ``min`` (>=), ``above`` (>), ``max`` (<=)."""
    meta = {"help": help, **extra}
    for key, value in (("choices", choices), ("min", min), ("above", above), ("max", max)):
        if value is not None:
            meta[key] = value
    if callable(default) and not isinstance(default, type):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def field_choices(name: str) -> tuple | None:
    """The allowed values of a DistillConfig field (None when it takes any value of its type).

    Example:
        >>> field_choices("student_variant")
        ('full', 'last_k', 'truncated')
    """
    for f in fields(DistillConfig):
        if f.name == name:
            return f.metadata.get("choices")
    raise SraVizError(f"DistillConfig has no field {name!r}")


def _check_type(name: str, value: Any, annotation: Any) -> Any:
    """``value`` as the field's type (an int is a valid float), or SraVizError naming what was given."""
    kinds = [k.strip() for k in str(annotation).split("|")]
    if value is None:
        if "None" in kinds:
            return None
    elif "bool" in kinds:
        if isinstance(value, bool):
            return value
    elif "int" in kinds:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif "float" in kinds:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif "str" in kinds:
        if isinstance(value, str):
            return value
    elif "list" in kinds:
        if isinstance(value, (list, tuple)):
            return list(value)
    expected = " or ".join(k for k in kinds)
    raise SraVizError(f"{name}={value!r} ({type(value).__name__}) has the wrong type; expected {expected}")


def _check_range(name: str, value: Any, meta: Any) -> None:
    """The field's declared choices and bounds; every float must be finite."""
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        raise SraVizError(f"{name}={value!r} is unknown; expected one of {meta['choices']}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SraVizError(f"{name}={value!r} must be a finite number")
    if "min" in meta and value < meta["min"]:
        raise SraVizError(f"{name}={value!r} must be at least {meta['min']}")
    if "above" in meta and value <= meta["above"]:
        raise SraVizError(f"{name}={value!r} must be greater than {meta['above']}")
    if "max" in meta and value > meta["max"]:
        raise SraVizError(f"{name}={value!r} must be at most {meta['max']}")


def _layer_pairs(value: list) -> list[list[int]]:
    pairs = []
    for pair in value:
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in pair)
        ):
            raise SraVizError(
                f"layer_pairs={value!r}: each pair must be [teacher, student] block indices such as [-1, -1]"
            )
        pairs.append([int(pair[0]), int(pair[1])])
    return pairs


def scheduled_pairs(schedule: str, teacher_blocks: int, student_blocks: int) -> tuple[list, list | None]:
    """``(layer_pairs, layer_weights)`` of a layer schedule (``DistillConfig.layer_schedule``).

    ``last``: ``[[-1, -1]]``, no weights. ``uniform:K``: for k = 1..K the student block
    ``⌊k·S/K + ½⌋ − 1`` maps to the teacher block ``⌊k·T/K + ½⌋ − 1`` (S, T blocks; the last pair is the
    two last blocks), with weight λ_k = k/K, growing with depth.

    Example:
        >>> scheduled_pairs("uniform:3", 18, 30)
        ([[5, 9], [11, 19], [17, 29]], [0.3333333333333333, 0.6666666666666666, 1.0])
    """
    if schedule == "last":
        return [[-1, -1]], None
    kind, _, count = schedule.partition(":")
    if kind != "uniform" or not count.isdigit() or int(count) < 1:
        raise SraVizError(f"layer_schedule={schedule!r} is not understood; expected last or uniform:K")
    k = int(count)
    if k > min(teacher_blocks, student_blocks):
        raise SraVizError(
            f"layer_schedule={schedule!r} maps {k} layers, but the teacher has {teacher_blocks} blocks and "
            f"the student {student_blocks}: use uniform:K with K <= {min(teacher_blocks, student_blocks)}"
        )

    def block(i: int, n: int) -> int:
        return (2 * i * n + k) // (2 * k) - 1  # ⌊i·n/k + ½⌋ − 1 in integers

    pairs = [[block(i, teacher_blocks), block(i, student_blocks)] for i in range(1, k + 1)]
    return pairs, [i / k for i in range(1, k + 1)]


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

    # ------------------------------------------------------------------ models and method
    teacher: str = _opt(DEFAULT_TEACHER, "teacher model: default name, folder, .gguf file or HF id")
    student: str = _opt(DEFAULT_STUDENT, "student model: default name, folder, .gguf file or HF id")
    method: str = _opt(
        "sra",
        "distillation method: sra (span alignment), uld, exact or mined (token-level baselines), or ce "
        "(the student's own next-token loss alone, no teacher: the plain fine-tuning control)",
        choices=METHODS,
    )
    student_variant: str = _opt(
        "full", "full, last_k (only the last k blocks train) or truncated (first k blocks)", choices=VARIANTS
    )
    student_k: int = _opt(6, "k of the last_k / truncated student variants", min=0)
    freeze_embeddings: bool = _opt(True, "keep the (tied) embeddings / LM head frozen")
    peft: str = _opt(
        "none",
        "parameter-efficient training: none, or lora (low-rank adapters on --lora-targets train, every other "
        "weight stays frozen; export merges them into a plain model)",
        choices=PEFTS,
    )
    lora_rank: int = _opt(8, "rank r of the LoRA adapters", min=1)
    lora_alpha: int = _opt(16, "LoRA scale numerator: the update is (alpha / r)·B·A", min=1)
    lora_targets: str = _opt(
        "all-linear",
        "linear layers given LoRA adapters: comma-separated names such as q_proj,v_proj, or all-linear "
        "(every linear layer but the LM head)",
    )

    # ------------------------------------------------------------------ optimizer
    steps: int = _opt(30, "number of optimizer steps of the run", min=1)
    batch_size: int = _opt(4, "texts per optimizer step (per process when distributed)", min=1)
    lr: float = _opt(1e-4, "peak learning rate of the student's trainable weights", above=0.0)
    projector_lr: float = _opt(5e-4, "peak learning rate of the span projectors (no weight decay)", above=0.0)
    weight_decay: float = _opt(0.01, "AdamW weight decay of the student's trainable weights", min=0.0)
    warmup_steps: int = _opt(3, "linear warm-up steps before the cosine decay to 0", min=0)
    max_grad_norm: float = _opt(1.0, "gradient clipping norm (0 = no clipping)", min=0.0)

    # ------------------------------------------------------------------ loss weights
    alpha: float = _opt(0.5, "weight of the CE term: L = α·CE + (1−α)·distillation terms", min=0.0, max=1.0)
    lambda_geo: float = _opt(
        50.0,
        "weight λ_geo of the geometric regularizer (50: the DSKD port's default, which puts its gradient on "
        "the scale of CE's and KD's, see docs/LOSS_SCALES.md; 3 is a variant)",
        min=0.0,
    )
    tau: float = _opt(2.0, "softmax temperature τ of span logit KD and exact-token KD", min=MIN_TEMPERATURE)
    uld_tau: float = _opt(1.0, "softmax temperature of ULD", min=MIN_TEMPERATURE)
    layer_pairs: list = _opt(
        lambda: [list(p) for p in LAST_PAIR],
        "mapped layers as [teacher, student] pairs (block index, -1 = last), any order: they are sorted by "
        "depth and the deepest pair gives L_geo, the probe and the saliency",
        flag_type="pairs",
    )
    layer_weights: list | None = _opt(
        None, "weight λ_ℓ of each layer pair in L_span (None = all 1)", flag=False
    )
    layer_schedule: str = _opt(
        "last",
        "which layers to map when layer_pairs is left at the last pair: last, or uniform:K (K student "
        "blocks evenly spaced, each mapped to the teacher block at the same relative depth, both ending at "
        "the last block, with weights λ = k/K growing with depth, as the public SRA code maps several "
        "layers)",
        pattern=LAYER_SCHEDULE_PATTERN,
        pattern_help="last or uniform:K with K >= 1, e.g. uniform:3",
    )
    mass_mode: str = _opt(
        "last_token", "token mass: last_token (SRA), received or uniform", choices=MASS_MODES
    )
    mass_layers: str = _opt(
        "per_layer",
        "which attention gives each mapped layer's masses: per_layer (its own, the method) or last_pair "
        "(the deepest pair's attention for every layer)",
        choices=MASS_LAYERS,
    )
    saliency_power: float = _opt(1.0, "exponent p of the saliency weights ŵ = M^p / Σ M^p", min=0.0)
    kd_weighting: str = _opt(
        "saliency",
        "span logit KD over spans: saliency (Σ ŵ_k KL, our default) or sum (Σ_k KL, the published form; it "
        "grows with the number of spans and outweighs every other term ~40x, see docs/LOSS_SCALES.md)",
        choices=KD_WEIGHTINGS,
    )

    # ------------------------------------------------------------------ SRA switches
    use_span: bool = _opt(True, "SRA: span representation loss L_span")
    use_geo: bool = _opt(True, "SRA: geometric regularizer L_geo")
    use_kd: bool = _opt(True, "SRA: aligned span logit KD on the shared vocabulary")
    use_ce: bool = _opt(True, "the student's own cross-entropy term (weight α)")
    use_dynamics: bool = _opt(False, "SRA: layer-to-layer CoM dynamics loss (needs 2+ layer pairs)")
    weighted_pooling: bool = _opt(
        True, "pool span CoMs with attention masses (off: plain mean of the tokens)"
    )
    weighted_loss: bool = _opt(True, "weight spans by teacher saliency ŵ in L_span/L_geo (off: uniform)")
    projector_init: str = _opt("orthogonal", "projector init: orthogonal or xavier", choices=PROJECTOR_INITS)

    # ------------------------------------------------------------------ probe and eval
    log_every: int = _opt(10, "evaluate the probe metrics every N steps (and at step 0)", min=1)
    snapshot_every: int = _opt(
        10, "save probe CoM snapshots every N steps (a multiple of log_every is cheapest)", min=1
    )
    probe_size: int = _opt(8, "texts of the fixed probe set (geometry metrics, snapshots)", min=1)
    heldout_size: int = _opt(8, "held-out texts for the student's loss / perplexity", min=0)
    eval_size: int = _opt(
        8,
        "held-out evaluation examples (ROUGE-L, teacher agreement, CE; sra_viz.evaluation); 0 = none",
        min=0,
    )
    eval_every: int = _opt(
        0, "run the held-out evaluation every N steps (0 = only at step 0 and at the end or stop)", min=0
    )
    eval_max_new_tokens: int = _opt(
        48, "longest greedy generation of the held-out evaluation, in tokens", min=1
    )
    probe_ridge: float = _opt(
        0.1, "ridge strength (relative) of the probe's student->teacher measurement map", min=0.0
    )

    # ------------------------------------------------------------------ I/O
    data: str | None = _opt(
        None,
        "JSONL/JSON/CSV/TSV or Parquet file, or a folder of them, of prompt/response, text or chat messages "
        "rows (a chat row trains on its last assistant turn; None = the bundled corpus)",
    )
    prompt_field: str | None = _opt(
        None, "column of --data holding the prompts (with --response-field; None = detect the columns)"
    )
    response_field: str | None = _opt(
        None, "column of --data holding the responses (alone: plain texts; None = detect the columns)"
    )
    max_length: int = _opt(64, "tokens kept per text on each side (longer texts are truncated)", min=4)
    max_prompt_fraction: float = _opt(
        0.5,
        "a prompt of a text longer than max_length is cut from the left to this share of max_length",
        above=0.0,
        max=1.0,
    )
    out: str | None = _opt(None, "run directory (None = a new folder under sra_viz.paths.runs_dir())")
    checkpoint_every: int = _opt(
        50, "write a checkpoint every N steps (0 = only at the end / on stop)", min=0
    )
    report_to: str = _opt(
        "none",
        "where the metrics rows also go besides metrics.jsonl (the source of truth): none, tensorboard "
        "(event files under RUN/tensorboard) or trackio (the local trackio project sra-viz under "
        "$TRACKIO_DIR, else ~/.cache/sra_viz/trackio; one trackio run per run folder)",
        choices=REPORT_TO,
    )

    # ------------------------------------------------------------------ system
    device: str | None = _opt(
        None,
        "cpu, cuda, cuda:1, mps ... (None = cuda when available, else cpu)",
        pattern=DEVICE_PATTERN,
        pattern_help="cpu, cuda, cuda:N or mps",
    )
    dtype: str = _opt("float32", "compute dtype: float32, or bfloat16 autocast on CUDA", choices=DTYPES)
    teacher_head_dtype: str = _opt(
        "auto",
        "dtype of the teacher's frozen V∩ head in span/exact KD: float32, bfloat16, or auto (bfloat16 where "
        "the device multiplies it natively: CUDA, CPUs with AVX512-BF16/AMX; fp32 accumulation either way)",
        choices=HEAD_DTYPES,
    )
    reuse_memory: bool = _opt(
        True,
        "glibc: keep freed tensor memory for reuse instead of page-faulting it back every step (~3x faster "
        "large element-wise ops; process-wide, see sra_viz.distill.perf)",
    )
    teacher_cache: str = _opt(
        "on",
        "read the frozen teacher's span CoMs and masses of each text from the teacher cache "
        "(sra_viz.paths.teacher_cache_dir()) and store those it lacks: SRA's steps (span logits recomputed "
        "from the CoMs), the probe and the held-out evaluation; off: run the teacher each time. ULD and "
        "exact steps need token-level teacher logits and always run the teacher",
        choices=ON_OFF,
    )
    teacher_cache_mb: int = _opt(
        4096, "size limit of the teacher cache folder in MB (the least recently used files go first)", min=1
    )
    seed: int = _opt(0, "seed of the data order, the probe split and the projector init")

    def __post_init__(self) -> None:
        """Check every field against its type and metadata, then the rules that tie fields together."""
        for f in fields(self):
            value = _check_type(f.name, getattr(self, f.name), f.type)
            _check_range(f.name, value, f.metadata)
            if (
                "pattern" in f.metadata
                and value is not None
                and not re.fullmatch(f.metadata["pattern"], value)
            ):
                raise SraVizError(
                    f"{f.name}={value!r} is not understood; expected {f.metadata['pattern_help']}"
                )
            setattr(self, f.name, value)
        self.layer_pairs = _layer_pairs(self.layer_pairs)
        if not self.layer_pairs:
            raise SraVizError(
                "layer_pairs is empty; give at least one [teacher, student] pair such as [[-1, -1]]"
            )
        if self.layer_weights is not None:
            if len(self.layer_weights) != len(self.layer_pairs):
                raise SraVizError(
                    f"{len(self.layer_weights)} layer_weights for {len(self.layer_pairs)} layer pairs"
                )
            self.layer_weights = [_check_type("layer_weights", w, "float") for w in self.layer_weights]
            for w in self.layer_weights:
                _check_range("layer_weights", w, {"min": 0.0})
        explicit = self.layer_pairs != LAST_PAIR or self.layer_weights is not None
        if self.layer_schedule != "last" and explicit:
            raise SraVizError(
                f"layer_schedule={self.layer_schedule!r} picks the layer pairs and their weights itself; "
                f"give it or layer_pairs/layer_weights (got {self.layer_pairs}), not both"
            )
        if self.student_variant != "full" and self.student_k < 1:
            raise SraVizError(f"student_variant={self.student_variant!r} needs student_k >= 1")
        if self.method == "sra" and not (self.use_span or self.use_geo or self.use_kd or self.use_ce):
            raise SraVizError(
                "every SRA loss term is switched off; switch on at least one of span, geo, kd, ce"
            )
        if self.peft == "lora" and self.student_variant == "last_k":
            raise SraVizError(
                "peft='lora' puts adapters on every block the student keeps; use student_variant full or "
                "truncated with it, not last_k"
            )
        if self.method == "ce" and not self.use_ce:
            raise SraVizError(
                "method='ce' trains on the student's CE alone; --no-ce would leave no loss term"
            )

    def validate(self) -> DistillConfig:
        """Returns self: every check already ran at construction (kept for callers that chain it).

        Example:
            >>> DistillConfig(method="x")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            sra_viz.errors.SraVizError: method='x' is unknown; expected one of ('sra', 'uld', ...)
        """
        return self

    def distill_terms(self) -> list[str]:
        """The loss terms this config trains with, in total_loss names.

        Example:
            >>> DistillConfig(use_geo=False).distill_terms()
            ['span', 'kd', 'ce']
        """
        if self.method == "ce":
            return ["ce"]
        if self.method in ("uld", "exact", "mined"):
            terms = [self.method]
        else:
            flags = (("span", self.use_span), ("geo", self.use_geo), ("kd", self.use_kd))
            terms = [name for name, on in flags if on]
            several = len(self.layer_pairs) > 1 or self.layer_schedule not in ("last", "uniform:1")
            if self.use_dynamics and several:
                terms.append("dynamics")
        return terms + (["ce"] if self.use_ce else [])

    def lora_spec(self) -> tuple[int, int, str] | None:
        """(rank, alpha, targets) of the LoRA adapters, or None when the whole student trains.

        Example:
            >>> DistillConfig(peft="lora", lora_rank=4).lora_spec()
            (4, 16, 'all-linear')
        """
        return (self.lora_rank, self.lora_alpha, self.lora_targets) if self.peft == "lora" else None

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
