"""Faults a run folder, the CLI and the library must survive: bad input is one line, a run folder has one
writer, a checkpoint carries no code, a failing run ends as "failed" with its reason and its last good
checkpoint, kill and resume lose and duplicate no metrics.

Engine tests use the tiny seeded pair (tests/_tiny.py); CLI tests pass its folders as --teacher/--student.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

from sra_viz.alignment import align_spans
from sra_viz.cli import build_parser, main
from sra_viz.distill import DistillConfig, DistillSession, list_runs
from sra_viz.distill.config import field_choices
from sra_viz.distill.runs import RunDir, last_metrics, load_checkpoint, read_metrics_rows, read_status
from sra_viz.errors import SraVizError
from tests._configs import small_config


def _tiny_flags(tiny_pair_dirs) -> list[str]:
    teacher, student = tiny_pair_dirs
    return [
        "--teacher",
        str(teacher),
        "--student",
        str(student),
        "--device",
        "cpu",
        "--student-variant",
        "truncated",
        "--student-k",
        "2",
        "--batch-size",
        "2",
        "--max-length",
        "32",
        "--probe-size",
        "3",
        "--heldout-size",
        "2",
        "--warmup-steps",
        "0",
        "--quiet",
    ]


def _steps(run: Path) -> list[int]:
    return [
        json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()
    ]


def _one_line_error(err: str, needle: str) -> None:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err[-2000:]


@pytest.fixture(scope="module")
def two_step_run(tiny_pair, tiny_pair_dirs, tmp_path_factory) -> Path:
    """A finished 2-step run of the tiny pair with its checkpoint (copied by the tests that damage it)."""
    out = tmp_path_factory.mktemp("runs") / "done"
    session = DistillSession(small_config(out, pair_dirs=tiny_pair_dirs, checkpoint_every=1), pair=tiny_pair)
    assert session.run() == "finished"
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("run.lock"))
    return copy


# ------------------------------------------------------------------ config: checked at construction


@pytest.mark.parametrize(
    "over, needle",
    [
        (dict(method="bogus"), "method='bogus' is unknown"),
        (dict(lr=float("nan")), "lr=nan must be a finite number"),
        (dict(lr=float("inf")), "lr=inf must be a finite number"),
        (dict(lr=0.0), "lr=0.0 must be greater than 0"),
        (dict(lr=-1e-4), "lr=-0.0001"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(max_grad_norm=-1.0), "max_grad_norm"),
        (dict(lambda_geo=-3.0), "lambda_geo"),
        (dict(lambda_geo=float("inf")), "lambda_geo=inf"),
        (dict(probe_ridge=-0.1), "probe_ridge"),
        (dict(tau=1e-45), "tau=1e-45 must be at least"),
        (dict(uld_tau=0.0), "uld_tau"),
        (dict(saliency_power=-2.0), "saliency_power"),
        (dict(steps="ten"), "steps='ten' (str) has the wrong type; expected int"),
        (dict(steps=2.5), "steps=2.5 (float) has the wrong type"),
        (dict(use_geo="yes"), "use_geo='yes' (str)"),
        (dict(device="tpu"), "device='tpu' is not understood"),
        (dict(layer_pairs=[[-1, "x"]]), "layer_pairs"),
        (dict(layer_pairs="-1:-1"), "layer_pairs"),
    ],
)
def test_a_bad_config_is_refused_at_construction(over, needle):
    with pytest.raises(SraVizError) as info:
        DistillConfig(**over)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_config_values_are_normalised_and_validate_is_kept():
    cfg = DistillConfig(lr=1, layer_pairs=[(-1, -1)])  # an int is a valid float; a tuple a valid pair
    assert isinstance(cfg.lr, float) and cfg.layer_pairs == [[-1, -1]]
    assert cfg.validate() is cfg
    with pytest.raises(SraVizError, match="method"):
        DistillConfig.from_json(json.dumps({"method": 3}))


def test_every_command_line_reads_choices_from_the_config_fields():
    parser = build_parser()
    distill = parser._subparsers._group_actions[0].choices["distill"]  # type: ignore[union-attr]
    by_dest = {a.dest: a for a in distill._actions}
    for name in ("method", "student_variant", "mass_mode", "kd_weighting", "dtype", "projector_init"):
        assert tuple(by_dest[name].choices) == field_choices(name), name
    features = parser._subparsers._group_actions[0].choices["features"]  # type: ignore[union-attr]
    mass = next(a for a in features._actions if a.dest == "mass_mode")
    assert tuple(mass.choices) == field_choices("mass_mode")


# ------------------------------------------------------------------ CLI: one line, nothing created


def test_bad_options_are_one_line_before_any_folder_exists(tiny_pair_dirs, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    wrong_types = tmp_path / "wrong_types.json"
    wrong_types.write_text(json.dumps({"steps": "ten"}))
    not_json = tmp_path / "not_json.json"
    not_json.write_text("{steps: 3")
    out = tmp_path / "never"
    cases = [
        (["--lr", "nan"], "lr=nan"),
        (["--lr", "inf"], "lr=inf"),
        (["--lr", "0"], "lr=0.0"),
        (["--tau", "1e-45"], "tau=1e-45"),
        (["--device", "tpu"], "device='tpu'"),
        (["--saliency-power", "-2"], "saliency_power"),
        (["--weight-decay", "-1"], "weight_decay"),
        (["--config", str(wrong_types)], "steps='ten'"),
        (["--config", str(not_json)], "not a JSON file"),
        (["--layer-pairs=40:-1"], "teacher layer 40 is out of range"),
        (["--layer-pairs=-1:5"], "student layer 5 is out of range"),
        (["--student-k", "9"], "student_k=9 is out of range"),
        (["--max-length", "5000"], "max_length=5000 is longer than"),
    ]
    for args, needle in cases:
        assert main(["distill", *_tiny_flags(tiny_pair_dirs), "--out", str(out), *args]) == 2, args
        _one_line_error(capsys.readouterr().err, needle)
        assert not out.exists(), args
    assert main(["distill", *_tiny_flags(tiny_pair_dirs), "--out", str(a_file)]) == 2
    _one_line_error(capsys.readouterr().err, "is a file, not a folder")


def test_features_command_refuses_a_bad_top(capsys):
    for top in ("0", "-3"):
        assert main(["features", "some text", "--top", top]) == 2
        _one_line_error(capsys.readouterr().err, f"--top {top} must be at least 1")


def test_features_command_prints_the_truncation_note_once(tiny_pair_dirs):
    teacher, student = tiny_pair_dirs
    text = "A long sentence that cannot fit in eight tokens on either side of the pair, surely not."
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sra_viz",
            "features",
            text,
            "--teacher",
            str(teacher),
            "--student",
            str(student),
            "--device",
            "cpu",
            "--max-tokens",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("truncated") == 1, done.stderr


# ------------------------------------------------------------------ checkpoints carry no code


class _Planted:
    """Unpickling this creates ``marker`` (a stand-in for any code a crafted file could run)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_planted_pickle_checkpoint_runs_no_code(two_step_run, tmp_path, capsys):
    run = _copy(two_step_run, tmp_path)
    marker = tmp_path / "code_ran"
    shutil.rmtree(run / "checkpoint")
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "state.pt").write_bytes(pickle.dumps({"rng": _Planted(marker)}))
    pickle.loads(pickle.dumps(_Planted(tmp_path / "probe")))  # the planted object does run when unpickled
    assert (tmp_path / "probe").exists()
    assert main(["distill", "--resume", str(run)]) == 2
    _one_line_error(capsys.readouterr().err, "old pickle format (state.pt), which is never loaded")
    with pytest.raises(SraVizError, match="old pickle format"):
        load_checkpoint(run)
    list_runs(tmp_path)  # listing runs (the app's Runs table) reads no checkpoint either
    assert not marker.exists()


