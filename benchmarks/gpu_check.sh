#!/usr/bin/env bash
# 100 SRA steps on the default pair on a CUDA machine: wall time, median step time, peak GPU memory.
#
#   bash benchmarks/gpu_check.sh                 # full student, batch 8 x 256, bfloat16 autocast
#   STEPS=50 VARIANT=truncated BATCH=16 bash benchmarks/gpu_check.sh
#
# Needs the project installed (pip install -e .) and the default models fetched (sra-viz models fetch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"

STEPS="${STEPS:-100}" VARIANT="${VARIANT:-full}" BATCH="${BATCH:-8}" MAXLEN="${MAXLEN:-256}" \
DTYPE="${DTYPE:-bfloat16}" "$PY" - <<'EOF'
import os, statistics, tempfile, time

import torch

from sra_viz.distill import DistillConfig, DistillSession

if not torch.cuda.is_available():
    raise SystemExit("gpu_check: no CUDA device visible to torch")
steps = int(os.environ["STEPS"])
with tempfile.TemporaryDirectory() as tmp:
    cfg = DistillConfig(method="sra", steps=steps, batch_size=int(os.environ["BATCH"]),
                        max_length=int(os.environ["MAXLEN"]), student_variant=os.environ["VARIANT"],
                        dtype=os.environ["DTYPE"], device="cuda", log_every=max(1, steps // 2),
                        snapshot_every=max(1, steps // 2), checkpoint_every=0, out=f"{tmp}/run")
    t_load = time.perf_counter()
    session = DistillSession(cfg)
    print(f"gpu_check: {torch.cuda.get_device_name()}; models loaded in {time.perf_counter() - t_load:.1f} s; "
          f"student {cfg.student_variant} ({session.student.trainable_params / 1e6:.1f} M trainable), "
          f"batch {cfg.batch_size} x {cfg.max_length}, {cfg.dtype}", flush=True)
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    status = session.run()
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    rows = [r for r in session.history if r.get("step_time_s") is not None]
    med = statistics.median(r["step_time_s"] for r in rows)
    last = session.history[-1]
    print(f"gpu_check: {status}: {len(rows)} steps in {wall:.1f} s (probe evaluations included); "
          f"median step {med * 1000:.1f} ms; peak GPU memory "
          f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB allocated, "
          f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB reserved")
    print("gpu_check: last row: " + ", ".join(
        f"{k}={last[k]:.4g}" for k in ("loss", "span", "geo", "kd", "ce", "probe_cos", "probe_cka") if k in last))
EOF
