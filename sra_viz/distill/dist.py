"""Data-parallel runs under ``torchrun`` / ``accelerate launch`` (detected from RANK / WORLD_SIZE).

Every process holds the whole student; each takes its own slice of every global batch; gradients are
averaged with one all-reduce per step (what DistributedDataParallel does, done by hand because the
losses run through hooks, CoM pooling and projectors rather than one ``module(...)`` call). Backend:
nccl on CUDA, gloo on CPU. Rank 0 alone writes the run directory and evaluates the probe.

    torchrun --nproc_per_node 2 -m sra_viz distill --student-variant truncated --steps 10
    accelerate launch --config_file docs/launch/ddp.yaml --num_processes 2 -m sra_viz distill --steps 10

Nothing is sharded: a launch that asks accelerate for FSDP, DeepSpeed or Megatron-LM is refused
(:func:`check_launch`), since it would run unsharded while promising otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import cast

import torch
import torch.distributed as dist

from ..errors import SraVizError

# what ``accelerate launch`` sets for a sharded (or otherwise engine-managed) launch
SHARDED_LAUNCH_FLAGS = {
    "ACCELERATE_USE_FSDP": "FSDP",
    "ACCELERATE_USE_DEEPSPEED": "DeepSpeed",
    "ACCELERATE_USE_MEGATRON_LM": "Megatron-LM",
}


@dataclass
class DistInfo:
    """Rank and world size of this process (1 process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()


def env_dist_info() -> DistInfo:
    """Rank / world size from the launcher's environment variables.

    Example:
        >>> env_dist_info().world_size >= 1
        True
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", str(rank)) or 0)
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def check_launch() -> None:
    """Refuse a launch whose accelerate config asks for FSDP, DeepSpeed or Megatron-LM: the engine keeps a
    whole teacher and student in every process and averages gradients itself, so nothing would be
    sharded.

    Example:
        >>> check_launch()  # a plain process (or torchrun, or docs/launch/ddp.yaml) passes
    """
    for flag, name in SHARDED_LAUNCH_FLAGS.items():
        if os.environ.get(flag, "").strip().lower() in ("true", "1", "yes"):
            raise SraVizError(
                f"this launch asks for {name} ({flag}={os.environ[flag]}), but sra-viz distill trains "
                "data-parallel only (every process holds the whole teacher and student; nothing is "
                "sharded): launch with docs/launch/ddp.yaml or torchrun"
            )


def init_distributed(device: str) -> DistInfo:
    """Join the process group when launched with WORLD_SIZE > 1 (idempotent); returns this rank's info."""
    info = env_dist_info()
    if info.world_size <= 1:
        return info
    if not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def device_for(info: DistInfo, device: str) -> str:
    """One GPU per process: plain "cuda" becomes "cuda:<local rank>" in a distributed run."""
    if info.world_size > 1 and device == "cuda":
        return f"cuda:{info.local_rank}"
    return device


def all_reduce_mean_(tensors: list[torch.Tensor], info: DistInfo) -> None:
    """Average tensors in place over all processes (one flat all-reduce)."""
    if not info.active or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world_size
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def average_grads_(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Average the gradients of ``params`` over processes (a missing grad counts as zeros)."""
    if not info.active:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    all_reduce_mean_(cast("list[torch.Tensor]", [p.grad for p in params]), info)  # no None left


def broadcast_(tensors: list[torch.Tensor], info: DistInfo) -> None:
    """Copy rank 0's values into every process (projector init, resumed weights)."""
    if not info.active:
        return
    for t in tensors:
        dist.broadcast(t.data, src=0)


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()