def test_checkpoint_files_are_safetensors_and_json_only(two_step_run):
    names = sorted(p.name for p in (two_step_run / "checkpoint").iterdir())
    assert names == ["projectors.safetensors", "state.json", "state.safetensors", "student.safetensors"]
    state = json.loads((two_step_run / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2 and "optimizer" in state and "scheduler" in state
    saved = load_checkpoint(two_step_run)
    assert any(k.startswith("optimizer.") and k.endswith("exp_avg") for k in saved.state_tensors)
    assert "rng.torch" in saved.state_tensors


@pytest.mark.parametrize(
    "target", ["state.safetensors", "state.json", "student.safetensors", "projectors.safetensors"]
)
def test_damaged_checkpoint_files_are_one_line(two_step_run, tmp_path, capsys, target):
    run = _copy(two_step_run, tmp_path)
    path = run / "checkpoint" / target
    if target == "student.safetensors":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    else:
        path.write_bytes(os.urandom(300))
    assert main(["distill", "--resume", str(run)]) == 2
    _one_line_error(capsys.readouterr().err, f"is damaged ({target}")


def test_an_edited_config_json_is_one_line(two_step_run, tmp_path, capsys):
    run = _copy(two_step_run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "lr": "fast"}))
    assert main(["distill", "--resume", str(run)]) == 2
    _one_line_error(capsys.readouterr().err, "lr='fast' (str) has the wrong type")
    (run / "config.json").write_text(json.dumps({**config, "student_k": 1}))  # fewer blocks than trained
    assert main(["distill", "--resume", str(run)]) == 2
    _one_line_error(capsys.readouterr().err, "does not hold the student weights its config.json trains")
    RunDir(run).open().close()  # a refused resume lets go of the folder


