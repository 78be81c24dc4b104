"""``report_to``: metrics rows copied to TensorBoard event files; metrics.jsonl stays the source of truth."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sra_viz.distill import DistillConfig, DistillSession
from sra_viz.errors import SraVizError


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_event_files_hold_the_metrics_rows(tiny_pair, tmp_path):
    cfg = DistillConfig(
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
        report_to="tensorboard",
        out=str(tmp_path / "run"),
    )
    session = DistillSession(cfg, pair=tiny_pair)
    assert session.run() == "finished"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scalars = _scalars(tmp_path / "run" / "tensorboard")
    for name in ("loss", "span", "geo", "kd", "ce", "grad_norm", "probe_cos"):
        expected = [(r["step"], r[name]) for r in rows if name in r]
        assert [s for s, _ in scalars[name]] == [s for s, _ in expected], name
        for (_, got), (_, want) in zip(scalars[name], expected, strict=True):
            assert got == pytest.approx(want, rel=1e-6), name
    assert [s for s, _ in scalars["probe_cos"]] == [0, 1, 2]  # the step-0 evaluation row too


def test_unknown_report_to_is_one_clear_line(tmp_path):
    with pytest.raises(
        SraVizError, match=r"report_to='wandb' is unknown; expected one of \('none', 'tensorboard'\)"
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
