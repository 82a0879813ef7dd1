"""Building blocks shared by the model families.

Every block that is not a plain ``nn.Sequential`` of standard layers exposes
``rf_paths()``: the parallel branches (each a list of modules) whose union
determines its receptive field. :mod:`patchforensics.models.receptive_field`
uses this to compute fields analytically instead of by brute force.
"""
from __future__ import annotations

import torch
from torch import nn


class SeparableConv2d(nn.Module):
    """Depthwise ``k×k`` conv followed by a pointwise ``1×1`` conv (Xception)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1):
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, kernel_size, stride, padding,
                                   groups=in_ch, bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))

    def rf_paths(self) -> list[list[nn.Module]]:
        return [[self.depthwise, self.pointwise]]


class XceptionBlock(nn.Module):
    """Xception residual block: ``reps`` × (ReLU, SeparableConv, BN), optional max-pool
    stride, and a 1×1 projection on the skip path when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, reps: int, stride: int = 1,
                 start_with_relu: bool = True, grow_first: bool = True):
        super().__init__()
        if out_ch != in_ch or stride != 1:
            self.skip = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(out_ch))
        else:
            self.skip = nn.Identity()
        layers: list[nn.Module] = []
        channels = in_ch
        if grow_first:
            layers += [nn.ReLU(inplace=False), SeparableConv2d(in_ch, out_ch), nn.BatchNorm2d(out_ch)]
            channels = out_ch
        for _ in range(reps - 1):
            layers += [nn.ReLU(inplace=False), SeparableConv2d(channels, channels),
                       nn.BatchNorm2d(channels)]
        if not grow_first:
            layers += [nn.ReLU(inplace=False), SeparableConv2d(in_ch, out_ch), nn.BatchNorm2d(out_ch)]
        if not start_with_relu:
            layers = layers[1:]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rep(x) + self.skip(x)

    def rf_paths(self) -> list[list[nn.Module]]:
        return [[self.rep], [self.skip]]


class BasicBlock(nn.Module):
    """ResNet basic block (two 3×3 convs), as in torchvision's ResNet-18/34."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _projection(in_ch, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))

    def rf_paths(self) -> list[list[nn.Module]]:
        return [[self.conv1, self.conv2], [self.downsample]]


class Bottleneck(nn.Module):
    """ResNet bottleneck block (1×1, strided 3×3, 1×1), as in torchvision's ResNet-50."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(in_ch, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))

    def rf_paths(self) -> list[list[nn.Module]]:
        return [[self.conv1, self.conv2, self.conv3], [self.downsample]]


def _projection(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class GlobalAvgPool(nn.Module):
    """Mean over H and W: ``(N, C, H, W) -> (N, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))
