"""What every model family ends in: a patch classifier (a truncated backbone plus a 1x1
conv, one logit pair per patch) or a full-image classifier (pooling plus a linear layer).

Blocks that are not a plain ``nn.Sequential`` of standard layers expose ``rf_paths()``:
the parallel branches whose union determines their receptive field
(:mod:`patchforensics.models.receptive_field` computes fields from them).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class GlobalAvgPool(nn.Module):
    """Mean over H and W: ``(N, C, H, W) -> (N, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class PatchClassifier(nn.Module):
    """A truncated backbone plus a 1×1 conv: ``(N,3,H,W) -> (N,2,H',W')`` logits,
    one pair per output position, each seeing only its receptive field."""

    def __init__(self, stages: "OrderedDict[str, nn.Module]", out_channels: int):
        super().__init__()
        self.features = nn.Sequential(stages)
        self.head = nn.Conv2d(out_channels, 2, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FullImageClassifier(nn.Module):
    """A whole backbone, global average pooling and a linear layer:
    ``(N,3,H,W) -> (N,2,1,1)`` (kept 4-D so every model shares one output shape)."""

    def __init__(self, stages: "OrderedDict[str, nn.Module]", out_channels: int):
        super().__init__()
        self.features = nn.Sequential(stages)
        self.pool = GlobalAvgPool()
        self.fc = nn.Linear(out_channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)))[:, :, None, None]
