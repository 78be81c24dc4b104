"""Held-out evaluation of a student against its references (the teacher, the student before training).

The held-out examples are a **fixed** part of the corpus that no session trains or probes on: the
``round(EVAL_FRACTION·n)`` examples whose SHA-256 of ``"sra_viz-eval:" + text`` is smallest
(:func:`eval_split`). The rule depends on the texts alone, not on a seed, so every run, method and
``sra-viz eval`` of one corpus sees the same examples; a user corpus gets the same rule. Three measures:

* **ROUGE-L F1** of greedy generations against the reference responses, with the ``rouge-score``
  package and Porter stemming (as the SRA paper's public code). Its default tokenizer keeps only
  ``[a-z0-9]``; a reference whose letters are mostly outside it (CJK, Cyrillic, Arabic, Devanagari...)
  is scored on characters instead, and the result says how many were scored each way.
* **Teacher agreement** (no generation): span CoMs of both last layers, pooled as in training; on the
  shared vocabulary V∩ (:func:`sra_viz.vocab.shared_vocab`) the share of spans where teacher and
  student predict the same top-1 token, and ``KL(p_T ‖ p_S)`` at τ = 1 averaged over spans.
* **Held-out CE / perplexity** of the response tokens (:func:`sra_viz.distill.probe.label_loss`), each
  model on its own tokens.

Example:
    >>> evaluator = Evaluator(pair.teacher, pair.student.tokenizer, eval_examples(size=8))  # doctest: +SKIP
    >>> before = evaluator.evaluate(pair.student, "student before")  # doctest: +SKIP
    >>> before.to_dict()["rouge_l"], before.to_dict()["teacher_agreement"]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .data import RESPONSE_SEPARATOR, Example
from .errors import SraVizError

EVAL_FRACTION = 0.1  # share of a corpus held out for evaluation
MIN_CORPUS = 10  # fewer examples cannot give both an evaluation set and training data
CHAR_SCRIPT_SHARE = 0.25  # a reference with more of its letters outside [a-z0-9] is scored on characters
NEXT_PROMPT = "\nInstruction:"  # a generation that starts the next corpus prompt is cut there
_KEPT_BY_ROUGE = re.compile(r"[a-z0-9]")


def _eval_key(example: Example) -> str:
    return hashlib.sha256(("sra_viz-eval:" + example.text).encode("utf-8")).hexdigest()


def eval_split(
    examples: Sequence[Example], fraction: float = EVAL_FRACTION
) -> tuple[list[Example], list[Example]]:
    """(rest, held out): the fixed evaluation split of a corpus (see the module docstring); input order kept.

    Copies of a held-out text are held out too. Fewer than ``MIN_CORPUS`` examples is an error.
    Example:
        >>> from sra_viz.data import load_bundled_corpus
        >>> rest, held = eval_split(load_bundled_corpus())
        >>> len(held), len(rest) + len(held) == len(load_bundled_corpus())
        (31, True)
    """
    n = len(examples)
    if n < MIN_CORPUS:
        raise SraVizError(
            f"a corpus of {n} examples is too small to hold out an evaluation set: give at least {MIN_CORPUS}"
        )
    keys = [_eval_key(ex) for ex in examples]
    k = max(1, round(fraction * n))
    held_keys = {keys[i] for i in sorted(range(n), key=lambda i: (keys[i], i))[:k]}
    held = [ex for ex, key in zip(examples, keys, strict=True) if key in held_keys]
    rest = [ex for ex, key in zip(examples, keys, strict=True) if key not in held_keys]
    if not rest:
        raise SraVizError(f"a corpus of {n} copies of the same text leaves nothing to train on")
    return rest, held


def eval_examples(
    data: str | None = None,
    size: int | None = None,
    prompt_field: str | None = None,
    response_field: str | None = None,
) -> list[Example]:
    """The first ``size`` held-out examples (all when None) of a corpus file (None = the bundled corpus),
    its columns named by ``prompt_field`` / ``response_field`` when given.

    Example:
        >>> [ex.id for ex in eval_examples(size=2)]  # doctest: +SKIP
        ['sra-0007', 'sra-0019']
    """
    from .data import load_bundled_corpus, load_examples

    if data is None:
        corpus = load_bundled_corpus()
    else:
        corpus = load_examples(data, prompt_field=prompt_field, response_field=response_field)
    held = eval_split(corpus)[1]
    if size is not None and size < 1:
        raise SraVizError(f"evaluation size {size} must be at least 1")
    return held if size is None else held[:size]


# ---------------------------------------------------------------------------------------------- ROUGE


class _CharTokenizer:
    """rouge-score tokenizer for scripts its default one drops: every letter or digit is a token."""

    def tokenize(self, text: str) -> list[str]:
        return [c for c in text.lower() if c.isalnum()]


def scored_on_characters(reference: str) -> bool:
    """True when more than CHAR_SCRIPT_SHARE of the reference's letters/digits are outside ``[a-z0-9]``
    (lowercased), i.e. the default rouge-score tokenizer would drop them.

        >>> scored_on_characters("Paris is the capital."), scored_on_characters("東京は日本の首都です。")
        (False, True)
    """
    chars = [c for c in reference.lower() if c.isalnum()]
    dropped = sum(1 for c in chars if not _KEPT_BY_ROUGE.fullmatch(c))
    return bool(chars) and dropped / len(chars) > CHAR_SCRIPT_SHARE


@dataclass
class RougeScores:
    """ROUGE-L F1 of each prediction, and how many were scored on words / on characters."""

    scores: list[float]
    on_words: int
    on_chars: int

    @property
    def mean(self) -> float:
        return float(sum(self.scores) / len(self.scores)) if self.scores else float("nan")


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> RougeScores:
    """ROUGE-L F1 per pair (rouge-score, Porter stemming; characters for scripts it drops).

    Example:
        >>> r = rouge_l(["the cats sat", "東京です"], ["the cat sat down", "東京は首都です"])
        >>> [round(s, 3) for s in r.scores], r.on_words, r.on_chars
        ([0.857, 0.727], 1, 1)
    """
    from rouge_score import rouge_scorer

    words = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    chars = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_CharTokenizer())
    scores, on_chars = [], 0
    for prediction, reference in zip(predictions, references, strict=True):
        by_char = scored_on_characters(reference)
        on_chars += by_char
        scorer = chars if by_char else words
        scores.append(float(scorer.score(reference, prediction)["rougeL"].fmeasure))
    return RougeScores(scores, len(scores) - on_chars, on_chars)


# ----------------------------------------------------------------------------------------- generation


def generation_prompt(example: Example) -> str:
    """What a model reads before its response: the prompt and the separator (as in training texts)."""
    return example.prompt + RESPONSE_SEPARATOR


def clean_generation(text: str) -> str:
    """A generation cut where it starts the next corpus prompt (``NEXT_PROMPT``), stripped.

    >>> clean_generation(" Blue light.\\nInstruction: Why?")
    'Blue light.'
    """
    return text.split(NEXT_PROMPT, 1)[0].strip()


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 48,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "generating",
) -> list[str]:
    """Greedy continuations of ``prompts`` (left-padded batches; a tqdm bar over prompts), decoded, raw.

    Example:
        >>> generate(
        ...     pair.student.model, pair.student.tokenizer, ["The capital of France is"], 8
        ... )  # doctest: +SKIP
        [' Paris. It is the most ...']
    """
    from tqdm import tqdm

    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[str] = []
    was_training = model.training
    model.eval()
    try:
        with tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not progress, leave=False) as bar:
            for start in range(0, len(prompts), batch_size):
                chunk = list(prompts[start : start + batch_size])
                enc = tokenizer(chunk, return_tensors="pt", padding=True)
                if tokenizer.pad_token_id is None:  # no pad token: padding used id 0 under the mask
                    enc["input_ids"][enc["attention_mask"] == 0] = pad_id
                enc = {k: v.to(device) for k, v in enc.items()}
                with torch.no_grad():
                    ids = model.generate(
                        **enc,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        num_beams=1,
                        pad_token_id=pad_id,
                        eos_token_id=tokenizer.eos_token_id,
                    )
                new = ids[:, enc["input_ids"].shape[1] :]  # (B, ≤ max_new_tokens)
                out += tokenizer.batch_decode(new, skip_special_tokens=True)
                bar.update(len(chunk))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


# ------------------------------------------------------------------------------------------- results


@dataclass
class EvalResult:
    """The held-out figures of one model (None where a measure does not apply, e.g. agreement of the
    teacher with itself); ``examples`` holds prompt, reference, generation and ROUGE-L per example."""

    model: str
    n: int
    rouge_l: float | None
    rouge_on_words: int
    rouge_on_chars: int
    teacher_agreement: float | None
    vcap_kl: float | None
    n_spans: int
    heldout_loss: float | None
    heldout_ppl: float | None
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, with_examples: bool = False) -> dict[str, Any]:
        """JSON-safe dict (non-finite floats to None); ``examples`` only when asked."""
        out = {k: _finite(v) for k, v in asdict(self).items() if k != "examples"}
        if with_examples:
            out["examples"] = self.examples
        return out

    def metrics_row(self, prefix: str = "eval_") -> dict[str, Any]:
        """The figures as metrics.jsonl keys: ``eval_rouge_l``, ``eval_teacher_agreement``, ..."""
        return {prefix + k: v for k, v in self.to_dict().items() if k != "model"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        """The result a ``to_dict(with_examples=True)`` wrote; missing figures are one clear error."""
        known = {f for f in cls.__dataclass_fields__}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise SraVizError(
                f"an evaluation record lacks fields ({exc}); it was not written by sra_viz: remove its file"
            ) from None


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


# ----------------------------------------------------------------------------------------- evaluator


def lm_head(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's LM head with its final logit soft-capping (Gemma), hidden (..., D) -> logits (..., V)."""
    cfg = getattr(model.config, "text_config", None) or model.config
    cap = getattr(cfg, "final_logit_softcapping", None)
    head = model.get_output_embeddings()

    def apply(hidden: torch.Tensor) -> torch.Tensor:
        logits = head(hidden)
        return cap * torch.tanh(logits / cap) if cap else logits

    return apply


