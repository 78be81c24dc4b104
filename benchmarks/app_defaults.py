"""Which app-session defaults make the probe measures move within a time budget on this machine.

Runs candidate configurations (one after the other, the default pair loaded once) and prints, per
candidate: steps, wall time (session set-up + steps + probes), s/step, and the probe measures at step 0
and at the end. The app's defaults (``sra_viz/ui/pages/distill.py: APP_DEFAULTS``) come from this table.

    python benchmarks/app_defaults.py                                   # the built-in candidates
    python benchmarks/app_defaults.py --candidate "lr=1e-3,steps=80" --candidate "lr=3e-4,steps=80"
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _common import overrides

MEASURES = ("probe_cos", "probe_cka", "probe_gram_distance", "probe_retrieval", "heldout_ppl")
BASE = dict(student_variant="truncated", student_k=6, batch_size=4, max_length=64, probe_size=8)
CANDIDATES = [
    "lr=1e-4,steps=20,log_every=5",  # the app's defaults before they were measured
    "lr=1e-4,steps=80,log_every=10",
    "lr=3e-4,steps=80,log_every=10",
    "lr=1e-3,steps=80,log_every=10",
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--candidate", action="append", default=None, metavar="FIELD=VALUE,...")
    args = parser.parse_args(argv)

    import torch

    from sra_viz.distill import DistillConfig, DistillSession
    from sra_viz.models import load_pair

    torch.manual_seed(0)
    pair = load_pair(device="cpu")
    print(f"threads {torch.get_num_threads()}; base {BASE}")
    for spec in args.candidate or CANDIDATES:
        fields = {**BASE, **overrides(spec.split(","))}
        fields["snapshot_every"] = fields.get("log_every", 10)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            session = DistillSession(DistillConfig(**fields, out=f"{tmp}/run"), pair=pair)
            status = session.run()
            wall = time.perf_counter() - t0
        rows = [r for r in session.history if "probe_cos" in r]
        first, last = rows[0], rows[-1]
        steps = [r["step_time_s"] for r in session.history if "step_time_s" in r]
        moved = "  ".join(f"{m} {first[m]:.4f}->{last[m]:.4f} ({last[m] - first[m]:+.4f})" for m in MEASURES)
        print(
            f"[{spec}] {status} {session.step_count} steps in {wall:.0f} s "
            f"(median {sorted(steps)[len(steps) // 2]:.2f} s/step)\n    {moved}",
            flush=True,
        )
        del session
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
