"""An honest method comparison: SRA, ULD, exact-token KD and CE-only, same steps, same data, several seeds.

Every method runs with the same options (only ``method`` differs), so for one seed they see the same
batches, the same probe and the same held-out examples (the fixed split of :mod:`sra_viz.evaluation`).
Two students, because a short CPU run cannot make one student serve every measure:

* the **truncated** student (first k blocks, fast) for the measures that need no generation: held-out
  CE, teacher agreement and V∩ KL on the held-out spans, and the probe measures no method trains on
  (linear CKA, retrieval through the cross-fitted ridge map);
* the **last-k** student (the whole base model, only its last blocks train) for ROUGE-L of greedy
  generations: a truncated student generates nothing meaningful.

    python benchmarks/compare_methods.py                      # every method x 3 seeds (~30 min, 2 cores)
    python benchmarks/compare_methods.py --seeds 0 1 --steps 10 --no-rouge
    python benchmarks/compare_methods.py --set lambda_geo=3 --set kd_weighting=sum   # the published scales
    # seeds in parallel processes (one thread each), then one table from their results:
    for s in 0 1 2; do
      python benchmarks/compare_methods.py --seeds $s --threads 1 --results r$s.json &
    done; wait
    python benchmarks/compare_methods.py --combine r0.json r1.json r2.json

Prints one table, mean ± sd over seeds per method, with the student before training and the teacher as
references (the teacher's CE is on its own tokens: compare it within a row only loosely).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import add_session_options, overrides, session_config

from sra_viz.distill.config import field_choices

METHODS = field_choices(
    "method"
)  # every method the engine has (the README table: --methods sra uld exact ce)
COLUMNS = (  # (key, header, better)
    ("heldout_loss", "held-out CE", "lower"),
    ("teacher_agreement", "agreement", "higher"),
    ("vcap_kl", "V∩ KL", "lower"),
    ("probe_cka", "probe CKA", "higher"),
    ("probe_retrieval", "retrieval", "higher"),
    ("rouge_l", "ROUGE-L", "higher"),
)


def _session(method: str, seed: int, args, variant: str, k: int, out: Path, pair):
    from sra_viz.distill import DistillSession

    a = argparse.Namespace(**{**vars(args), "variant": variant, "student_k": k, "seed": seed})
    cfg = session_config(
        method,
        a,
        str(out / f"{variant}-{method}-{seed}"),
        steps=args.steps,
        log_every=args.steps,
        snapshot_every=args.steps,
        checkpoint_every=0,
        eval_size=0,
        probe_size=args.probe_size,
    )
    t0 = time.perf_counter()
    session = DistillSession(cfg, pair=pair)
    status = session.run()
    return session, status, time.perf_counter() - t0


def _fmt(values: list[float]) -> str:
    values = [v for v in values if v is not None and v == v]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    add_session_options(parser, variant="truncated", k=6)
    parser.add_argument("--rouge-variant", default="last_k", choices=["full", "last_k", "truncated"])
    parser.add_argument("--rouge-k", type=int, default=2, help="k of the ROUGE-L student")
    parser.add_argument("--no-rouge", action="store_true", help="skip the generation runs (ROUGE-L)")
    parser.add_argument("--eval-size", type=int, default=16, help="held-out examples (fixed split)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="longest greedy generation")
    parser.add_argument("--probe-size", type=int, default=8)
    parser.add_argument("--out", default=None, help="keep the run directories here (default: a temp folder)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--results", default=None, help="also write the raw figures to this JSON file")
    parser.add_argument(
        "--combine",
        nargs="+",
        default=None,
        metavar="JSON",
        help="run nothing: print one table from the --results files of earlier runs",
    )
    args = parser.parse_args(argv)
    if args.combine:
        return _print_combined(args.combine)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from sra_viz.evaluation import Evaluator, eval_examples
    from sra_viz.models import load_pair

    torch.manual_seed(0)
    pair = load_pair(device="cpu")
    held = eval_examples(session_config("sra", args, "x").data, args.eval_size)
    eval_cfg = session_config("sra", args, "x", eval_max_new_tokens=args.max_new_tokens)
    evaluator = Evaluator(pair.teacher, pair.student.tokenizer, held, eval_cfg, progress=False)
    rows: dict[str, dict[str, list[float]]] = {m: {c[0]: [] for c in COLUMNS} for m in args.methods}
    refs: dict[str, dict[str, float | None]] = {}
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        for seed in args.seeds:
            for method in args.methods:
                session, status, seconds = _session(
                    method, seed, args, args.variant, args.student_k, out, pair
                )
                first, last = session.history[0], session.history[-1]
                if "before" not in refs:
                    before = evaluator.evaluate(
                        _before_view(pair, args.variant, args.student_k), "before", False
                    )
                    refs["before"] = {
                        **before.to_dict(),
                        "probe_cka": first["probe_cka"],
                        "probe_retrieval": first["probe_retrieval"],
                    }
                result = evaluator.evaluate(session.student_view, method, generate_text=False)
                for key in ("heldout_loss", "teacher_agreement", "vcap_kl"):
                    rows[method][key].append(getattr(result, key))
                for key in ("probe_cka", "probe_retrieval"):
                    rows[method][key].append(last[key])
                print(
                    f"[{args.variant} {method} seed {seed}] {status} in {seconds:.0f} s: "
                    f"CE {result.heldout_loss:.4f}, agreement {result.teacher_agreement:.4f}, "
                    f"KL {result.vcap_kl:.4f}, CKA {last['probe_cka']:.4f}, "
                    f"retrieval {last['probe_retrieval']:.4f}",
                    flush=True,
                )
                del session
        if not args.no_rouge:
            teacher = evaluator.evaluate_teacher()
            refs["teacher"] = teacher.to_dict()
            before_k = evaluator.evaluate(_before_view(pair, args.rouge_variant, args.rouge_k), "before")
            refs["before"]["rouge_l"] = before_k.rouge_l
            print(
                f"[references] teacher ROUGE-L {teacher.rouge_l:.4f}, {args.rouge_variant} student before "
                f"{before_k.rouge_l:.4f} ({before_k.rouge_on_words} on words, {before_k.rouge_on_chars} on "
                "characters)",
                flush=True,
            )
            for seed in args.seeds:
                for method in args.methods:
                    session, status, seconds = _session(
                        method, seed, args, args.rouge_variant, args.rouge_k, out, pair
                    )
                    result = evaluator.evaluate(session.student_view, method)
                    rows[method]["rouge_l"].append(result.rouge_l)
                    print(
                        f"[{args.rouge_variant} {method} seed {seed}] {status} in {seconds:.0f} s: "
                        f"ROUGE-L {result.rouge_l:.4f}",
                        flush=True,
                    )
                    del session

    rouge_setting = (
        "skipped"
        if args.no_rouge
        else f"{args.rouge_variant} k={args.rouge_k}, {args.max_new_tokens} new tokens"
    )
    settings = (
        f"steps={args.steps} batch={args.batch_size}x{args.max_length} held-out={len(held)} (fixed split) "
        f"probe={args.probe_size}; CE/agreement/KL/CKA/retrieval: {args.variant} k={args.student_k}; "
        f"ROUGE-L: {rouge_setting}; "
        f"overrides={overrides(args.set) or 'none (defaults)'}"
    )
    doc = {
        "settings": settings,
        "seeds": args.seeds,
        "rows": rows,
        "refs": refs,
        "seconds": time.perf_counter() - t_start,
    }
    if args.results:
        Path(args.results).write_text(json.dumps(doc, indent=1))
    _print_table([doc])
    return 0


def _print_combined(paths: list[str]) -> int:
    docs = [json.loads(Path(p).read_text()) for p in paths]
    if len({d["settings"] for d in docs}) != 1:
        print(
            "the results files were run with different settings:\n" + "\n".join(d["settings"] for d in docs)
        )
        return 2
    _print_table(docs)
    return 0


def _print_table(docs: list[dict]) -> None:
    """One markdown table, mean ± sd over every seed of every results document."""
    methods = list(docs[0]["rows"])
    rows = {m: {key: [v for d in docs for v in d["rows"][m][key]] for key, _, _ in COLUMNS} for m in methods}
    refs = docs[0]["refs"]
    seeds = [s for d in docs for s in d["seeds"]]
    print(
        f"\nsettings: {docs[0]['settings']}; seeds={seeds}; "
        f"{max(d['seconds'] for d in docs):.0f} s (longest process)"
    )
    header = ["method"] + [f"{name} ({'↓' if better == 'lower' else '↑'})" for _, name, better in COLUMNS]
    table = [[m] + [_fmt(rows[m][key]) for key, _, _ in COLUMNS] for m in methods]
    for name in ("before", "teacher"):
        if name in refs:
            label = "student before" if name == "before" else "teacher"
            table.append([label] + [_fmt([refs[name].get(key)]) for key, _, _ in COLUMNS])
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in table:
        print(line(row))


def _before_view(pair, variant: str, k: int):
    """The student as a session starts it (the variant applied, no training), as forward_features wants it."""
    from sra_viz.distill.side_pass import SideView
    from sra_viz.distill.student import make_student

    student = make_student(pair.student.model, variant, k)
    student.model.eval()
    return SideView(student.model, pair.student.tokenizer, f"{pair.student.name} ({variant} k={k}, before)")


if __name__ == "__main__":
    sys.exit(main())
