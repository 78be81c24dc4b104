"""What a checkpoint holds and how a freshly built run is put back in that state (files: :mod:`.runs`).

Trainable student weights and projectors go to safetensors; the optimizer's moments and the torch /
numpy RNG states to ``state.safetensors``; everything else (step counter, data position, scheduler,
optimizer hyper-parameters, Python's RNG) to ``state.json``. Nothing is pickled, so reading a
checkpoint from a shared folder runs no code. Frozen weights are not saved: they are rebuilt from the
base model and the config.

Example:
    >>> save(run_dir, student, projectors, optimizer, scheduler, Position(step=3))  # doctest: +SKIP
    >>> position = restore(path, student, projectors, optimizer, scheduler, device)  # doctest: +SKIP
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _split_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer state_dict as (tensors named ``optimizer.<param>.<key>``, the JSON rest)."""
    tensors, per_param = {}, {}
    for index, entry in state_dict["state"].items():
        values = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                values[key] = value
        per_param[str(index)] = {
            "tensors": sorted(k for k in entry if torch.is_tensor(entry[k])),
            "values": values,
        }
    return tensors, {"state": per_param, "param_groups": state_dict["param_groups"]}


def _join_optimizer(tensors: dict[str, torch.Tensor], saved: dict[str, Any]) -> dict[str, Any]:
    """The inverse of ``_split_optimizer``."""
    state = {}
    for index, entry in saved["state"].items():
        state[int(index)] = {
            **entry["values"],
            **{key: tensors[f"optimizer.{index}.{key}"] for key in entry["tensors"]},
        }
    return {"state": state, "param_groups": saved["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Python, numpy, torch (and CUDA) RNG states as (tensors, JSON)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    tensors = {
        "rng.numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "rng.torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = cuda_state
    saved = {
        "python": [version, list(words), gauss],
        "numpy": [kind, int(pos), int(has_gauss), float(cached)],
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }
    return tensors, saved


def _set_rng_state(tensors: dict[str, torch.Tensor], saved: dict[str, Any]) -> None:
    version, words, gauss = saved["python"]
    random.setstate((int(version), tuple(int(w) for w in words), gauss))
    kind, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state(
        (str(kind), tensors["rng.numpy"].numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached))
    )
    torch.set_rng_state(tensors["rng.torch"])
    n_cuda = int(saved.get("cuda_devices", 0))
    if n_cuda and torch.cuda.is_available() and torch.cuda.device_count() == n_cuda:
        torch.cuda.set_rng_state_all([tensors[f"rng.cuda.{i}"] for i in range(n_cuda)])


def save(
    run_dir: RunDir,
    student: Student,
    projectors: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    position: Position,
) -> None:
    """Write a checkpoint into ``run_dir``: trainable weights, projectors, optimizer, scheduler, RNG and
    position."""
    named = dict(student.model.named_parameters())
    optimizer_tensors, optimizer_json = _split_optimizer(optimizer.state_dict())
    rng_tensors, rng_json = _rng_state()
    state = {
        "step": position.step,
        "epoch": position.epoch,
        "batch_in_epoch": position.batch_in_epoch,
        "optimizer": optimizer_json,
        "scheduler": scheduler.state_dict(),
        "rng": rng_json,
    }
    projector_state = projectors.state_dict() if projectors is not None else {}
    run_dir.save_checkpoint(
        {n: named[n] for n in student.trainable}, projector_state, {**optimizer_tensors, **rng_tensors}, state
    )


def restore(
    run_dir: Path,
    student: Student,
    projectors: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> Position:
    """Load the last checkpoint of ``run_dir`` into freshly built objects of the same config; returns
    the position to continue from (the caller restarts its data iterator there). A checkpoint that does
    not fit the objects (config.json edited since) is one SraVizError.

    Example:
        >>> state = restore(
        ...     Path("runs/sra"), student, projectors, optimizer, scheduler, device
        ... )  # doctest: +SKIP
        >>> state.step  # doctest: +SKIP
        30
    """
    saved = load_checkpoint(run_dir)
    if saved is None:
        raise SraVizError(f"run {str(run_dir)!r} has no checkpoint yet")
    named = dict(student.model.named_parameters())
    if set(student.trainable) != set(saved.student):
        differ = sorted(set(student.trainable) ^ set(saved.student))
        raise SraVizError(
            f"the checkpoint of {str(run_dir)!r} does not hold the student weights its config.json trains "
            f"({len(differ)} differ, e.g. {differ[:2]}): the config was changed after the run started; "
            "restore it or start a new run"
        )
    try:
        with torch.no_grad():
            for name, tensor in saved.student.items():
                named[name].copy_(tensor.to(named[name].device))
        if projectors is not None:
            projectors.load_state_dict({k: v.to(device) for k, v in saved.projectors.items()})
        state = saved.state
        optimizer.load_state_dict(_join_optimizer(saved.state_tensors, state["optimizer"]))
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(saved.state_tensors, state["rng"])
        return Position(int(state["step"]), int(state["epoch"]), int(state["batch_in_epoch"]))
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise SraVizError(
            f"the checkpoint of {str(run_dir)!r} does not fit its config.json ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}): restore the config or start a new run"
        ) from None
