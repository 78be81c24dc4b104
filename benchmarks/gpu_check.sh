#!/usr/bin/env bash
# 100 SRA steps on the default pair on a CUDA machine: wall time, median step time, peak GPU memory.
#
#   bash benchmarks/gpu_check.sh                 # full student, batch 8 x 256, bfloat16 autocast
#   STEPS=50 VARIANT=truncated BATCH=16 bash benchmarks/gpu_check.sh
#
# Then, when more than one GPU is visible, 4 data-parallel steps of `sra-viz distill` over all of them
# with docs/launch/ddp.yaml (DDP_STEPS=0 skips it); with one GPU it says so and skips.
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

# ---------------------------------------------------------------- optional: data-parallel over every GPU
DDP_STEPS="${DDP_STEPS:-4}"
NGPU="$("$PY" -c 'import torch; print(torch.cuda.device_count())')"
if [ "$DDP_STEPS" -eq 0 ]; then
  echo "gpu_check: DDP step skipped (DDP_STEPS=0)"
elif [ "$NGPU" -lt 2 ]; then
  echo "gpu_check: DDP step skipped: $NGPU GPU visible, it needs 2 or more"
else
  DDP_OUT="$(mktemp -d)"
  trap 'rm -rf "$DDP_OUT"' EXIT
  t0=$(date +%s)
  "$PY" -m accelerate.commands.launch --config_file docs/launch/ddp.yaml --num_processes "$NGPU" \
    -m sra_viz distill --steps "$DDP_STEPS" --batch-size "$BATCH" --max-length "$MAXLEN" \
    --student-variant "$VARIANT" --dtype "$DTYPE" --device cuda --log-every "$DDP_STEPS" \
    --snapshot-every "$DDP_STEPS" --checkpoint-every 0 --eval-size 0 --quiet --out "$DDP_OUT/run"
  DDP_WALL=$(( $(date +%s) - t0 )) NGPU="$NGPU" RUN="$DDP_OUT/run" "$PY" - <<'EOF'
import json, os, pathlib

run = pathlib.Path(os.environ["RUN"])
rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
steps = [r for r in rows if r.get("step_time_s") is not None]
state = json.loads((run / "status.json").read_text())["state"]
assert state == "finished" and [r["step"] for r in steps] == list(range(1, len(steps) + 1)), (state, rows)
print(f"gpu_check: DDP on {os.environ['NGPU']} GPUs: {state}, {len(steps)} steps of {steps[-1]['texts']} texts "
      f"in {os.environ['DDP_WALL']} s (launch and model loading included); last loss {steps[-1]['loss']:.4g}")
EOF
fi
