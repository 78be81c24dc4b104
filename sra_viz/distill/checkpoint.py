"""What a checkpoint holds and how a freshly built run is put back in that state (files: :mod:`.runs`).

Trainable student weights and projectors go to safetensors; optimizer, scheduler, RNG states, the
step counter and the data position (epoch, batch index) to ``state.pt``. Frozen weights are not
saved: they are rebuilt from the base model and the config.

Example:
    >>> save(run_dir, student, projectors, optimizer, scheduler, Position(step=3))  # doctest: +SKIP
    >>> position = restore(path, student, projectors, optimizer, scheduler, device)  # doctest: +SKIP
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import SraVizError
from .runs import RunDir, load_checkpoint
from .student import Student


@dataclass
class Position:
    """Where a run is: optimizer steps taken and the data position (epoch, batches of it consumed)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def save(
    run_dir: RunDir,
    student: Student,
    projectors: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    position: Position,
) -> None:
    """Write a checkpoint into ``run_dir``: trainable weights, projectors, optimizer, scheduler, RNG, position."""
    named = dict(student.model.named_parameters())
    state = {
        "step": position.step,
        "epoch": position.epoch,
        "batch_in_epoch": position.batch_in_epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
    }
    projector_state = projectors.state_dict() if projectors is not None else {}
    run_dir.save_checkpoint({n: named[n] for n in student.trainable}, projector_state, state)


def restore(
    run_dir: Path,
    student: Student,
    projectors: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> Position:
    """Load the last checkpoint of ``run_dir`` into freshly built objects of the same config; returns
    the position to continue from (the caller restarts its data iterator there)."""
    weights, projector_state, state = load_checkpoint(run_dir)
    named = dict(student.model.named_parameters())
    missing = sorted(set(student.trainable) - set(weights))
    if missing:
        raise SraVizError(
            f"the checkpoint of {str(run_dir)!r} lacks student weights {missing[:3]}: its config.json was "
            "changed after the run started; restore it or start a new run"
        )
    with torch.no_grad():
        for name, tensor in weights.items():
            named[name].copy_(tensor.to(named[name].device))
    if projectors is not None:
        projectors.load_state_dict({k: v.to(device) for k, v in projector_state.items()})
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return Position(int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"]))
