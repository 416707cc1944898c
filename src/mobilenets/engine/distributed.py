"""Multi-process data-parallel training under `torchrun`: gloo on CPU, nccl on GPU; only rank 0 writes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _flag(self, value: bool) -> torch.Tensor:
        return torch.tensor([int(value)], device=torch.device("cuda", self.local_rank)
                            if dist.get_backend() == "nccl" else "cpu")

    def agree(self, decision: bool) -> bool:
        """Rank 0's `decision`, on every process once rank 0 has made it (e.g. to stop early: only rank 0
        evaluates); a barrier too."""
        if not self.enabled:
            return decision
        flag = self._flag(decision)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def all_true(self, value: bool) -> bool:
        """Whether `value` holds on every process (e.g. a finite loss: one rank alone must not stop)."""
        if not self.enabled:
            return value
        flag = self._flag(value)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())


def average_buffers(module: torch.nn.Module, job: Distributed) -> None:
    """Average batch-norm running statistics over the processes, so every rank holds the same model.

    DDP keeps parameters in step, but each rank's last forward pass updates its own running statistics.
    """
    if not job.enabled:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(job.world_size)


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group `torchrun` describes in the environment (WORLD_SIZE, RANK, LOCAL_RANK), if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def choose_device(name: str) -> torch.device:
    """'auto' picks CUDA (this process's GPU under torchrun) when available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shutdown(job: Distributed) -> None:
    if job.enabled and dist.is_initialized():
        dist.destroy_process_group()
