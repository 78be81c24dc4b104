"""Run distillation sessions in background threads that never call Streamlit, registered per process.

A ``TrainingWorker`` builds a session with ``factory(say)`` (deep-copying the student, aligning the
probe texts) and calls its ``run()``, which honours ``stop()`` between steps and writes the
checkpoint. Workers live in a process-level registry keyed by their run directory, not in one
browser session's state: a reloaded page or another browser session finds the running run there
(status, Stop, live curves), and :func:`launch` refuses a second writer on a run that is running.
When a run ends its worker drops the session (the student copy, optimizer, cached batches) and
keeps only what the page shows (status, steps, metrics rows).

Example:
    >>> worker = launch(run_dir, lambda say: DistillSession(config, pair, progress=say))  # doctest: +SKIP
    >>> worker.join(); worker.progress().status  # doctest: +SKIP
    'finished'
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sra_viz.errors import SraVizError

# preparing: the session is being built; running / stopping: steps are being taken; then the
# session's own final status: finished, stopped or failed.
ACTIVE = ("preparing", "running", "stopping")
KEEP_ENDED = 20  # ended workers kept in the registry (a few metrics rows each) for the pages to show


@dataclass
class WorkerProgress:
    """A consistent copy of the worker's state at one moment (safe to read from any thread)."""

    status: str  # "ready", one of ACTIVE, "finished", "stopped" or "failed"
    steps_done: (
        int  # optimizer steps taken whose metrics rows are logged (a resumed run starts at its checkpoint)
    )
    total_steps: int  # config.steps of the session
    records: list[dict[str, Any]] = field(default_factory=list)  # metrics rows (step 0 = initial probe)
    error: str = ""  # why the run failed
    message: str = ""  # the session's last progress message
    run_dir: str = ""  # the run directory
    seconds: float = 0.0  # wall time since the last start
    method: str = ""  # the config's method, once the session exists
    saved: bool = False  # True once the run has written a checkpoint (a stop while preparing saves none)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


