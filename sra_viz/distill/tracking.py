"""Where a run's metrics rows also go, besides ``metrics.jsonl`` (the source of truth the app reads).

``report_to="tensorboard"`` writes TensorBoard event files under ``RUN/tensorboard/`` (one scalar per
numeric field of each row, at the row's step; ``tensorboard --logdir RUN``). ``"none"``: nothing more.
Rows of steps replayed after a resume are written again (TensorBoard shows the later ones last).

Example:
    >>> reporter = open_reporter("tensorboard", Path("runs/sra"))  # doctest: +SKIP
    >>> reporter.log({"step": 1, "loss": 3.2, "ce": 2.9})  # doctest: +SKIP
    >>> reporter.close()  # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..errors import SraVizError

REPORT_TO = ("none", "tensorboard")
TENSORBOARD_DIR = "tensorboard"


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
        """Every finite number of ``row`` (booleans and text left out) as a scalar at ``row["step"]``."""
        step = int(row.get("step", 0))
        for name, value in row.items():
            if name == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(name, float(value), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_reporter(report_to: str, run_path: Path) -> TensorBoardReporter | None:
    """The reporter ``report_to`` names for the run folder ``run_path`` (None for "none")."""
    if report_to == "none":
        return None
    if report_to == "tensorboard":
        return TensorBoardReporter(run_path)
    raise SraVizError(f"report_to={report_to!r} is unknown; expected one of {REPORT_TO}")
