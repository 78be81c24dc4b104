"""Two CPU processes under torchrun and accelerate (gloo): the run trains, rank 0 alone writes the run
directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# the distill options both launches share: two steps of one text per process, no probe until the end
SMALL_RUN = [
    "--steps", "2", "--batch-size", "1", "--max-length", "32", "--probe-size", "2", "--heldout-size", "1",
    "--log-every", "100", "--snapshot-every", "100", "--checkpoint-every", "0", "--device", "cpu", "--quiet",
]  # fmt: skip


def _launch_two_processes(launcher: list[str], distill: list[str], out) -> tuple[list[dict], str]:
    """Run ``python -m <launcher> -m sra_viz distill <SMALL_RUN> <distill> --out out``; (metrics rows,
    stderr) after checking what every two-process run must hold."""
    cmd = [
        sys.executable,
        "-m",
        *launcher,
        "-m",
        "sra_viz",
        "distill",
        *SMALL_RUN,
        *distill,
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]  # written once, by rank 0
    assert all(r["texts"] == 2 for r in rows[1:])  # one text per process per step, two processes
    assert json.loads((out / "status.json").read_text())["state"] == "finished"
    assert done.stderr.count("loading teacher") == 1  # progress messages come from rank 0 only
    return rows, done.stderr


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    launcher = ["torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    rows, _ = _launch_two_processes(launcher, ["--student-variant", "truncated", "--student-k", "2"], out)
    assert all(r["loss"] is not None and r["kd"] is not None for r in rows[1:])
    assert rows[-1]["probe_cka"] is not None
    assert (out / "checkpoint" / "student.safetensors").is_file()


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tiny_pair_dirs, tmp_path):
    """``accelerate launch --multi_gpu --num_processes 2`` with ``--device cpu`` (the tiny pair): the same
    data-parallel run on two CPU processes (gloo). ``--cpu`` would not do: with it accelerate 1.x starts
    one process unless an MPI host file is given."""
    teacher, student = (str(d) for d in tiny_pair_dirs)
    launcher = [
        "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1", "--multi_gpu",
        "--mixed_precision", "no", "--dynamo_backend", "no",
    ]  # fmt: skip
    _launch_two_processes(
        launcher, ["--teacher", teacher, "--student", student, "--eval-size", "0"], tmp_path / "acc"
    )
