"""The distillation engine: SRA, token-level baselines (ULD, exact-token KD) and the CE-only control in
short observable runs.

    config.py      DistillConfig (every option, one documented field each, JSON round-trip)
    session.py     DistillSession: step() / run() / stop() / resume(), metrics, checkpoints
    student.py     student variants (full, last_k, truncated), always a deep copy
    lora.py        LoRA adapters on the student copy (--peft lora) and their merge for export
    batch.py       aligned, truncated, padded batches
    plan.py        LayerPlan (mapped layers by depth, their masses) and VocabHeads (LM heads, V∩)
    side_pass.py   one side's forward, masses and span CoMs
    loss_terms.py  the loss terms of one batch, per method
    sra_loss.py    SRALoss: the objective as an nn.Module (plan, heads, projectors), shared with the session
    probe.py       probe metrics, measured the same way for every method
    runs.py        run directory I/O: list_runs, load_run, the writer lock (one writer per run)
    tracking.py    --report-to: metrics rows also to TensorBoard event files
    checkpoint.py  what a checkpoint holds (safetensors + JSON, no pickle) and how it is put back
    export.py      a run's student rebuilt from its checkpoint, or written as a transformers folder
    preflight.py   config checks against the models' config.json, before anything loads
    cli.py         the ``sra-viz distill`` subcommand
    dist.py        data-parallel runs under torchrun / accelerate launch
    perf.py        allocator settings (reuse freed memory)

Example:
    >>> from sra_viz.distill import DistillConfig, DistillSession
    >>> cfg = DistillConfig(method="sra", steps=30, student_variant="truncated", student_k=6)
    >>> DistillSession(cfg).run()  # doctest: +SKIP
    'finished'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_names import lazy_names as _lazy_names
from .config import DistillConfig  # no torch: `sra-viz --help` and every CLI parser are built from it

if TYPE_CHECKING:
    from .runs import RunSnapshots, RunSummary, list_runs, load_run
    from .session import DistillSession, NonFiniteLossError, resume
    from .sra_loss import SRALoss

# Resolved on first use, like `sra_viz`'s own names: importing the package (the CLI does, to build its
# parser) loads neither torch nor transformers.
_EXPORTS = {
    "DistillSession": "session",
    "NonFiniteLossError": "session",
    "resume": "session",
    "RunSnapshots": "runs",
    "RunSummary": "runs",
    "list_runs": "runs",
    "load_run": "runs",
    "SRALoss": "sra_loss",
}

__all__ = [
    "DistillConfig",
    "DistillSession",
    "NonFiniteLossError",
    "RunSnapshots",
    "RunSummary",
    "SRALoss",
    "list_runs",
    "load_run",
    "resume",
]


__getattr__, __dir__ = _lazy_names(__name__, _EXPORTS, __all__)
