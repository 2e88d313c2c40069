"""Several processes per run through ``torchrun`` / ``accelerate launch`` (docs/scale-out.md).

Each process reads its slice of every global batch, the student is wrapped in DDP (gradients averaged,
so the update equals the single-process one), and a teacher too large for one GPU can be sharded with
FSDP (``fully_shard``, parameters gathered layer by layer at inference). Without the launcher's
environment (``WORLD_SIZE`` unset or 1) everything runs in this process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from distlaw.errors import DistlawError
from distlaw.lab.checks import check_device_name


@dataclass(frozen=True)
class Context:
    """This process' place in the run."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def local_slice(self, batch_size: int) -> slice:
        """The rows of a global batch this process trains on (the batch must split evenly)."""
        per = batch_size // self.world
        return slice(self.rank * per, (self.rank + 1) * per)


def default_device(device: str | None = None) -> torch.device:
    """``device``, or CUDA when available, else the CPU; a device this machine lacks is a DistlawError."""
    check_device_name(device)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DistlawError(f"--device {device}: this machine has no CUDA device (use cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DistlawError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DistlawError(f"--device {device}: MPS is not available on this machine (use cpu)")
    return dev


def setup(device: str | None = None) -> Context:
    """Join the process group the launcher describes (NCCL on GPUs, gloo on CPU) or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = default_device(device).type == "cuda"
    if world > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
        return Context(dist.get_rank(), world, dev)
    return Context(0, 1, default_device(device))


def all_reduce_sum(tensor: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Sum a tensor over processes (in place; identity when alone)."""
    if ctx.world > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(ctx: Context) -> None:
    if ctx.world > 1:
        dist.barrier()


def wrap_student(model: nn.Module, ctx: Context) -> nn.Module:
    """DDP over all processes (gradient all-reduce); the bare model when alone."""
    if ctx.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def shard_teacher(model: nn.Module, ctx: Context) -> nn.Module:
    """FSDP-shard a teacher across processes (each keeps 1/world of the weights): every block of its
    longest ``ModuleList`` (the decoder layers of any Hugging Face causal LM), then the rest."""
    if ctx.world == 1:
        return model
    from torch.distributed.fsdp import fully_shard

    blocks = max((m for m in model.modules() if isinstance(m, nn.ModuleList)), key=len, default=nn.ModuleList())
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    return model