class Evaluator:
    """Evaluates students of one teacher on fixed held-out examples; the teacher side is computed once.

    ``config`` (a DistillConfig; defaults when None) gives max_length, the prompt cut, the batch size,
    the mass mode and pooling of the span CoMs, the dtype and ``eval_max_new_tokens``.
    Example:
        >>> ev = Evaluator(pair.teacher, pair.student.tokenizer, eval_examples(size=4))  # doctest: +SKIP
        >>> ev.evaluate(pair.student, "student").teacher_agreement  # doctest: +SKIP
        0.41
    """

    def __init__(
        self,
        teacher: Any,
        student_tokenizer: Any,
        examples: Sequence[Example],
        config: Any = None,
        progress: bool = True,
        teacher_cache: Any = None,
    ):
        """``teacher_cache``: a :class:`sra_viz.distill.teacher_cache.TeacherCache` the teacher's span CoMs
        are read from / stored in (the V∩ logits are computed from them); None computes them."""
        from .distill.batch import prepare_example
        from .distill.config import DistillConfig
        from .vocab import shared_vocab

        if not examples:
            raise SraVizError("no held-out examples to evaluate on")
        self.config = config if config is not None else DistillConfig()
        self.teacher, self.student_tokenizer = teacher, student_tokenizer
        self.examples = list(examples)
        self.progress = progress
        self.teacher_cache = teacher_cache
        cfg = self.config
        self.items = [
            prepare_example(ex, teacher.tokenizer, student_tokenizer, cfg.max_length, cfg.max_prompt_fraction)
            for ex in self.examples
        ]
        self.sides = (teacher.tokenizer.padding_side or "right", student_tokenizer.padding_side or "right")
        self.shared = shared_vocab(teacher.tokenizer, student_tokenizer)
        self._teacher_logp: torch.Tensor | None = None  # (M, V∩) teacher log-probs of every valid span

    # a side's span CoMs at its last layer, pooled as in training
    def _mass_layer(self, model: Any) -> int | None:
        from .forward import n_layers

        cfg = self.config
        return n_layers(model) - 1 if cfg.weighted_pooling and cfg.mass_mode != "uniform" else None

    def _span_logp(self, model: Any, side: str) -> torch.Tensor:
        """(M, V∩) log-softmax over V∩ of every valid span's CoM logits, text after text (τ = 1)."""
        from .distill.batch import collate
        from .distill.side_pass import pool_spans, run_side
        from .distill.teacher_cache import teacher_spans
        from .forward import n_layers

        cfg, last = self.config, n_layers(model) - 1
        head = lm_head(model.model)
        if side == "teacher":  # the teacher's head is only ever run on the CoMs, V∩ rows only
            ids = self.shared.teacher_ids.to(next(model.model.parameters()).device)
            weight = model.model.get_output_embeddings().weight[ids].detach().float()  # (V∩, D_T)
        rows = []
        for start in range(0, len(self.items), cfg.batch_size):
            batch = collate(self.items[start : start + cfg.batch_size], *self.sides)
            with torch.no_grad():
                if side == "teacher":  # its CoMs from the teacher cache where it holds them
                    masses = {last: self._mass_layer(model)}
                    centers = teacher_spans(model, batch, cfg, masses, self.teacher_cache).centers[last]
                    valid = batch.span_valid.to(centers.device)  # (B, N)
                    logits = centers[valid] @ weight.T  # (M_b, V∩)
                    cap = getattr(
                        getattr(model.model.config, "text_config", None) or model.model.config,
                        "final_logit_softcapping",
                        None,
                    )
                    logits = cap * torch.tanh(logits / cap) if cap else logits
                else:  # the student's CoM logits as training pools them: from its token logits
                    out = run_side(
                        model,
                        batch,
                        side,
                        [last],
                        {last: self._mass_layer(model)},
                        cfg.mass_mode,
                        cfg.weighted_pooling,
                        grad=False,
                        dtype=cfg.dtype,
                    )
                    valid = batch.span_valid.to(out.centers[last].device)  # (B, N)
                    tokens = head(out.forward.hidden[last]).float()  # (B, L_S, V_S)
                    pooled = pool_spans(tokens, out.span_index, out.pool_mass[last], valid)  # (M_b, V_S)
                    logits = pooled[:, self.shared.student_ids.to(valid.device)]  # (M_b, V∩)
            rows.append(torch.log_softmax(logits.float(), dim=-1).cpu())
        return torch.cat(rows) if rows else torch.zeros((0, len(self.shared)))

    @property
    def teacher_logp(self) -> torch.Tensor:
        if self._teacher_logp is None:
            self._teacher_logp = self._span_logp(self.teacher, "teacher")
        return self._teacher_logp

    def agreement(self, student: Any) -> tuple[float, float, int]:
        """(top-1 agreement, mean KL(p_T ‖ p_S), spans) on V∩ over every held-out span."""
        t = self.teacher_logp  # (M, V∩)
        s = self._span_logp(student, "student")  # (M, V∩)
        if t.shape[0] == 0:
            return float("nan"), float("nan"), 0
        agree = (t.argmax(-1) == s.argmax(-1)).float().mean()
        kl = (t.exp() * (t - s)).sum(-1).mean()
        return float(agree), float(kl), int(t.shape[0])

    def _loss(self, model: Any, side: str) -> tuple[float, float]:
        from .distill.probe import label_loss

        cfg = self.config
        loss, _ = label_loss(
            model, self.items, side, lm_head(model.model), cfg.batch_size, self.sides, cfg.dtype
        )
        return loss, (math.exp(min(loss, 50.0)) if math.isfinite(loss) else float("nan"))

    def _generations(self, model: Any, name: str, generate_text: bool) -> tuple[RougeScores | None, list]:
        prompted = [ex for ex in self.examples if ex.prompt]
        if not generate_text or not prompted:
            return None, []
        raw = generate(
            model.model,
            model.tokenizer,
            [generation_prompt(ex) for ex in prompted],
            self.config.eval_max_new_tokens,
            self.config.batch_size,
            self.progress,
            desc=f"generating ({name})",
        )
        texts = [clean_generation(t) for t in raw]
        scores = rouge_l(texts, [ex.response for ex in prompted])
        rows = [
            {
                "id": ex.id,
                "prompt": ex.prompt,
                "reference": ex.response,
                "generation": text,
                "rouge_l": score,
                "scored_on": "characters" if scored_on_characters(ex.response) else "words",
            }
            for ex, text, score in zip(prompted, texts, scores.scores, strict=True)
        ]
        return scores, rows

    def evaluate(self, student: Any, name: str = "student", generate_text: bool = True) -> EvalResult:
        """Every measure of a student (``.model``, ``.tokenizer`` with the student tokenizer's vocabulary)."""
        agree, kl, spans = self.agreement(student)
        loss, ppl = self._loss(student, "student")
        scores, rows = self._generations(student, name, generate_text)
        return EvalResult(
            model=name,
            n=len(self.examples),
            rouge_l=None if scores is None else scores.mean,
            rouge_on_words=scores.on_words if scores else 0,
            rouge_on_chars=scores.on_chars if scores else 0,
            teacher_agreement=agree,
            vcap_kl=kl,
            n_spans=spans,
            heldout_loss=loss,
            heldout_ppl=ppl,
            examples=rows,
        )

    def evaluate_teacher(self, generate_text: bool = True) -> EvalResult:
        """The teacher's own figures (ROUGE-L, CE on its tokens; agreement with itself does not apply)."""
        loss, ppl = self._loss(self.teacher, "teacher")
        scores, rows = self._generations(self.teacher, "teacher", generate_text)
        return EvalResult(
            model="teacher",
            n=len(self.examples),
            rouge_l=None if scores is None else scores.mean,
            rouge_on_words=scores.on_words if scores else 0,
            rouge_on_chars=scores.on_chars if scores else 0,
            teacher_agreement=None,
            vcap_kl=None,
            n_spans=int(self.teacher_logp.shape[0]),
            heldout_loss=loss,
            heldout_ppl=ppl,
            examples=rows,
        )


