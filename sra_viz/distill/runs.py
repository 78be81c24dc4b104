"""The run directory of a distillation run, and reopening past runs for the app.

    <run>/config.json                 DistillConfig (JSON)
    <run>/status.json                 state (running|finished|stopped|failed), step, message, pid
    <run>/metrics.jsonl               one JSON row per step (appended, flushed and fsynced per row)
    <run>/snapshots/teacher.npz       probe teacher CoMs, span texts, text ids, saliency (once)
    <run>/snapshots/step_XXXXXX.npz   projected student CoMs of the probe at that step
    <run>/checkpoint/                 student.safetensors, projectors.safetensors, state.pt
    <run>/evaluation/teacher.json     the teacher's held-out evaluation (once per run)
    <run>/evaluation/step_XXXXXX.json the student's held-out evaluation at that step (0 = before training)

An evaluation file is one JSON object: the figures of :class:`sra_viz.evaluation.EvalResult` (``model``,
``n``, ``rouge_l``, ``rouge_on_words``, ``rouge_on_chars``, ``teacher_agreement``, ``vcap_kl``,
``n_spans``, ``heldout_loss``, ``heldout_ppl``; null where a measure does not apply), ``step`` (null for
the teacher) and ``examples``: one ``{"id", "prompt", "reference", "generation", "rouge_l",
"scored_on"}`` per held-out prompt, in the same order in every file of a run.

Every file except metrics.jsonl is written to a temporary name and renamed into place; the checkpoint
folder is swapped whole (``checkpoint.old`` is read back when a run died in the middle of a swap).

Example:
    >>> runs = list_runs(paths.runs_dir())  # doctest: +SKIP
    >>> config, metrics, snaps = load_run(runs[0].path)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from ..errors import SraVizError
from .config import DistillConfig

CHECKPOINT = "checkpoint"
EVALUATION = "evaluation"


def _clean(value: Any) -> Any:
    """JSON-safe: numpy/torch scalars to Python, non-finite floats to None."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean_tree(value: Any) -> Any:
    """``_clean`` applied through nested dicts and lists."""
    if isinstance(value, dict):
        return {str(k): _clean_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_tree(v) for v in value]
    return _clean(value)


def read_evaluations(run_dir: str | os.PathLike) -> tuple[dict[str, Any] | None, dict[int, dict[str, Any]]]:
    """(the teacher's evaluation or None, step -> the student's evaluation) of a run, as saved."""
    folder = Path(run_dir) / EVALUATION
    teacher, steps = None, {}
    if (folder / "teacher.json").is_file():
        teacher = json.loads((folder / "teacher.json").read_text(encoding="utf-8"))
    for path in sorted(folder.glob("step_*.json")):
        steps[int(path.stem.split("_")[1])] = json.loads(path.read_text(encoding="utf-8"))
    return teacher, steps


def _atomic_write(path: Path, mode: str, write: Callable[[Any], None]) -> None:
    """Call ``write(fh)`` on a temporary file next to ``path``, fsync it, then rename it over ``path``
    (readers never see half a file; on any error the temporary file is removed)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        text_options: dict[str, Any] = {"encoding": "utf-8"} if "b" not in mode else {}
        with os.fdopen(fd, mode, **text_options) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see ``_atomic_write``)."""
    _atomic_write(path, "w", lambda fh: fh.write(text))


def _atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # cast: a dict[str, ndarray] could hold the key `allow_pickle` (a bool) as far as numpy's stub knows
    _atomic_write(path, "wb", lambda fh: np.savez(fh, **cast("dict[str, Any]", arrays)))