class TrainingWorker:
    """Builds a session with ``factory(say)`` in a daemon thread, then runs it until done or stopped.

    ``factory`` gets a ``say(message)`` function for the session's progress messages and returns a
    ``DistillSession`` (or anything with ``run(callback=)``, ``stop()``, ``error``, ``step_count``,
    ``config``, ``history`` and ``run_dir``). A worker runs once; resuming a run is a new worker.
    """

    def __init__(self, factory: Callable[[Callable[[str], None]], Any], run_dir: str | Path):
        self._factory = factory
        self.run_dir = str(run_dir)
        self.session: Any = None
        self.created = time.time()
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = "ready"
        self._error = self._message = self._method = ""
        self._started = 0.0
        self._ended: float | None = None
        self._saved = False
        # what the page shows once the session is released: (steps done, total steps, metrics rows)
        self._kept: tuple[int, int, list[dict[str, Any]]] = (0, 0, [])

    def say(self, message: str) -> None:
        """Record the session's latest progress message (called from the worker thread)."""
        with self._lock:
            self._message = str(message)

    def start(self) -> None:
        """Build the session and run it in the background until all its steps are done (once)."""
        with self._lock:
            if self._status != "ready":
                raise SraVizError(f"this worker has already run (it is {self._status}); start a new one")
            self._status = "preparing"
            self._started, self._ended = time.monotonic(), None
            self._thread = threading.Thread(target=self._main, name="sra-viz-distill", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask the run to stop after the step it is taking (returns at once; the checkpoint follows)."""
        self._stop_requested.set()
        with self._lock:
            session = self.session
            if self._status in ("preparing", "running"):
                self._status = "stopping"
        if session is not None:
            session.stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True when it has ended."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def progress(self) -> WorkerProgress:
        """A copy of the status, step counts and metrics rows."""
        with self._lock:
            session, status, error, message = self.session, self._status, self._error, self._message
            end = self._ended if self._ended is not None else time.monotonic()
            seconds = end - self._started if self._started else 0.0
            done, total, rows = self._kept
            method, saved = self._method, self._saved
        if session is not None:
            total, rows = int(session.config.steps), list(session.history)
            done = steps_on_record(int(session.step_count), rows)
        return WorkerProgress(
            status, done, total, list(rows), error, message, self.run_dir, seconds, method, saved
        )

    def _after_step(self, _row: dict) -> None:
        if self._stop_requested.is_set():
            self.session.stop()

    def _main(self) -> None:
        final, error, saved = "failed", "", False
        session = None
        try:
            session = self._factory(self.say)
            with self._lock:
                self.session = session
                self._method = str(session.config.method)
                if self._status == "preparing":
                    self._status = "running"
            if self._stop_requested.is_set():
                final = "stopped"  # stopped while preparing: no step taken, nothing saved
                _write_status(session, "stopped", "stopped while preparing: no step was taken, nothing saved")
            else:
                # run() clears the session's stop flag when it begins: a stop that lands just then is
                # passed on again after the next step
                final = session.run(callback=self._after_step)
                error = session.error if final == "failed" else ""
                saved = final in ("finished", "stopped") or _has_checkpoint(self.run_dir)
        except SraVizError as exc:
            error = str(exc)
        except Exception as exc:  # the page shows it; the thread must never die silently
            error = f"{type(exc).__name__}: {exc}"
        if final == "failed" and session is not None and getattr(session, "status", "") != "failed":
            _write_status(session, "failed", error)  # an unexpected error: the run must not stay "running"
        if session is not None:
            getattr(session, "close", lambda: None)()  # let go of the run folder's writer lock
        with self._lock:
            if session is not None:
                self._kept = (int(session.step_count), int(session.config.steps), list(session.history))
            self._status, self._error, self._ended, self._saved = final, error, time.monotonic(), saved
            self.session = None
        del session
        release_memory()


def steps_on_record(step_count: int, rows: list[dict]) -> int:
    """The steps done whose metrics rows are on record: a step's count goes up after its update and
    before its row is logged (its probe may still be running), so a page that showed ``step_count``
    could say "step 1" next to no loss yet.

    >>> steps_on_record(1, [{"step": 0, "probe_cka": 0.4}])
    0
    >>> steps_on_record(1, [{"step": 0}, {"step": 1, "loss": 2.0}])
    1
    """
    if not rows:
        return step_count
    return min(step_count, max((int(r["step"]) for r in rows if "step" in r), default=step_count))


def _write_status(session: Any, state: str, message: str) -> None:
    run_dir = getattr(session, "run_dir", None)
    if run_dir is not None and hasattr(run_dir, "write_status"):
        run_dir.write_status(state, int(session.step_count), message)


def _has_checkpoint(run_dir: str) -> bool:
    from sra_viz.distill.runs import checkpoint_dir

    return checkpoint_dir(run_dir) is not None


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``; elsewhere a no-op).

    The engine asks glibc to keep freed memory for reuse during a run; once a run has ended that
    memory is returned, so the server's size follows what it holds.
    """
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


# ----------------------------------------------------------------------------- the process-level registry

_registry: dict[str, TrainingWorker] = {}
_registry_lock = threading.Lock()


def run_key(run_dir: str | Path) -> str:
    """The registry key of a run directory: its absolute, resolved path.

    Example:
        >>> run_key("/tmp/../tmp/runs/sra") == run_key("/tmp/runs/sra")
        True
    """
    return str(Path(run_dir).expanduser().resolve())


def launch(run_dir: str | Path, factory: Callable[[Callable[[str], None]], Any]) -> TrainingWorker:
    """Start a worker for ``run_dir`` and register it; refuses when a worker is already active on it.

    Example:
        >>> launch("runs/sra", lambda say: DistillSession.resume("runs/sra", progress=say))  # doctest: +SKIP
    """
    key = run_key(run_dir)
    with _registry_lock:
        current = _registry.get(key)
        if current is not None and current.progress().active:
            raise SraVizError(
                f"run {key!r} is already running in this app: watch or stop it above; a second writer "
                "would corrupt its checkpoint"
            )
        worker = TrainingWorker(factory, key)
        _registry[key] = worker
        ended = sorted((w for w in _registry.values() if not w.progress().active), key=lambda w: w.created)
        for old in ended[: max(0, len(ended) - KEEP_ENDED)]:
            _registry.pop(old.run_dir, None)
    worker.start()
    return worker


def worker_for(run_dir: str | Path | None) -> TrainingWorker | None:
    """The registered worker of ``run_dir`` (None when the app started none there)."""
    if not run_dir:
        return None
    with _registry_lock:
        return _registry.get(run_key(run_dir))


def active_workers() -> list[TrainingWorker]:
    """Workers preparing, running or stopping, newest first."""
    with _registry_lock:
        workers = list(_registry.values())
    return sorted((w for w in workers if w.progress().active), key=lambda w: w.created, reverse=True)
