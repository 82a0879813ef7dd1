"""Where this process stands in a ``torchrun`` job: its rank, its device and the process group.

``torchrun --nproc-per-node K -m patchforensics train …`` starts K copies of the
command; each finds its rank in the environment torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``) and :func:`setup` joins
them into one process group: NCCL when the processes drive GPUs (one GPU per
process, ``cuda:LOCAL_RANK``), gloo on CPUs. Without torchrun nothing changes:
:func:`setup` returns a single-process context and no group is created.

Kept in ``core`` because every stage that runs under torchrun needs it (sharded
evaluation, DDP training, the CLI's "rank 0 reports" check); what each of them
does with the group lives with it (``scoring.distributed``, ``training.distributed``).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.distributed as dist

from .device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job (a single process by default)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None     # "nccl" | "gloo" | None (single process)

    @property
    def is_main(self) -> bool:
        """The process that writes files and prints summaries."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value is not None else default
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer; "
                         "launch with torchrun, which sets it") from None


def world_size() -> int:
    """Processes in this job per the torchrun environment (1 without torchrun)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """Rank 0 (or no torchrun): the process that prints summaries."""
    return _env_int("RANK", 0) == 0


def _pick_device(device: str, local_rank: int) -> torch.device:
    """``auto`` -> this process's GPU if any, else CPU; ``cuda``/``cuda:N`` -> ``cuda:LOCAL_RANK``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA GPU is visible; use --device cpu")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                             "start at most one process per GPU (--nproc-per-node)")
        return torch.device("cuda", local_rank)
    return resolve_device(device)


def setup(device: str = "auto") -> DistContext:
    """Join the torchrun job this process belongs to (if any); see the module doc.

    A process group that already exists (created by the caller) is reused.
    """
    n_processes = world_size()
    if n_processes <= 1:
        return DistContext(device=resolve_device(device))
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", n_processes)
    dev = _pick_device(device, local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    backend = dist.get_backend()
    return DistContext(rank, n_processes, local_rank, local_world, dev, backend)


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def session(device: str = "auto") -> Iterator[DistContext]:
    """:func:`setup` for the duration of a ``with`` block; the group is torn down
    afterwards only if this call created it."""
    created = not dist.is_initialized()
    ctx = setup(device)
    try:
        yield ctx
    finally:
        if created:
            teardown(ctx)


def barrier(ctx: DistContext) -> None:
    """Wait for every process of the job (nothing to wait for in a single process)."""
    if ctx.distributed:
        dist.barrier()
