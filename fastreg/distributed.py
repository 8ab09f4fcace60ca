"""Data-parallel training under ``torchrun`` (DESIGN.md §10): the process group, the rank's
shard of each batch, and the collectives that keep every rank's classifier and D identical.

One process is ``Dist()`` (rank 0 of 1) and every helper here is then a no-op, so the single-
process path runs exactly as before.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as td

from .errors import UsageError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env(device_arg: str | None) -> tuple[Dist, str | None]:
    """The torchrun environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), its process group
    (nccl on CUDA, gloo on the CPU) and this rank's device (``cuda:LOCAL_RANK`` on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device_arg
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg not in (None, "", "auto", "cpu", "cuda"):
        raise UsageError(f"device {device_arg!r} under torchrun: each rank uses cuda:LOCAL_RANK (device 'cuda') "
                         f"or the CPU (device 'cpu')", "device")
    cuda = device_arg != "cpu" and torch.cuda.is_available()
    device = f"cuda:{local}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(local)
    if not td.is_initialized():
        td.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world, local), device


def shard(t: torch.Tensor, dist: Dist) -> torch.Tensor:
    """This rank's rows of a global batch (rows ``rank, rank + world, ...``)."""
    return t[dist.rank::dist.world] if dist.active else t


def all_reduce_(tensors: list[torch.Tensor], dist: Dist, mean: bool = False) -> None:
    """Sum (or average) each tensor over the ranks, in place."""
    if not dist.active:
        return
    for t in tensors:
        td.all_reduce(t)
        if mean:
            t.div_(dist.world)


def broadcast_(tensors: list[torch.Tensor], dist: Dist) -> None:
    """Every rank takes rank 0's values, in place."""
    if dist.active:
        for t in tensors:
            td.broadcast(t, 0)


def check_in_sync(tensors: list[torch.Tensor], dist: Dist, what: str) -> None:
    """Raise on every rank unless all ranks hold bitwise the same ``tensors``."""
    if not dist.active:
        return
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    ref = flat.clone()
    td.broadcast(ref, 0)
    bad = torch.tensor([float(not torch.equal(flat, ref))], device=flat.device)
    td.all_reduce(bad)
    if bad.item():
        raise RuntimeError(f"{what} differ between ranks ({int(bad.item())} of {dist.world} ranks "
                           f"differ from rank 0)")


def barrier(dist: Dist) -> None:
    if dist.active:
        td.barrier()


_left_group = False   # this process was a rank of a process group (see exit_process)


def close_process_group() -> None:
    """Leave the process group, if this process joined one (a no-op otherwise)."""
    global _left_group
    if td.is_available() and td.is_initialized():
        td.destroy_process_group()
        _left_group = True


def exit_process(code: int) -> NoReturn:
    """The exit of a ``python -m fastreg.…`` process. A torchrun worker (it left a process
    group) ends with ``os._exit`` once its output is flushed, skipping the interpreter's
    teardown: after DistributedDataParallel, gloo's threads outlive ``destroy_process_group``
    and a worker could abort during that teardown (SIGABRT, "terminate called without an active
    exception") with all its work done, which torchrun reports as a failed run (DESIGN.md §10,
    with the rates measured). Everything a run keeps is written, atomically, before this."""
    if _left_group:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


def wrap(model: torch.nn.Module, dist: Dist, device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel under torchrun (one device per rank on CUDA), else
    as it is: what train and collect both train."""
    if not dist.active:
        return model
    dev = torch.device(device)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
