"""ResNet-18/34/50 (He et al. 2016, as torchvision builds them): the full network, or cut
after layer 1-4 (``resnet18_layer1`` …) into a patch classifier."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .classifiers import FullImageClassifier, PatchClassifier
from .registry import register_family


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


_RESNET_DEPTHS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
                  50: (Bottleneck, [3, 4, 6, 3])}


def _resnet_stages(depth: int, n_layers: int) -> tuple["OrderedDict[str, nn.Module]", int]:
    block, counts = _RESNET_DEPTHS[depth]
    stages: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(3, 64, 7, 2, 3, bias=False), bn1=nn.BatchNorm2d(64), relu=nn.ReLU(inplace=True),
        maxpool=nn.MaxPool2d(3, 2, 1))
    channels = 64
    for i, (planes, count) in enumerate(zip([64, 128, 256, 512][:n_layers], counts), 1):
        blocks = []
        for j in range(count):
            stride = 2 if (j == 0 and i > 1) else 1
            blocks.append(block(channels, planes, stride))
            channels = planes * block.expansion
        stages[f"layer{i}"] = nn.Sequential(*blocks)
    return stages, channels


@register_family(r"resnet(?P<depth>18|34|50)_layer(?P<layer>[1-4])",
                 tuple(f"resnet{d}_layer{i}" for d in (18, 34, 50) for i in range(1, 5)), patch=True)
def resnet_patch(depth: int, layer: int) -> nn.Module:
    stages, channels = _resnet_stages(depth, layer)
    return PatchClassifier(stages, channels)


@register_family(r"resnet(?P<depth>18|34|50)", ("resnet18", "resnet34", "resnet50"), patch=False)
def resnet_full(depth: int) -> nn.Module:
    stages, channels = _resnet_stages(depth, 4)
    return FullImageClassifier(stages, channels)
