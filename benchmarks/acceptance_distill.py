"""Acceptance of the distillation engine on the real default pair (CPU is fine), on measures no method
trains on directly.

The probe's Gram distance is what L_geo itself minimizes, so SRA "winning" on it proves nothing; the
checks here use measures none of the methods optimizes: the held-out CE and the V∩ teacher agreement
on the fixed held-out split (:mod:`sra_viz.evaluation`, texts no session trains or probes on), and the
probe's linear CKA (no method trains a CKA; ULD and CE-only train no projector at all). Every run
shares every option but the method, so they see the same batches, probe and held-out texts.

    python benchmarks/acceptance_distill.py                   # 20 steps, SRA vs ULD and CE-only
    python benchmarks/acceptance_distill.py --steps 10 --methods sra uld exact ce
    python benchmarks/acceptance_distill.py --variant last_k --student-k 2 --set kd_weighting=sum

Prints one table (each measure before training and after, per method) and exits 1 if a check fails.
Which checks hold was measured over 3 seeds by ``benchmarks/compare_methods.py`` (README).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import add_session_options, overrides, session_config

# What held on every seed of benchmarks/compare_methods.py (20 steps, truncated student, seeds 0-2):
# (measure, better): SRA's student must be better than before training on each
MOVES = (("heldout_loss", "lower"), ("vcap_kl", "lower"))
# (measure, better, baseline): SRA's student must be ahead of that baseline's after the same steps.
# SRA was NOT ahead of CE-only or ULD on held-out CE or teacher agreement, so neither is checked.
AHEAD = (("probe_cka", "higher", "ce"), ("probe_cka", "higher", "uld"))
MEASURES = ("heldout_loss", "teacher_agreement", "vcap_kl", "probe_cka", "probe_retrieval")


def run_method(method: str, pair, evaluator, args, out_root: Path) -> dict[str, dict[str, float]]:
    """Figures of one session's student before (step 0) and after, on the held-out split and the probe."""
    from sra_viz.distill import DistillSession

    cfg = session_config(
        method,
        args,
        str(out_root / method),
        steps=args.steps,
        log_every=args.steps,
        snapshot_every=args.steps,
        checkpoint_every=0,
        probe_size=args.probe_size,
        eval_size=0,
    )
    t0 = time.perf_counter()
    session = DistillSession(cfg, pair=pair)
    before = evaluator.evaluate(session.student_view, "before", generate_text=False).to_dict()
    status = session.run()
    after = evaluator.evaluate(session.student_view, method, generate_text=False).to_dict()
    first, last = session.history[0], session.history[-1]
    print(f"[{method}] {status} in {time.perf_counter() - t0:.0f} s", flush=True)
    return {
        "first": {**before, **{k: first[k] for k in ("probe_cka", "probe_retrieval")}},
        "last": {**after, **{k: last[k] for k in ("probe_cka", "probe_retrieval")}},
    }


def failures_of(results: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """The checks (MOVES, AHEAD) that do not hold, one line each."""
    failures: list[str] = []
    if "sra" not in results:
        return failures
    sra = results["sra"]
    better = lambda a, b, way: a < b if way == "lower" else a > b  # noqa: E731
    for name, way in MOVES:
        if not better(sra["last"][name], sra["first"][name], way):
            failures.append(
                f"SRA did not improve {name}: {sra['first'][name]:.4f} -> {sra['last'][name]:.4f}"
            )
    for name, way, other in AHEAD:
        if other in results and not better(sra["last"][name], results[other]["last"][name], way):
            failures.append(
                f"SRA not ahead of {other} on {name}: {sra['last'][name]:.4f} vs "
                f"{results[other]['last'][name]:.4f}"
            )
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--methods", nargs="+", default=["sra", "uld", "ce"])
    add_session_options(parser)
    parser.add_argument("--probe-size", type=int, default=8)
    parser.add_argument("--eval-size", type=int, default=8, help="held-out examples (fixed split)")
    parser.add_argument("--out", default=None, help="keep the run directories here (default: a temp folder)")
    args = parser.parse_args(argv)

    import torch

    from sra_viz.evaluation import Evaluator, eval_examples
    from sra_viz.models import load_pair

    torch.manual_seed(0)
    pair = load_pair(device="cpu")
    cfg = session_config("sra", args, "unused")
    evaluator = Evaluator(
        pair.teacher, pair.student.tokenizer, eval_examples(cfg.data, args.eval_size), cfg, progress=False
    )
    with tempfile.TemporaryDirectory() as tmp:
        out_root = Path(args.out) if args.out else Path(tmp)
        results = {m: run_method(m, pair, evaluator, args, out_root) for m in args.methods}

    print(
        f"\nsettings: variant={args.variant} k={args.student_k} batch={args.batch_size}x{args.max_length} "
        f"steps={args.steps} held-out={args.eval_size} overrides={overrides(args.set) or 'none (defaults)'}"
    )
    print(f"\n{'method':8s} {'measure':20s} {'before':>10s} {'step ' + str(args.steps):>10s}")
    for method, res in results.items():
        for name in MEASURES:
            print(f"{method:8s} {name:20s} {res['first'][name]:10.4f} {res['last'][name]:10.4f}")
    failures = failures_of(results)
    print(
        "\n" + ("\n".join("FAIL " + f for f in failures) if failures else "PASS: all acceptance checks hold")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