def test_resume_with_fewer_steps_than_done_is_refused(two_step_run, tmp_path, capsys):
    run = _copy(two_step_run, tmp_path)
    before = (run / "config.json").read_text()
    assert main(["distill", "--resume", str(run), "--steps", "1"]) == 2
    _one_line_error(capsys.readouterr().err, "--steps 1 is below the 2 steps")
    assert main(["distill", "--resume", str(run), "--device", "tpu"]) == 2
    _one_line_error(capsys.readouterr().err, "device='tpu' is not understood")
    assert (run / "config.json").read_text() == before and read_status(run)["state"] == "finished"


# ------------------------------------------------------------------ a run without checkpoint, stops


def test_a_run_without_checkpoint_starts_again_from_step_0(two_step_run, tiny_pair, tmp_path):
    run = _copy(two_step_run, tmp_path)
    shutil.rmtree(run / "checkpoint")  # killed before its first checkpoint
    said: list[str] = []
    session = DistillSession.resume(run, pair=tiny_pair, progress=said.append)
    assert session.step_count == 0 and any("starting it again from step 0" in m for m in said)
    assert read_status(run)["message"].startswith("started again from step 0")
    assert session.run() == "finished"
    assert _steps(run) == [0, 1, 2]


def test_a_stopped_run_writes_a_checkpoint_at_its_end(tiny_pair, tiny_pair_dirs, tmp_path):
    session = DistillSession(
        small_config(tmp_path / "stop", pair_dirs=tiny_pair_dirs, steps=5), pair=tiny_pair
    )
    assert session.run(callback=lambda row: session.stop()) == "stopped"
    assert load_checkpoint(tmp_path / "stop").state["step"] == 1 == session.step_count


# ------------------------------------------------------------------ one writer per run


