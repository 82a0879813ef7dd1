"""DistributedDataParallel training under ``torchrun``: the wrapped model and the
BatchNorm statistics every process must share before it validates.

The process group itself is :mod:`patchforensics.core.ranks`; sharded validation
is :mod:`patchforensics.scoring.distributed`.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from ..core.ranks import DistContext


def wrap_model(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """``model`` inside DistributedDataParallel when running several processes.

    BatchNorm statistics stay per process (rank 0's running statistics are
    broadcast at each forward), as in standard DDP training.
    """
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def broadcast_buffers(model: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process.

    Each process updates its BatchNorm statistics with its own batches after
    DDP's per-forward broadcast, so before evaluating, all must take rank 0's,
    the ones that rank 0 saves.
    """
    if ctx.distributed:
        for buf in unwrap(model).buffers():
            dist.broadcast(buf.data, src=0)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (``model`` itself if unwrapped)."""
    return getattr(model, "module", model)
