"""Several processes, one job: ``torchrun`` training with DistributedDataParallel
and evaluation sharded across processes.

``torchrun --nproc-per-node K -m patchforensics train …`` starts K copies of the
command; each finds its rank in the environment torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``) and :func:`setup` joins
them into one process group: NCCL when the processes drive GPUs (one GPU per
process, ``cuda:LOCAL_RANK``), gloo on CPUs. Without torchrun nothing changes:
:func:`setup` returns a single-process context and no group is created.

Evaluation splits the samples round-robin (:func:`shard`), each process scores
its share, and :func:`gather_predictions` reassembles the per-image scores in
the original order and sums the patch histograms, so every process ends with
exactly the :class:`~patchforensics.scoring.metrics.Predictions` (and hence metrics) a
single process would have computed. Only tensors and JSON travel between
processes: nothing is unpickled.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from ..core.imageio import SkipLog
from ..core.device import resolve_device
from .metrics import AGGREGATIONS, PatchHistogram, Predictions

T = TypeVar("T")


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
    if ctx.distributed:
        dist.barrier()


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
    return getattr(model, "module", model)


def shard(items: Sequence[T], ctx: DistContext) -> list[T]:
    """This process's share: every ``world_size``-th item from ``rank`` (none is
    repeated, none dropped, unlike a padded training sampler)."""
    return list(items[ctx.rank::ctx.world_size])


def _all_gather_1d(t: torch.Tensor, ctx: DistContext) -> list[torch.Tensor]:
    """All-gather 1-D tensors whose lengths differ between processes."""
    comm = ctx.device if ctx.backend == "nccl" else torch.device("cpu")
    t = t.to(comm)
    n = torch.tensor([t.numel()], device=comm, dtype=torch.int64)
    sizes = [torch.zeros_like(n) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=t.dtype, device=comm)
    padded[:t.numel()] = t
    out = [torch.zeros_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(out, padded)
    return [o[:int(s.item())].cpu() for o, s in zip(out, sizes)]


def _all_gather_json(value, ctx: DistContext) -> list:
    raw = torch.frombuffer(bytearray(json.dumps(value).encode()), dtype=torch.uint8)
    return [json.loads(bytes(b.numpy()).decode()) for b in _all_gather_1d(raw, ctx)]


def gather_predictions(local, shard_positions: Sequence[int], samples: Sequence, ctx: DistContext):
    """Combine every process's :class:`~patchforensics.scoring.metrics.Predictions` of its
    shard into the predictions of all ``samples``, identical on every process.

    ``shard_positions[i]`` is the position in ``samples`` of this process's
    ``i``-th shard sample (``shard(range(len(samples)), ctx)``). Images come out
    in the order of ``samples``, the patch histograms are summed and the
    skipped files listed in ``samples`` order, as a single process would report.
    """
    if not ctx.distributed:
        return local
    positions = np.asarray(shard_positions, dtype=np.int64)[local.index]
    table = np.stack([positions.astype(np.float64), local.labels.astype(np.float64)]
                     + [local.scores[a].astype(np.float64) for a in AGGREGATIONS], axis=1)
    rows = torch.cat([r.view(-1, 2 + len(AGGREGATIONS))
                      for r in _all_gather_1d(torch.from_numpy(table).reshape(-1), ctx)]).numpy()
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    order = rows[:, 0].astype(np.int64)

    counts = torch.from_numpy(local.patches.counts.copy())
    comm = ctx.device if ctx.backend == "nccl" else torch.device("cpu")
    counts = counts.to(comm)
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    patches = PatchHistogram(local.patches.clip, local.patches.bin_width)
    patches.counts = counts.cpu().numpy()

    first_position = {}
    for i, s in enumerate(samples):
        first_position.setdefault(s.path, i)
    skipped = [tuple(x) for part in _all_gather_json([list(x) for x in local.skipped.skipped], ctx)
               for x in part]
    skipped.sort(key=lambda x: first_position.get(x[0], len(samples)))
    return Predictions(paths=[samples[i].path for i in order], labels=rows[:, 1].astype(int),
                       scores={a: rows[:, 2 + k].astype(np.float32) for k, a in enumerate(AGGREGATIONS)},
                       patches=patches, skipped=SkipLog(skipped), index=order)
