"""``report_to``: metrics rows copied to TensorBoard event files or a local trackio project; metrics.jsonl
stays the source of truth."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sra_viz.distill import DistillConfig, DistillSession
from sra_viz.distill.tracking import TRACKIO_PROJECT, trackio_run_name
from sra_viz.errors import SraVizError


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _two_step_run(pair, out, report_to: str, **extra) -> list[dict]:
    """A finished 2-step run reporting to ``report_to``; its metrics.jsonl rows."""
    options = dict(
        steps=2,
        batch_size=2,
        max_length=32,
        student_variant="truncated",
        student_k=1,
        probe_size=2,
        heldout_size=1,
        eval_size=0,
        log_every=1,
        checkpoint_every=0,
    )
    cfg = DistillConfig(**{**options, **extra}, report_to=report_to, out=str(out))
    session = DistillSession(cfg, pair=pair)
    assert session.run() == "finished"
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_event_files_hold_the_metrics_rows(tiny_pair, tmp_path):
    rows = _two_step_run(tiny_pair, tmp_path / "run", "tensorboard")
    scalars = _scalars(tmp_path / "run" / "tensorboard")
    for name in ("loss", "span", "geo", "kd", "ce", "grad_norm", "probe_cos"):
        expected = [(r["step"], r[name]) for r in rows if name in r]
        assert [s for s, _ in scalars[name]] == [s for s, _ in expected], name
        for (_, got), (_, want) in zip(scalars[name], expected, strict=True):
            assert got == pytest.approx(want, rel=1e-6), name
    assert [s for s, _ in scalars["probe_cos"]] == [0, 1, 2]  # the step-0 evaluation row too


def test_trackio_records_hold_the_metrics_rows_locally(tiny_pair, tmp_path, trackio_folder):
    """A 2-step run with report_to="trackio" leaves, in trackio's local SQLite records (the tests'
    $TRACKIO_DIR), one trackio run whose metrics are the numbers of metrics.jsonl, the step-0 probe and
    held-out evaluation rows included; a second folder of the same name is a second trackio run."""
    from trackio import Api
    from trackio.sqlite_storage import SQLiteStorage

    rows = _two_step_run(tiny_pair, tmp_path / "run", "trackio", eval_size=1, eval_max_new_tokens=2)
    name = trackio_run_name(tmp_path / "run")
    assert (trackio_folder / f"{TRACKIO_PROJECT}.db").is_file()
    assert not list((tmp_path / "run").glob("*.db"))  # the run folder holds sra_viz's own files only
    logs = SQLiteStorage.get_logs(TRACKIO_PROJECT, name)
    assert [log["step"] for log in logs] == [r["step"] for r in rows] == [0, 1, 2]
    for log, row in zip(logs, rows, strict=True):
        numbers = {
            k
            for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
        }
        assert numbers <= set(log), sorted(numbers - set(log))
        for key in numbers:
            assert log[key] == pytest.approx(row[key], rel=1e-9), (row["step"], key)
    (record,) = [run for run in Api().runs(TRACKIO_PROJECT) if run.name == name]
    assert record.config["run_dir"] == str((tmp_path / "run").absolute()) and record.config["steps"] == 2
    names = set().union(*logs)
    assert {"loss", "span", "geo", "kd", "ce", "grad_norm", "lr", "probe_cos", "heldout_loss"} <= names
    assert {"eval_n", "eval_rouge_l", "eval_heldout_loss"} <= names  # the held-out evaluation's measures
    other = tmp_path / "elsewhere" / "run"
    _two_step_run(tiny_pair, other, "trackio")
    assert trackio_run_name(other) != name
    assert {name, trackio_run_name(other)} <= set(SQLiteStorage.get_runs(TRACKIO_PROJECT))
    assert len(SQLiteStorage.get_logs(TRACKIO_PROJECT, name)) == 3  # the first run's records unchanged


def test_unknown_report_to_is_one_clear_line(tmp_path):
    with pytest.raises(
        SraVizError,
        match=r"report_to='wandb' is unknown; expected one of \('none', 'tensorboard', 'trackio'\)",
    ):
        DistillConfig(report_to="wandb")
    out = subprocess.run(
        [sys.executable, "-m", "sra_viz", "distill", "--report-to", "wandb", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "argument --report-to: invalid choice: 'wandb'" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "r").exists()
