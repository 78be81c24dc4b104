"""Where a run's metrics rows also go, besides ``metrics.jsonl`` (the source of truth the app reads).

``report_to="tensorboard"`` writes TensorBoard event files under ``RUN/tensorboard/`` (one scalar per
numeric field of each row, at the row's step; ``tensorboard --logdir RUN``). ``"trackio"`` logs the same
scalars to a local trackio project, ``sra-viz``, one trackio run per run folder (named by
:func:`trackio_run_name`), in trackio's SQLite file under :func:`sra_viz.paths.trackio_dir`
(``$TRACKIO_DIR``, else ``~/.cache/sra_viz/trackio``; ``TRACKIO_DIR=... trackio show --project sra-viz``
opens its dashboard). The metrics never leave the machine; only where a Hugging Face token is saved does
trackio ask huggingface.co once for the user name it labels a run with (``HF_HUB_OFFLINE=1`` stops
that). ``"none"``: nothing more. Every row holds the engine's losses, the probe metrics and the held-out
evaluation's measures of its step. Rows of steps replayed after a resume are written again (both
trackers show the later ones last).

Example:
    >>> reporter = open_reporter("tensorboard", Path("runs/sra"))  # doctest: +SKIP
    >>> reporter.log({"step": 1, "loss": 3.2, "ce": 2.9})  # doctest: +SKIP
    >>> reporter.close()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import math
import os
from pathlib import Path
from typing import Any

from ..errors import SraVizError

REPORT_TO = ("none", "tensorboard", "trackio")
TENSORBOARD_DIR = "tensorboard"
TRACKIO_PROJECT = "sra-viz"


def _scalars(row: dict[str, Any]) -> dict[str, float]:
    """Every finite number of ``row`` but its step (booleans and text left out)."""
    return {
        name: float(value)
        for name, value in row.items()
        if name != "step"
        and not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
    }


class TensorBoardReporter:
    """Scalars of each metrics row into event files under ``run_path / "tensorboard"``."""

    def __init__(self, run_path: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # torch's writer needs the tensorboard package
            raise SraVizError(
                f"report_to='tensorboard' needs the tensorboard package ({exc}); pip install tensorboard, "
                "or give --report-to none"
            ) from exc
        self.log_dir = Path(run_path) / TENSORBOARD_DIR
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log(self, row: dict[str, Any]) -> None:
        """Every finite number of ``row`` as a scalar at ``row["step"]``."""
        step = int(row.get("step", 0))
        for name, value in _scalars(row).items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def trackio_run_name(run_path: Path) -> str:
    """The trackio run of a run folder: its name and 8 hex digits of its absolute path (two folders of
    the same name stay two runs; a resumed run continues its own).

    Example:
        >>> trackio_run_name(Path("/runs/sra"))
        'sra-cff1b69a'
    """
    digest = hashlib.sha256(str(Path(run_path).expanduser().absolute()).encode()).hexdigest()[:8]
    return f"{Path(run_path).name}-{digest}"


class TrackioReporter:
    """Scalars of each metrics row into the local trackio project ``sra-viz`` (module docstring); the
    trackio run's config is the run folder and ``config`` (the run's DistillConfig fields).

    trackio reads its folder once, when first imported: ``TRACKIO_DIR`` is set to
    :func:`sra_viz.paths.trackio_dir` before that unless given; ``records_dir`` is where the records are.
    trackio's own messages (it prints to stdout) are kept off the run's output.
    """

    def __init__(self, run_path: Path, config: dict[str, Any] | None = None):
        from .. import paths

        os.environ.setdefault("TRACKIO_DIR", str(paths.trackio_dir()))
        try:
            import trackio
            import trackio.utils
        except ImportError as exc:
            raise SraVizError(
                f"report_to='trackio' needs the trackio package ({exc}); pip install trackio, or give "
                "--report-to none"
            ) from exc
        self.records_dir = Path(trackio.utils.TRACKIO_DIR)
        self.name = trackio_run_name(run_path)
        # a fresh context: trackio.init would otherwise finish the run another reporter of this thread
        # holds (its "current run"), and make this one the target of module-level trackio.log calls
        with contextlib.redirect_stdout(io.StringIO()):
            self.run = contextvars.Context().run(
                trackio.init,
                project=TRACKIO_PROJECT,
                name=self.name,
                resume="allow",
                config={"run_dir": str(Path(run_path).absolute()), **(config or {})},
                embed=False,
                auto_log_cpu=False,
                auto_log_gpu=False,
            )

    def log(self, row: dict[str, Any]) -> None:
        """Every finite number of ``row`` as a metric at ``row["step"]``."""
        self.run.log(_scalars(row), step=int(row.get("step", 0)))

    def close(self) -> None:
        """Wait until every logged row is in trackio's SQLite file."""
        with contextlib.redirect_stdout(io.StringIO()):
            self.run.finish()


Reporter = TensorBoardReporter | TrackioReporter


def open_reporter(report_to: str, run_path: Path, config: dict[str, Any] | None = None) -> Reporter | None:
    """The reporter ``report_to`` names for the run folder ``run_path`` (None for "none"); ``config``: the
    run's options, for trackers that keep them (trackio)."""
    if report_to == "none":
        return None
    if report_to == "tensorboard":
        return TensorBoardReporter(run_path)
    if report_to == "trackio":
        return TrackioReporter(run_path, config)
    raise SraVizError(f"report_to={report_to!r} is unknown; expected one of {REPORT_TO}")
