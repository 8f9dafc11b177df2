"""torch.distributed glue for ``torchrun --nproc_per_node N -m microcnn train CONFIG``.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK (and the rendezvous variables); :func:`init_distributed` starts
the process group with NCCL on GPUs and gloo on CPU. Rank 0 logs and writes files; metrics are reduced over
ranks. Multi-node runs use torchrun's own rendezvous flags (see docs/training.md).

Example:
    >>> info = init_distributed("cpu")   # a plain process: rank 0 of 1, no process group
    >>> info.world_size, info.is_main
    (1, True)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place: rank (global), world size, local rank (GPU index on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed(device_spec: str = "auto") -> DistInfo:
    """Join the process group torchrun prepared (once); a plain process gets ``DistInfo()``.

    The backend is NCCL when the run uses CUDA, else gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and not str(device_spec).startswith(("cpu", "mps"))
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        if info.is_main:
            log.info("distributed: world size %d, backend %s", world, dist.get_backend())
    return info


def device_for_rank(device: torch.device, info: DistInfo) -> torch.device:
    """Under DDP each process drives its own GPU: cuda -> cuda:LOCAL_RANK."""
    if info.active and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over ranks (no-op in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def loss_weight(local_n: int, world_size: int, step_n: int) -> float:
    """Factor for a micro-batch's mean loss: ``local_n * world_size / step_n``.

    ``local_n`` samples of this rank's micro-batch, ``step_n`` samples of the whole optimizer step over all
    ranks. DDP averages gradients over ranks, so the factors make the step's gradient that of the mean loss
    over its ``step_n`` samples, whatever the split between micro-batches and ranks.
    """
    return local_n * world_size / step_n


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
