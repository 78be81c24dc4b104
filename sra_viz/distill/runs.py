"""The run directory of a distillation run, and reopening past runs for the app.

    <run>/config.json                 DistillConfig (JSON)
    <run>/status.json                 state (running|finished|stopped|failed), step, message, pid
    <run>/metrics.jsonl               one JSON row per step (appended, flushed and fsynced per row)
    <run>/snapshots/teacher.npz       probe teacher CoMs, span texts, text ids, saliency (once)
    <run>/snapshots/step_XXXXXX.npz   projected student CoMs of the probe at that step
    <run>/checkpoint/                 student.safetensors, projectors.safetensors, state.safetensors,
                                      state.json (tensors and JSON only: loading one runs no code)
    <run>/run.lock                    held (flock) by the one process writing the run; pid and host inside
    <run>/evaluation/teacher.json     the teacher's held-out evaluation (once per run)
    <run>/evaluation/step_XXXXXX.json the student's held-out evaluation at that step (0 = before training)

An evaluation file is one JSON object: the figures of :class:`sra_viz.evaluation.EvalResult` (``model``,
``n``, ``rouge_l``, ``rouge_on_words``, ``rouge_on_chars``, ``teacher_agreement``, ``vcap_kl``,
``n_spans``, ``heldout_loss``, ``heldout_ppl``; null where a measure does not apply), ``step`` (null for
the teacher) and ``examples``: one ``{"id", "prompt", "reference", "generation", "rouge_l",
"scored_on"}`` per held-out prompt, in the same order in every file of a run.

Every file except metrics.jsonl is written to a temporary name and renamed into place; the checkpoint
folder is swapped whole (``checkpoint.old`` is read back when a run died in the middle of a swap).
One process writes a run: :class:`RunLock` is taken before anything is written and held for the
run's life; the kernel drops it when the process dies, so a killed run never blocks its resume.

Example:
    >>> runs = list_runs(paths.runs_dir())  # doctest: +SKIP
    >>> config, metrics, snaps = load_run(runs[0].path)  # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import socket
import tempfile
import time
import warnings
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
CHECKPOINT_FILES = ("student.safetensors", "projectors.safetensors", "state.safetensors", "state.json")
LOCK = "run.lock"
_LOCK_TRIES = 5


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
        teacher = read_evaluation_file(folder / "teacher.json")
    for path in sorted(folder.glob("step_*.json")):
        if path.stem.split("_", 1)[1].isdigit():  # step_XXXXXX.json only (no temporary or stray names)
            steps[int(path.stem.split("_", 1)[1])] = read_evaluation_file(path)
    return teacher, steps


def read_evaluation_file(path: Path) -> dict[str, Any]:
    """One evaluation file as a dict; a file that is not a JSON object is one clear error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SraVizError(
            f"evaluation file {str(path)!r} cannot be read ({exc}): remove it; the rest of the run is kept"
        ) from None
    if not isinstance(data, dict):
        raise SraVizError(
            f"evaluation file {str(path)!r} holds a {type(data).__name__}, not an evaluation object: "
            "remove it"
        )
    return data


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