class RunDir:
    """Writer of one run directory (only rank 0 of a distributed run writes)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def create(self, config: DistillConfig) -> RunDir:
        """Start a new run here: the folder must be new or hold no earlier run."""
        if (self.path / "config.json").exists():
            raise SraVizError(
                f"{str(self.path)!r} already holds a run; resume it (--resume {self.path}) or choose a new --out folder"
            )
        (self.path / "snapshots").mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "config.json", config.to_json())
        self.metrics_path.touch()
        self.write_status("running", 0)
        return self

    def write_status(self, state: str, step: int, message: str = "") -> None:
        status = {
            "state": state,
            "step": int(step),
            "message": message,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "updated": time.time(),
        }
        atomic_write_text(self.path / "status.json", json.dumps(status, indent=2))

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one row and make it durable before returning (flush + fsync)."""
        line = json.dumps({k: _clean(v) for k, v in row.items()}, allow_nan=False)
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def truncate_metrics(self, after_step: int) -> None:
        """Drop rows past ``after_step`` (a resumed run replays those steps from its checkpoint)."""
        rows = read_metrics_rows(self.metrics_path)
        kept = [json.dumps(r, allow_nan=False) + "\n" for r in rows if int(r.get("step", 0)) <= after_step]
        atomic_write_text(self.metrics_path, "".join(kept))

    def write_teacher_snapshot(self, arrays: dict[str, np.ndarray]) -> None:
        (self.path / "snapshots").mkdir(exist_ok=True)
        _atomic_npz(self.path / "snapshots" / "teacher.npz", arrays)

    def write_snapshot(self, step: int, arrays: dict[str, np.ndarray]) -> None:
        (self.path / "snapshots").mkdir(exist_ok=True)
        _atomic_npz(self.path / "snapshots" / f"step_{step:06d}.npz", arrays)

    def write_evaluation(self, name: str, data: dict[str, Any]) -> None:
        """``evaluation/<name>.json`` (``teacher`` or ``step_XXXXXX``), written atomically."""
        (self.path / EVALUATION).mkdir(exist_ok=True)
        text = json.dumps(_clean_tree(data), indent=1, ensure_ascii=False, allow_nan=False)
        atomic_write_text(self.path / EVALUATION / f"{name}.json", text)

    def truncate_evaluations(self, after_step: int) -> None:
        """Remove student evaluations past ``after_step`` (a resumed run replays those steps)."""
        for path in (self.path / EVALUATION).glob("step_*.json"):
            if int(path.stem.split("_")[1]) > after_step:
                path.unlink()

    def save_checkpoint(self, student: dict, projectors: dict, state: dict) -> None:
        """Write student weights, projectors and training state into a new folder, then swap it in."""
        import torch
        from safetensors.torch import save_file

        staging = Path(tempfile.mkdtemp(prefix=".checkpoint.", dir=self.path))
        try:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in student.items()},
                staging / "student.safetensors",
                metadata={"step": str(int(state.get("step", 0)))},  # read without unpickling state.pt
            )
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in projectors.items()},
                staging / "projectors.safetensors",
            )
            torch.save(state, staging / "state.pt")
            for name in os.listdir(staging):
                with open(staging / name, "rb") as fh:
                    os.fsync(fh.fileno())
            final, old = self.path / CHECKPOINT, self.path / f"{CHECKPOINT}.old"
            if old.exists():
                shutil.rmtree(old)
            if final.exists():
                os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def checkpoint_dir(run_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint folder of a run (``checkpoint.old`` if a swap was cut short), or None."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        folder = Path(run_dir) / name
        if all((folder / f).is_file() for f in ("student.safetensors", "projectors.safetensors", "state.pt")):
            return folder
    return None


def load_checkpoint(run_dir: str | os.PathLike) -> tuple[dict, dict, dict]:
    """(student tensors, projector tensors, training state) of a run's last checkpoint."""
    import torch
    from safetensors.torch import load_file

    folder = checkpoint_dir(run_dir)
    if folder is None:
        raise SraVizError(
            f"run {str(run_dir)!r} has no checkpoint yet; it cannot be resumed (start it again)"
        )
    state = torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
    return load_file(folder / "student.safetensors"), load_file(folder / "projectors.safetensors"), state


def read_metrics_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl; a torn last line (a run killed mid-write) is skipped."""
    rows: list[dict[str, Any]] = []
    path = Path(path)
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def read_config(run_dir: str | os.PathLike) -> DistillConfig:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise SraVizError(f"{str(run_dir)!r} is not a distillation run directory (it has no config.json)")
    return DistillConfig.from_json(path.read_text(encoding="utf-8"))


def read_status(run_dir: str | os.PathLike) -> dict[str, Any]:
    """status.json, with state "interrupted" when a "running" run's process is gone (same host)."""
    try:
        status = json.loads((Path(run_dir) / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"state": "unknown", "step": 0, "message": ""}
    if status.get("state") == "running" and status.get("host") == socket.gethostname():
        try:
            os.kill(int(status.get("pid", -1)), 0)
        except (OSError, ValueError):
            status["state"] = "interrupted"
    return status


@dataclass
class RunSnapshots:
    """Probe CoMs of a run: teacher once, the student projected to teacher space at each snapshot step."""

    steps: list[int]
    teacher: np.ndarray  # (N, D_T)
    student: list[np.ndarray]  # one (N, D_T) per step
    span_text: list[str]
    text_id: np.ndarray  # (N,)
    saliency: np.ndarray  # (N,)
    extra: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # step -> other arrays


def load_snapshots(run_dir: str | os.PathLike) -> RunSnapshots | None:
    """All snapshots of a run (None when it has none yet)."""
    folder = Path(run_dir) / "snapshots"
    teacher_path = folder / "teacher.npz"
    if not teacher_path.is_file():
        return None
    with np.load(teacher_path) as t:
        teacher = {k: t[k] for k in t.files}
    steps, student, extra = [], [], {}
    for path in sorted(folder.glob("step_*.npz")):
        with np.load(path) as s:
            step = int(path.stem.split("_")[1])
            steps.append(step)
            student.append(s["student_projected"])
            extra[step] = {k: s[k] for k in s.files if k != "student_projected"}
    return RunSnapshots(
        steps,
        teacher["teacher"],
        student,
        [str(x) for x in teacher["span_text"]],
        teacher["text_id"],
        teacher["saliency"],
        extra,
    )


def load_run(run_dir: str | os.PathLike) -> tuple[DistillConfig, pd.DataFrame, RunSnapshots | None]:
    """Reopen a run: its config, its metrics as a DataFrame (one row per step), its snapshots.

    Example:
        >>> config, metrics, snaps = load_run("runs/sra")  # doctest: +SKIP
        >>> metrics[["step", "loss", "probe_cka"]].dropna()  # doctest: +SKIP
    """
    config = read_config(run_dir)
    metrics = pd.DataFrame(read_metrics_rows(Path(run_dir) / "metrics.jsonl"))
    if "step" in metrics:
        metrics = metrics.sort_values("step", kind="stable").reset_index(drop=True)
    return config, metrics, load_snapshots(run_dir)


@dataclass
class RunSummary:
    """One line of the run list: where it is, what it ran, how far it got, its last probe metrics."""

    path: Path
    name: str
    method: str
    teacher: str
    student: str
    steps_planned: int
    steps_done: int
    state: str
    message: str
    updated: float
    last: dict[str, Any]


def list_runs(directory: str | os.PathLike | None = None) -> list[RunSummary]:
    """Every run directory directly under ``directory`` (default: sra_viz.paths.runs_dir()), newest first.

    Example:
        >>> [r.name for r in list_runs("runs")]  # doctest: +SKIP
        ['sra', 'uld']
    """
    from .. import paths

    root = Path(directory) if directory is not None else paths.runs_dir()
    out: list[RunSummary] = []
    if not root.is_dir():
        return out
    for child in root.iterdir():
        if not (child / "config.json").is_file():
            continue
        try:
            config = read_config(child)
        except SraVizError:
            continue
        status = read_status(child)
        rows = read_metrics_rows(child / "metrics.jsonl")
        last: dict[str, Any] = {}
        for row in rows:
            last.update({k: v for k, v in row.items() if v is not None})
        out.append(
            RunSummary(
                child,
                child.name,
                config.method,
                config.teacher,
                config.student,
                config.steps,
                int(last.get("step", 0)),
                status.get("state", "unknown"),
                status.get("message", ""),
                float(status.get("updated", child.stat().st_mtime)),
                last,
            )
        )
    return sorted(out, key=lambda r: r.updated, reverse=True)