# ----------------------------------------------------------------------------------------- run files


@dataclass
class RunEvaluations:
    """The held-out evaluations a run saved: the teacher's once, the student's per evaluated step."""

    teacher: EvalResult | None
    steps: dict[int, EvalResult]

    @property
    def before(self) -> EvalResult | None:
        """The student before training (step 0), if evaluated."""
        return self.steps.get(0)

    @property
    def after(self) -> EvalResult | None:
        """The student at its last evaluated step after 0, if any."""
        later = [s for s in self.steps if s > 0]
        return self.steps[max(later)] if later else None


def load_run_evaluations(run_dir: str | Any) -> RunEvaluations:
    """Read ``<run>/evaluation/*.json`` (see :mod:`sra_viz.distill.runs`); empty when none was saved.

    Example:
        >>> evals = load_run_evaluations("runs/sra")  # doctest: +SKIP
        >>> evals.before.rouge_l, evals.after.rouge_l, evals.teacher.rouge_l  # doctest: +SKIP
        >>> [(ex["reference"], ex["generation"]) for ex in evals.after.examples]  # doctest: +SKIP
    """
    from .distill.runs import read_evaluations

    teacher, steps = read_evaluations(run_dir)
    return RunEvaluations(
        EvalResult.from_dict(teacher) if teacher else None,
        {step: EvalResult.from_dict(data) for step, data in steps.items()},
    )


