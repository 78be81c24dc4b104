"""``sra-viz eval TARGET``: the held-out evaluation of a model, with the teacher (and, for a run, the
student before training) as references.

    sra-viz eval runs/sra --size 8                 # a run: its trained student, before, and its teacher
    sra-viz eval exported/sra-student --format json
    sra-viz eval smollm2-135m --teacher gemma3-270m --format table
    sra-viz eval some/model.gguf --data my.jsonl

TARGET is a run directory, an exported model folder, a default model name, a ``.gguf`` file or a
Hugging Face id. The held-out examples are the fixed split of the corpus (sra_viz.evaluation): the
bundled corpus, the run's own data file, or ``--data``. JSON output: the target's figures at the top
level (``n``, ``rouge_l``, ``teacher_agreement``, ``vcap_kl``, ``heldout_loss``, ``heldout_ppl``, ...)
and ``references`` (``teacher``, and ``student_before`` for a run). Exit status 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import SraVizError

COLUMNS = (
    "n",
    "rouge_l",
    "rouge_on_words",
    "rouge_on_chars",
    "teacher_agreement",
    "vcap_kl",
    "heldout_loss",
    "heldout_ppl",
)


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval`` on ``subparsers``.

    Example:
        >>> parser = argparse.ArgumentParser(); sub = parser.add_subparsers(dest="command")
        >>> add_eval_parser(sub).parse_args(["runs/sra", "--size", "4"]).size
        4
    """
    p = subparsers.add_parser(
        "eval",
        help="held-out evaluation of a run's student or any model (ROUGE-L, teacher agreement, CE)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "target", help="run directory, exported model folder, default model name, .gguf file or HF id"
    )
    p.add_argument("--size", type=int, default=8, help="held-out examples to evaluate on (default: 8)")
    p.add_argument(
        "--teacher", default=None, help="teacher model (default: the run's teacher, else the default)"
    )
    p.add_argument(
        "--data", default=None, help="corpus file whose held-out split is used (default: the run's)"
    )
    p.add_argument("--max-new-tokens", type=int, default=None, help="longest generation (default: 48)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def is_run_dir(path: str) -> bool:
    """A distillation run directory (its config.json is a DistillConfig, beside status/metrics files)."""
    folder = Path(path).expanduser()
    return (folder / "config.json").is_file() and (
        (folder / "status.json").is_file() or (folder / "metrics.jsonl").is_file()
    )


def evaluate_target(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation ``args`` asks for; returns the JSON document (see the module docstring)."""
    from .distill.config import DistillConfig
    from .distill.teacher_cache import open_teacher_cache
    from .evaluation import Evaluator, eval_examples
    from .models import load_model, pick_device

    if args.size < 1:
        raise SraVizError(f"--size {args.size} must be at least 1")
    device = pick_device(args.device)
    run = is_run_dir(args.target)
    if run:
        from .distill.runs import checkpoint_dir, read_config

        config = read_config(args.target)
        if checkpoint_dir(args.target) is None:  # before loading any model
            raise SraVizError(
                f"run {args.target!r} has no checkpoint yet, so it holds no trained student to evaluate"
            )
    else:
        config = DistillConfig()
    updates: dict[str, Any] = {"eval_size": args.size}
    if args.max_new_tokens is not None:
        updates["eval_max_new_tokens"] = args.max_new_tokens
    if args.data is not None:
        updates["data"] = args.data
    config = DistillConfig.from_dict({**config.to_dict(), **updates}).validate()
    # a bad or too small corpus fails before any loading
    examples = eval_examples(config.data, args.size, config.prompt_field, config.response_field)
    before_view = None
    if run:
        from .distill.export import load_run_student
        from .distill.side_pass import SideView
        from .distill.student import make_student

        target: Any = load_run_student(args.target, device=device)
        base = load_model(config.student, device=device)
        made = make_student(base.model, config.student_variant, config.student_k, config.freeze_embeddings)
        made.model.eval()
        before_view = SideView(made.model, base.tokenizer, f"{config.student} before training")
    else:
        target = load_model(args.target, device=device)
    teacher = load_model(args.teacher or config.teacher, device=device)
    evaluator = Evaluator(
        teacher,
        target.tokenizer,
        examples,
        config,
        progress=not args.quiet,
        teacher_cache=open_teacher_cache(config),  # the run's teacher_cache setting (default on)
    )
    result = evaluator.evaluate(target, args.target)
    references = {"teacher": evaluator.evaluate_teacher().to_dict()}
    if before_view is not None:
        references["student_before"] = evaluator.evaluate(before_view, "student before").to_dict()
    return {
        "target": args.target,
        "kind": "run" if run else "model",
        **result.to_dict(),
        "references": references,
    }


def _table(doc: dict[str, Any]) -> str:
    rows = [("teacher", doc["references"]["teacher"])]
    if "student_before" in doc["references"]:
        rows.append(("student before", doc["references"]["student_before"]))
    rows.append((doc["target"], doc))
    header = ["model", *COLUMNS]
    cells = [[name] + [_cell(r.get(c)) for c in COLUMNS] for name, r in rows]
    widths = [max(len(x[i]) for x in [header, *cells]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in [header, *cells]
    )


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def run_eval(args: argparse.Namespace) -> int:
    """The ``eval`` subcommand; returns the exit status."""
    try:
        doc = evaluate_target(args)
    except SraVizError as exc:
        print(f"sra-viz eval: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(doc, indent=2, allow_nan=False) if args.format == "json" else _table(doc))
    return 0
