"""Acceptance of the distillation engine on the real default pair (CPU is fine).

An SRA session with a truncated student must move the probe geometry the right way (Gram distance
down, mean cosine and CKA up), and after the same steps SRA must be ahead of ULD on those metrics.
Both runs share every option but the method, so they see the same batches and the same probe.

    python benchmarks/acceptance_distill.py                   # 30 steps, SRA vs ULD (~10 min on 2 cores)
    python benchmarks/acceptance_distill.py --steps 10 --methods sra uld exact
    python benchmarks/acceptance_distill.py --variant last_k --student-k 2 --set kd_weighting=saliency

Prints one table (metrics at step 0 and at the last step, per method) and exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import add_session_options, overrides, session_config

CHECKS = (("probe_gram_distance", "down"), ("probe_cos", "up"), ("probe_cka", "up"))


def run_method(method: str, pair, args, out_root: Path) -> dict[str, dict[str, float]]:
    from sra_viz.distill import DistillSession, load_run

    cfg = session_config(
        method, args, str(out_root / method), steps=args.steps, log_every=args.log_every,
        snapshot_every=args.log_every, checkpoint_every=0, probe_size=args.probe_size,
        heldout_size=args.heldout_size,
    )  # fmt: skip
    t0 = time.perf_counter()
    status = DistillSession(cfg, pair=pair).run()
    seconds = time.perf_counter() - t0
    _, metrics, _ = load_run(cfg.out)
    probe = metrics.dropna(subset=["probe_cos"])
    first, last = probe.iloc[0].to_dict(), probe.iloc[-1].to_dict()
    train = metrics.dropna(subset=["loss"])
    print(
        f"[{method}] {status} in {seconds:.0f} s, median step {train['step_time_s'].median():.2f} s",
        flush=True,
    )
    return {"first": first, "last": last}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--methods", nargs="+", default=["sra", "uld"])
    add_session_options(parser)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--probe-size", type=int, default=8)
    parser.add_argument("--heldout-size", type=int, default=8)
    parser.add_argument("--out", default=None, help="keep the run directories here (default: a temp folder)")
    args = parser.parse_args(argv)

    import torch

    from sra_viz.models import load_pair

    torch.manual_seed(0)
    pair = load_pair(device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        out_root = Path(args.out) if args.out else Path(tmp)
        results = {m: run_method(m, pair, args, out_root) for m in args.methods}

    names = ["probe_cos", "probe_cka", "probe_gram_distance", "probe_gram_distance_weighted",
             "probe_retrieval", "heldout_loss", "probe_cos_projector"]  # fmt: skip
    print(f"\nsettings: variant={args.variant} k={args.student_k} batch={args.batch_size}x{args.max_length} "
          f"steps={args.steps} overrides={overrides(args.set) or 'none (defaults)'}")  # fmt: skip
    print(f"\n{'method':8s} {'metric':28s} {'step 0':>10s} {'step ' + str(args.steps):>10s}")
    for method, res in results.items():
        for name in names:
            if name in res["first"] and res["first"][name] == res["first"][name]:
                print(f"{method:8s} {name:28s} {res['first'][name]:10.4f} {res['last'][name]:10.4f}")
    failures = []
    if "sra" in results:
        sra = results["sra"]
        for name, direction in CHECKS:
            moved = sra["last"][name] - sra["first"][name]
            if (moved >= 0) if direction == "down" else (moved <= 0):
                failures.append(
                    f"SRA did not move {name} {direction}: {sra['first'][name]:.4f} -> {sra['last'][name]:.4f}"
                )
        for other in (m for m in results if m != "sra"):
            for name, direction in CHECKS:
                a, b = sra["last"][name], results[other]["last"][name]
                if (a >= b) if direction == "down" else (a <= b):
                    failures.append(f"SRA not ahead of {other} on {name}: {a:.4f} vs {b:.4f}")
    print(
        "\n" + ("\n".join("FAIL " + f for f in failures) if failures else "PASS: all acceptance checks hold")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