def side_by_side(evaluations: RunEvaluations) -> list[dict[str, Any]]:
    """The held-out generations of a run side by side, one row per prompt: ``id``, ``prompt``,
    ``reference``, then ``teacher``, ``student before``, ``student after`` (each a ``{"generation",
    "rouge_l"}`` dict, or None when that model was not evaluated or kept no generations). Rows follow
    the order of the evaluation files; empty when no evaluation of the run kept its generations (runs
    made before they were saved, or held-out examples without prompts).

    Example:
        >>> rows = side_by_side(load_run_evaluations("runs/sra"))  # doctest: +SKIP
        >>> rows[0]["reference"], rows[0]["student after"]["generation"]  # doctest: +SKIP
    """
    models = {
        "teacher": evaluations.teacher,
        "student before": evaluations.before,
        "student after": evaluations.after,
    }
    rows: dict[str, dict[str, Any]] = {}
    for name, result in models.items():
        for example in result.examples if result is not None else []:
            row = rows.setdefault(
                str(example.get("id")),
                {
                    "id": example.get("id"),
                    "prompt": example.get("prompt"),
                    "reference": example.get("reference"),
                }
                | {model: None for model in models},
            )
            row[name] = {"generation": example.get("generation"), "rouge_l": example.get("rouge_l")}
    return list(rows.values())