class RunLock:
    """Exclusive writer lock of a run folder: ``flock`` on ``<run>/run.lock``, pid and host written inside.

    The kernel releases it when the process ends, however it ends, so there is no stale lock to detect.
    A second writer is refused, be it another process or another thread of this one (each ``RunLock``
    opens the file anew, and flock locks of two open files exclude each other even in one process).

    Example:
        >>> lock = RunLock(run_folder).acquire()  # doctest: +SKIP
        >>> lock.release()  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / LOCK
        self._fh: Any = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> RunLock:
        """Take the lock or raise SraVizError naming the process that holds it."""
        if self._fh is not None:
            return self
        fh = open(self.path, "a+", encoding="utf-8")
        for attempt in range(_LOCK_TRIES):  # is_locked() holds it for an instant: a few short retries
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt + 1 < _LOCK_TRIES:
                    time.sleep(0.02)
        else:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise SraVizError(
                f"run {str(self.path.parent)!r} is being written by {holder}; wait for that run to end or "
                "stop it (one process writes a run at a time)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def is_locked(run_dir: str | os.PathLike) -> bool:
    """Whether some process (this one included) holds the run's writer lock right now."""
    path = Path(run_dir) / LOCK
    if not path.is_file():
        return False
    with open(path, encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False


def check_run_folder(path: str | os.PathLike | None, new: bool) -> None:
    """Refuse, before anything is loaded or created, a folder that cannot hold the run.

    A new run needs a folder that is absent or holds no run; a resumed one needs a run folder.
    """
    if path is None:
        return
    folder = Path(path)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise SraVizError(
            f"run directory {str(folder)!r}: {str(existing)!r} is a file, not a folder; choose a folder"
        )
    if new and (folder / "config.json").exists():
        raise SraVizError(
            f"{str(folder)!r} already holds a run; resume it (--resume {folder}) or choose a new --out folder"
        )
    if not new and not (folder / "config.json").is_file():
        raise SraVizError(f"{str(folder)!r} is not a distillation run directory (it has no config.json)")


class RunDir:
    """Writer of one run directory (only rank 0 of a distributed run writes), holding its RunLock."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock = RunLock(self.path)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def create(self, config: DistillConfig) -> RunDir:
        """Start a new run here (locked): the folder must be new or hold no earlier run."""
        check_run_folder(self.path, new=True)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SraVizError(f"cannot create run directory {str(self.path)!r}: {exc.strerror}") from exc
        self.lock.acquire()
        try:
            check_run_folder(self.path, new=True)  # another process may have started one meanwhile
            (self.path / "snapshots").mkdir(exist_ok=True)
            atomic_write_text(self.path / "config.json", config.to_json())
            self.metrics_path.touch()
            self.write_status("running", 0)
        except BaseException:
            self.lock.release()
            raise
        return self

    def open(self) -> RunDir:
        """Take over an existing run folder for writing (locked)."""
        check_run_folder(self.path, new=False)
        self.lock.acquire()
        return self

    def close(self) -> None:
        """Release the writer lock (the files stay)."""
        self.lock.release()

    def write_status(self, state: str, step: int, message: str = "", **extra: Any) -> None:
        status = {
            "state": state,
            "step": int(step),
            "message": message,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "updated": time.time(),
            **extra,
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

    def drop_snapshots_after(self, step: int) -> None:
        """Remove student snapshots past ``step`` (they are written again as the run replays)."""
        for path in (self.path / "snapshots").glob("step_*.npz"):
            if int(path.stem.split("_")[1]) > step:
                path.unlink()

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

    def save_checkpoint(
        self, student: dict, projectors: dict, state_tensors: dict, state: dict[str, Any]
    ) -> None:
        """Write student weights, projectors and training state (tensors + JSON) into a new folder, then
        swap it in."""
        from safetensors.torch import save_file

        staging = Path(tempfile.mkdtemp(prefix=".checkpoint.", dir=self.path))
        try:
            for name, tensors in (
                ("student", student),
                ("projectors", projectors),
                ("state", state_tensors),
            ):
                save_file(
                    {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                    staging / f"{name}.safetensors",
                )
            (staging / "state.json").write_text(json.dumps(state, allow_nan=False), encoding="utf-8")
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
        if all((folder / f).is_file() for f in CHECKPOINT_FILES):
            return folder
    return None


@dataclass
class CheckpointFiles:
    """What a checkpoint folder holds, as read: tensors by name and the JSON training state."""

    student: dict[str, Any]  # trainable student weights, name -> tensor
    projectors: dict[str, Any]  # projector state_dict
    state_tensors: dict[str, Any]  # optimizer moments, RNG states
    state: dict[str, Any]  # step, data position, scheduler, optimizer groups, python RNG (JSON)


def load_checkpoint(run_dir: str | os.PathLike) -> CheckpointFiles | None:
    """The last checkpoint of a run, or None when it has none; only safetensors and JSON are read, never
    a pickle. A damaged checkpoint, or one in the old pickle format, is SraVizError saying what to do.

    Example:
        >>> load_checkpoint("runs/sra").state["step"]  # doctest: +SKIP
        30
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    folder = checkpoint_dir(run_dir)
    if folder is None:
        if any((run_dir / name / "state.pt").exists() for name in (CHECKPOINT, f"{CHECKPOINT}.old")):
            raise SraVizError(
                f"the checkpoint of {str(run_dir)!r} is in the old pickle format (state.pt), which is never "
                "loaded because unpickling can run code; delete its checkpoint folder to start the run again "
                "from step 0"
            )
        return None
    reading = ""
    try:
        tensors = {}
        for name in ("student", "projectors", "state"):
            reading = f"{name}.safetensors"
            tensors[name] = load_file(folder / reading)
        reading = "state.json"
        state = json.loads((folder / reading).read_text(encoding="utf-8"))
        if not isinstance(state, dict):
            raise ValueError(f"a JSON object was expected, got {type(state).__name__}")
    except Exception as exc:  # safetensors, JSON and UTF-8 errors alike: the file is damaged
        raise SraVizError(
            f"the checkpoint of {str(run_dir)!r} is damaged ({reading}: {str(exc).splitlines()[0][:200]}); "
            f"delete {str(folder)!r} to start the run again from step 0"
        ) from None
    return CheckpointFiles(tensors["student"], tensors["projectors"], tensors["state"], state)


def read_metrics_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl; a torn last line (a run killed mid-write) is skipped silently, any other
    line that is not a JSON object is skipped with a warning naming it."""
    rows: list[dict[str, Any]] = []
    path = Path(path)
    if not path.exists():
        return rows
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not a metrics row")
            rows.append(row)
        except ValueError:
            if number < len(lines):
                warnings.warn(f"{str(path)!r}: line {number} is not a metrics row; skipped", stacklevel=2)
    return rows


def last_metrics(rows: list[dict[str, Any]], failed: bool = False) -> dict[str, Any]:
    """The latest value of every metric, probe metrics from the last evaluation only (``probe_step``
    says which step measured them). A failed run keeps probe metrics only when measured at its last step.

    Example:
        >>> last_metrics([{"step": 0, "probe_cka": 0.5}, {"step": 1, "loss": 2.0}])
        {'step': 1, 'loss': 2.0, 'probe_cka': 0.5, 'probe_step': 0}
    """
    last: dict[str, Any] = {}
    probe: dict[str, Any] = {}
    for row in rows:
        values = {k: v for k, v in row.items() if v is not None}
        if any(k.startswith("probe_") for k in row):
            probe = {k: v for k, v in values.items() if k.startswith("probe_")}
            probe["probe_step"] = row["step"]
        last.update({k: v for k, v in values.items() if not k.startswith("probe_")})
    if probe and not (failed and probe["probe_step"] != last.get("step")):
        last.update(probe)
    return last


def read_config(run_dir: str | os.PathLike) -> DistillConfig:
    """The run's config.json, checked like any config (an edited one with a bad value is one SraVizError)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise SraVizError(f"{str(run_dir)!r} is not a distillation run directory (it has no config.json)")
    try:
        return DistillConfig.from_json(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SraVizError(f"{str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except SraVizError as exc:
        raise SraVizError(f"{str(path)!r}: {exc}") from None


def read_status(run_dir: str | os.PathLike) -> dict[str, Any]:
    """status.json, with state "interrupted" when a "running" run's writer lock is free (its process is
    gone)."""
    try:
        status = json.loads((Path(run_dir) / "status.json").read_text(encoding="utf-8"))
        if not isinstance(status, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError):
        return {"state": "unknown", "step": 0, "message": ""}
    if status.get("state") == "running" and not is_locked(run_dir):
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
        last = last_metrics(rows, failed=status.get("state") == "failed")
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