def test_a_second_writer_in_this_process_is_refused(tiny_pair, tiny_pair_dirs, tmp_path):
    out = tmp_path / "locked"
    first = DistillSession(
        small_config(out, pair_dirs=tiny_pair_dirs, steps=1, checkpoint_every=1), pair=tiny_pair
    )
    errors: list[str] = []

    def second_writer() -> None:  # the app runs sessions in threads
        try:
            RunDir(out).open()
        except SraVizError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=second_writer)
    thread.start()
    thread.join(timeout=60)
    assert len(errors) == 1 and "is being written by pid" in errors[0]
    with pytest.raises(SraVizError, match="is being written by pid"):
        DistillSession.resume(out, pair=tiny_pair)
    assert read_status(out)["state"] == "running"  # held: the run is live, not "interrupted"
    assert first.run() == "finished"  # the run ends and lets go of its folder
    assert read_status(out)["state"] == "finished"
    again = DistillSession.resume(out, pair=tiny_pair, steps=2)
    assert again.run() == "finished" and _steps(out) == [0, 1, 2]


@pytest.mark.slow
def test_a_second_cli_resume_of_a_live_run_is_refused_and_kill_resume_keeps_every_step(
    tiny_pair_dirs, tmp_path
):
    out = tmp_path / "live"
    cmd = [
        sys.executable,
        "-m",
        "sra_viz",
        "distill",
        *_tiny_flags(tiny_pair_dirs),
        "--steps",
        "400",
        "--log-every",
        "1000",
        "--snapshot-every",
        "1000",
        "--checkpoint-every",
        "1",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not ((out / "metrics.jsonl").exists() and max(_steps(out), default=0) >= 2):
            assert proc.poll() is None, proc.stderr.read()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "the first run took no step in 600 s"
            time.sleep(0.2)
        second = subprocess.run(
            [sys.executable, "-m", "sra_viz", "distill", "--resume", str(out), "--quiet"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.poll() is None, "the first run ended before the second writer tried"
        assert second.returncode == 2
        _one_line_error(second.stderr, "is being written by pid")
        proc.send_signal(signal.SIGKILL)  # no chance to clean up
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = _steps(out)
    assert done == list(range(len(done)))  # one writer: no step twice, none interleaved
    assert read_status(out)["state"] == "interrupted"
    finish_at = str(max(done) + 2)
    resumed = subprocess.run(
        [sys.executable, "-m", "sra_viz", "distill", "--resume", str(out), "--steps", finish_at, "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _steps(out) == list(range(int(finish_at) + 1))  # nothing lost, nothing duplicated


# ------------------------------------------------------------------ NaN guard: failed, reason, checkpoint


def test_a_huge_learning_rate_fails_the_run_with_exit_1(tiny_pair_dirs, tmp_path, capsys):
    out = tmp_path / "huge_lr"
    code = main(
        [
            "distill",
            *_tiny_flags(tiny_pair_dirs),
            "--lr",
            "1e30",
            "--log-every",
            "1",
            "--steps",
            "4",
            "--checkpoint-every",
            "1",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "run failed" in err and "Traceback" not in err, err[-2000:]
    status = read_status(out)
    assert status["state"] == "failed" and status["message"], status
    saved = load_checkpoint(out)
    if saved is not None:  # the last good checkpoint: finite weights, a step before the failure
        assert saved.state["step"] < 4 and all(torch.isfinite(t).all() for t in saved.student.values())


def test_an_error_inside_a_step_fails_the_run_and_keeps_the_last_checkpoint(
    tiny_pair, tiny_pair_dirs, tmp_path
):
    out = tmp_path / "raises"
    session = DistillSession(
        small_config(out, pair_dirs=tiny_pair_dirs, steps=4, checkpoint_every=1), pair=tiny_pair
    )
    real = session.loss_terms

    def broken(batch):
        if session.step_count == 2:
            raise RuntimeError("a bug in a loss term")
        return real(batch)

    session.loss_terms = broken  # type: ignore[method-assign]
    assert session.run() == "failed" and session.step_count == 2
    status = read_status(out)
    assert (
        status["state"] == "failed"
        and "step 3 raised RuntimeError: a bug in a loss term" in status["message"]
    )
    assert "Traceback" in status["traceback"]
    assert load_checkpoint(out).state["step"] == 2
    assert DistillSession.resume(out, pair=tiny_pair).step_count == 2  # the lock was let go


def test_non_finite_weights_after_an_update_fail_the_run(tiny_pair, tiny_pair_dirs, tmp_path):
    out = tmp_path / "nan_weights"
    session = DistillSession(
        small_config(out, pair_dirs=tiny_pair_dirs, steps=4, checkpoint_every=1), pair=tiny_pair
    )

    def poison(_optimizer, _args, _kwargs):  # runs after each optimizer step
        if session.step_count == 1:  # the update of step 2
            with torch.no_grad():
                session.student.parameters()[0].view(-1)[0] = float("inf")

    session.optimizer.register_step_post_hook(poison)
    assert session.run() == "failed"
    assert "weights became non-finite in the update of step 2" in session.error
    assert read_status(out)["state"] == "failed"
    saved = load_checkpoint(out)
    assert saved.state["step"] == 1 and all(torch.isfinite(t).all() for t in saved.student.values())
    assert _steps(out) == [0, 1]  # the failed step logged nothing


def test_status_json_follows_the_steps(tiny_pair, tiny_pair_dirs, tmp_path):
    out = tmp_path / "status"
    session = DistillSession(small_config(out, pair_dirs=tiny_pair_dirs, steps=3), pair=tiny_pair)
    seen = []
    session.run(callback=lambda row: seen.append((row["step"], read_status(out)["step"])))
    assert seen == [(1, 1), (2, 2), (3, 3)]


def test_a_failed_run_summary_does_not_show_old_probe_metrics_as_current():
    rows = [{"step": 0, "probe_cka": 0.4}, {"step": 1, "loss": 2.0}, {"step": 2, "loss": 3.0}]
    assert last_metrics(rows)["probe_cka"] == 0.4 and last_metrics(rows)["probe_step"] == 0
    failed = last_metrics(rows, failed=True)
    assert "probe_cka" not in failed and failed["loss"] == 3.0 and failed["step"] == 2
    later = rows + [{"step": 3, "loss": 1.0, "probe_cka": None}]  # an evaluation that gave NaN
    assert "probe_cka" not in last_metrics(later)


# ------------------------------------------------------------------ metrics file


def test_a_corrupt_middle_metrics_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\n{"step": 1, "loss": \n{"step": 2}\n{"step": 3, "lo')
    with pytest.warns(UserWarning, match="line 2 is not a metrics row"):
        rows = read_metrics_rows(path)
    assert [r["step"] for r in rows] == [0, 2]
    path.write_text('{"step": 0}\n{"step": 1, "lo')  # only a torn last line: a killed run, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["step"] for r in read_metrics_rows(path)] == [0]


# ------------------------------------------------------------------ library: alignments know their tokenizers


def test_features_refuse_an_alignment_of_other_tokenizers(tiny_pair):
    from sra_viz.extraction import extract_features

    text = "Paris is the capital of France."
    teacher_tok, student_tok = tiny_pair.teacher.tokenizer, tiny_pair.student.tokenizer
    good = align_spans(text, teacher_tok, student_tok)
    assert extract_features(good, tiny_pair).saliency.shape[0] == len(good)
    swapped = align_spans(text, student_tok, teacher_tok)
    with pytest.raises(SraVizError, match="was aligned with tokenizers"):
        extract_features(swapped, tiny_pair)
    from sra_viz.alignment import SpanAlignment

    with pytest.raises(SraVizError, match="was aligned with tokenizers"):
        extract_features(SpanAlignment.from_json(swapped.to_json()), tiny_pair)  # kept through JSON
    with pytest.raises(SraVizError, match="pair must be a ModelPair"):
        extract_features(tiny_pair, good)
    with pytest.raises(SraVizError, match="pair must be a ModelPair"):
        extract_features(good, None)
    with pytest.raises(SraVizError, match="layers must be a block index"):
        extract_features(good, tiny_pair, layers="-1")
