"""Scoring shared across the processes of a ``torchrun`` job.

Evaluation (and training's validation passes) split the samples round-robin
(:func:`shard`), each process scores its share, and :func:`gather_predictions`
reassembles the per-image scores in the original order and sums the patch
histograms, so every process ends with exactly the
:class:`~patchforensics.scoring.metrics.Predictions` (and hence metrics) a
single process would have computed. Only tensors and JSON travel between
processes: nothing is unpickled. Joining the job is :mod:`patchforensics.core.ranks`;
DistributedDataParallel training is :mod:`patchforensics.training.distributed`.
"""
from __future__ import annotations

import json
from typing import Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from ..core.imageio import SkipLog
from ..core.ranks import DistContext
from .metrics import AGGREGATIONS, PatchHistogram, Predictions

T = TypeVar("T")


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
