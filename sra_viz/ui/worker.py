"""Run a distillation session in a background thread that never calls Streamlit.

The Distill page keeps one ``TrainingWorker`` per browser session in ``st.session_state``; a fragment
polls :meth:`TrainingWorker.progress` about once a second and redraws. The thread builds the session
(deep-copying the student, aligning the probe texts) and calls its ``run()``, which honours ``stop()``
between steps and writes the checkpoint; so the page never blocks, and two browser sessions train
independently, each on its own copy of the student.

Example:
    >>> worker = TrainingWorker(lambda say: DistillSession(config, pair, progress=say))  # doctest: +SKIP
    >>> worker.start(); worker.join(); worker.progress().status  # doctest: +SKIP
    'finished'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sra_viz.errors import SraVizError

# preparing: the session is being built; running / stopping: steps are being taken; then the
# session's own final status: finished, stopped or failed.
ACTIVE = ("preparing", "running", "stopping")


@dataclass
class WorkerProgress:
    """A consistent copy of the worker's state at one moment (safe to read from any thread)."""

    status: str  # "ready", one of ACTIVE, "finished", "stopped" or "failed"
    steps_done: int  # optimizer steps the session has taken (a resumed run starts at its checkpoint)
    total_steps: int  # config.steps of the session
    records: list[dict[str, Any]] = field(default_factory=list)  # metrics rows (step 0 = initial probe)
    error: str = ""  # why the run failed
    message: str = ""  # the session's last progress message
    run_dir: str = ""  # the run directory, once the session exists
    seconds: float = 0.0  # wall time since the last start

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


class TrainingWorker:
    """Builds a session with ``factory(say)`` in a daemon thread, then runs it until done or stopped.

    ``factory`` gets a ``say(message)`` function for the session's progress messages and returns a
    ``DistillSession`` (or anything with ``run(callback=)``, ``stop()``, ``error``, ``step_count``,
    ``config.steps``, ``history`` and ``run_dir``).
    """

    def __init__(self, factory: Callable[[Callable[[str], None]], Any]):
        self._factory = factory
        self.session: Any = None
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = "ready"
        self._error = ""
        self._message = ""
        self._started = 0.0
        self._ended: float | None = None

    def say(self, message: str) -> None:
        """Record the session's latest progress message (called from the worker thread)."""
        with self._lock:
            self._message = str(message)

    def start(self) -> None:
        """Build the session if needed and run it in the background until all its steps are done."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise SraVizError("training is already running: stop it before starting it again")
            if self._status == "failed":
                raise SraVizError(f"this run failed ({self._error}); start a new run")
            if self._status == "finished":
                raise SraVizError(
                    "this run has finished all its steps; start a new run or resume it with more steps"
                )
            self._stop_requested.clear()
            self._status = "preparing" if self.session is None else "running"
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
        if session is None:
            return WorkerProgress(status, 0, 0, [], error, message, "", seconds)
        run_dir = getattr(session.run_dir, "path", session.run_dir)
        return WorkerProgress(
            status, int(session.step_count), int(session.config.steps), list(session.history), error, message,
            str(run_dir or ""), seconds,
        )  # fmt: skip

    def _after_step(self, _row: dict) -> None:
        if self._stop_requested.is_set():
            self.session.stop()

    def _main(self) -> None:
        final, error = "failed", ""
        try:
            if self.session is None:
                session = self._factory(self.say)
                with self._lock:
                    self.session = session
                    if self._status == "preparing":
                        self._status = "running"
            if self._stop_requested.is_set():
                final = "stopped"
                getattr(self.session, "close", lambda: None)()  # let go of the run folder it locked
            else:
                # run() clears the session's stop flag when it begins: a stop that lands just then is
                # passed on again after the next step
                final = self.session.run(callback=self._after_step)
                error = self.session.error if final == "failed" else ""
        except SraVizError as exc:
            error = str(exc)
        except Exception as exc:  # the page shows it; the thread must never die silently
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._status, self._error, self._ended = final, error, time.monotonic()
