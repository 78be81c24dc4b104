"""What a checkpoint holds and how a session is put back in that state (files: :mod:`.runs`).

Trainable student weights and projectors go to safetensors; optimizer, scheduler, RNG states, the
step counter and the data position (epoch, batch index) to ``state.pt``. Frozen weights are not
saved: they are rebuilt from the base model and the config.

Example:
    >>> save(session)  # doctest: +SKIP
    >>> restore(DistillSession(config, pair, _resuming=True), run_dir)  # doctest: +SKIP
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SraVizError
from .runs import load_checkpoint


def save(session: Any) -> None:
    """Write the session's checkpoint (rank 0 only; other ranks hold the same weights)."""
    if not session.dist.is_main or session.run_dir is None:
        return
    named = dict(session.student.model.named_parameters())
    state = {
        "step": session.step_count,
        "epoch": session.epoch,
        "batch_in_epoch": session.batch_in_epoch,
        "optimizer": session.optimizer.state_dict(),
        "scheduler": session.scheduler.state_dict(),
        "rng": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
        "status": session.status,
    }
    projectors = session.projectors.state_dict() if session.projectors is not None else {}
    session.run_dir.save_checkpoint({n: named[n] for n in session.student.trainable}, projectors, state)


def restore(session: Any, run_dir: Path) -> None:
    """Load the last checkpoint of ``run_dir`` into a freshly built session of the same config."""
    student, projectors, state = load_checkpoint(run_dir)
    named = dict(session.student.model.named_parameters())
    missing = sorted(set(session.student.trainable) - set(student))
    if missing:
        raise SraVizError(
            f"the checkpoint of {str(run_dir)!r} lacks student weights {missing[:3]}: its config.json was "
            "changed after the run started; restore it or start a new run"
        )
    with torch.no_grad():
        for name, tensor in student.items():
            named[name].copy_(tensor.to(named[name].device))
    if session.projectors is not None:
        session.projectors.load_state_dict({k: v.to(session.device) for k, v in projectors.items()})
    session.optimizer.load_state_dict(state["optimizer"])
    session.scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    session.step_count, session.epoch = int(state["step"]), int(state["epoch"])
    session.batch_in_epoch = int(state["batch_in_epoch"])
    session._data_iter = None