@dataclass
class HeldoutComparison:
    """Runs side by side on held-out data: each run's last evaluation and its step-0 one by label
    ("<method> · seed <s> · <run folder>"), the teacher's (of the first run that has one), and notes on
    what makes the runs less comparable (different teachers or held-out sizes)."""

    last: dict[str, EvalResult]
    before: dict[str, EvalResult]
    teacher: EvalResult | None
    notes: list[str]


def compare_runs(run_dirs: Sequence[str | Any]) -> HeldoutComparison:
    """The held-out evaluations of runs for one chart; runs with no student evaluation are left out
    (and named in a note).

    Example:
        >>> cmp = compare_runs(["runs/sra-1", "runs/ce-1"])  # doctest: +SKIP
        >>> {label: r.rouge_l for label, r in cmp.last.items()}  # doctest: +SKIP
    """
    from pathlib import Path

    from .distill.runs import read_config

    last: dict[str, EvalResult] = {}
    before: dict[str, EvalResult] = {}
    teacher, teachers, sizes, missing = None, set(), set(), []
    for run_dir in run_dirs:
        config, evaluations = read_config(run_dir), load_run_evaluations(run_dir)
        if not evaluations.steps:
            missing.append(Path(run_dir).name)
            continue
        label = f"{config.method} · seed {config.seed} · {Path(run_dir).name}"
        last[label] = evaluations.steps[max(evaluations.steps)]
        if evaluations.before is not None and max(evaluations.steps) > 0:
            before[label] = evaluations.before
        teachers.add(config.teacher)
        sizes.add(last[label].n)
        if teacher is None and evaluations.teacher is not None:
            teacher = evaluations.teacher
    notes = []
    if missing:
        notes.append(f"no held-out evaluation saved, left out: {', '.join(missing)}")
    if len(teachers) > 1:
        notes.append(
            f"the runs have different teachers ({', '.join(sorted(teachers))}); the bar is the first's"
        )
    if len(sizes) > 1:
        notes.append(f"the runs were evaluated on different numbers of held-out examples ({sorted(sizes)})")
    return HeldoutComparison(last, before, teacher, notes)
