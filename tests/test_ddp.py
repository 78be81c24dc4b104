"""Two CPU processes under torchrun and accelerate (gloo): the run trains, rank 0 alone writes the run
directory. The launch configs of docs/launch are ones accelerate reads, and a sharded launch is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sra_viz.distill import DistillConfig, DistillSession
from sra_viz.errors import SraVizError

LAUNCH_CONFIGS = Path(__file__).resolve().parents[1] / "docs" / "launch"

# the distill options both launches share: two steps of one text per process, no probe until the end, a
# held-out evaluation (rank 0 alone) of one example and four generated tokens
SMALL_RUN = [
    "--steps", "2", "--batch-size", "1", "--max-length", "32", "--probe-size", "2", "--heldout-size", "1",
    "--log-every", "100", "--snapshot-every", "100", "--checkpoint-every", "0", "--eval-size", "1",
    "--eval-max-new-tokens", "4", "--device", "cpu", "--quiet",
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
    assert rows[0]["eval_heldout_loss"] is not None and rows[-1]["eval_heldout_loss"] is not None
    assert (out / "checkpoint" / "student.safetensors").is_file()


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tiny_pair_dirs, tmp_path):
    """``accelerate launch --config_file docs/launch/ddp.yaml --num_processes 2`` (multi-GPU, the shipped
    config) with ``--device cpu`` (the tiny pair): the same data-parallel run on two CPU processes
    (gloo). ``--cpu`` would not do: with it accelerate 1.x starts one process unless an MPI host file is
    given."""
    teacher, student = (str(d) for d in tiny_pair_dirs)
    launcher = [
        "accelerate.commands.launch", "--config_file", str(LAUNCH_CONFIGS / "ddp.yaml"),
        "--num_processes", "2",
    ]  # fmt: skip
    _launch_two_processes(
        launcher, ["--teacher", teacher, "--student", student, "--eval-size", "0"], tmp_path / "acc"
    )


def _resolved_launch(*flags: str):
    """accelerate's own reading of ``accelerate launch FLAGS -m sra_viz distill --steps 4``: (its launch
    arguments after the config file filled them, the environment its multi-process launch gives)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    parsed = launch_command_parser().parse_args([*flags, "-m", "sra_viz", "distill", "--steps", "4"])
    args = _validate_launch_command(parsed)[0]
    return args, prepare_multi_gpu_env(args)


def test_every_launch_config_is_one_accelerate_reads_with_only_keys_it_knows():
    from dataclasses import fields

    import yaml
    from accelerate.commands.config.config_args import ClusterConfig

    files = sorted(LAUNCH_CONFIGS.glob("*.yaml"))
    assert [f.name for f in files] == ["ddp.yaml"]
    known = {f.name for f in fields(ClusterConfig)}
    for path in files:
        keys = set(yaml.safe_load(path.read_text()))
        assert keys <= known, sorted(keys - known)
        ClusterConfig.from_yaml_file(str(path))  # accelerate's loader: unknown keys would raise
    args, env = _resolved_launch("--config_file", str(LAUNCH_CONFIGS / "ddp.yaml"), "--num_processes", "4")
    assert (args.multi_gpu, args.use_fsdp, args.num_processes, args.num_machines) == (True, False, 4, 1)
    assert (args.module, args.training_script, args.training_script_args) == (
        True,
        "sra_viz",
        ["distill", "--steps", "4"],
    )
    assert args.mixed_precision == "no"  # the engine's --dtype decides precision
    assert not any(env.get(flag) == "true" for flag in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"))


def test_a_sharded_launch_is_refused_before_anything_is_made(tmp_path, monkeypatch):
    """What ``accelerate launch --use_fsdp`` puts in the environment makes ``sra-viz distill`` stop with
    one line: the engine would run every process unsharded."""
    _, env = _resolved_launch("--use_fsdp", "--num_processes", "2", "--num_machines", "1")
    assert env["ACCELERATE_USE_FSDP"] == "true"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", env["ACCELERATE_USE_FSDP"])
    with pytest.raises(SraVizError) as err:
        DistillSession(DistillConfig(steps=2, out=str(tmp_path / "run")))
    assert str(err.value).startswith("this launch asks for FSDP (ACCELERATE_USE_FSDP=true)")
    assert "docs/launch/ddp.yaml" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")  # what accelerate's plain launches may leave set
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(SraVizError, match=r"^this launch asks for DeepSpeed"):
        DistillSession(DistillConfig(steps=2, out=str(tmp_path / "run")))
