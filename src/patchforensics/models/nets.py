"""The model families: Xception, ResNet and WideNet, each as a full-image
baseline or truncated after an early stage into a patch classifier.

Hand-written in plain PyTorch rather than taken from timm/torchvision: those
packages pull a multi-GB CUDA build of torch on this platform, and the seed's
truncation points (Xception blocks, ResNet layers) need the stages as named
modules anyway.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .layers import BasicBlock, Bottleneck, GlobalAvgPool, SeparableConv2d, XceptionBlock
from .registry import register_family


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


# ---------------------------------------------------------------- Xception
# (in, out, reps, stride, start_with_relu, grow_first) for blocks 1..12.
_XCEPTION_BLOCKS = [(64, 128, 2, 2, False, True), (128, 256, 2, 2, True, True),
                    (256, 728, 2, 2, True, True)] + [(728, 728, 3, 1, True, True)] * 8 + [
                       (728, 1024, 2, 2, True, False)]


def _xception_stages(n_blocks: int) -> tuple["OrderedDict[str, nn.Module]", int]:
    stages: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(3, 32, 3, 2, 0, bias=False), bn1=nn.BatchNorm2d(32), relu1=nn.ReLU(inplace=True),
        conv2=nn.Conv2d(32, 64, 3, bias=False), bn2=nn.BatchNorm2d(64), relu2=nn.ReLU(inplace=True))
    channels = 64
    for i, (cin, cout, reps, stride, relu_first, grow) in enumerate(_XCEPTION_BLOCKS[:n_blocks], 1):
        stages[f"block{i}"] = XceptionBlock(cin, cout, reps, stride, relu_first, grow)
        channels = cout
    return stages, channels


@register_family(r"xception_block(?P<block>[1-5])",
                 tuple(f"xception_block{i}" for i in range(1, 6)), patch=True)
def xception_patch(block: int) -> nn.Module:
    stages, channels = _xception_stages(block)
    return PatchClassifier(stages, channels)


@register_family(r"xception", ("xception",), patch=False)
def xception_full() -> nn.Module:
    stages, _ = _xception_stages(12)
    stages.update(conv3=SeparableConv2d(1024, 1536), bn3=nn.BatchNorm2d(1536), relu3=nn.ReLU(inplace=True),
                  conv4=SeparableConv2d(1536, 2048), bn4=nn.BatchNorm2d(2048), relu4=nn.ReLU(inplace=True))
    return FullImageClassifier(stages, 2048)


# ------------------------------------------------------------------ ResNet
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


# ----------------------------------------------------------------- WideNet
@register_family(r"widenet_kw(?P<kernel>[1-9][0-9]?)_d(?P<dilation>[1-9])",
                 ("widenet_kw7_d1", "widenet_kw7_d2", "widenet_kw3_d1", "widenet_kw5_d1"), patch=True)
def widenet(kernel: int, dilation: int) -> nn.Module:
    """One wide strided conv (256 channels), max-pool, then 1×1 layers: a shallow
    patch model whose field is set by ``kernel`` and ``dilation``."""
    stages = OrderedDict(
        conv=nn.Conv2d(3, 256, kernel, stride=2, padding=kernel // 2, dilation=dilation, bias=False),
        bn=nn.BatchNorm2d(256), relu=nn.ReLU(inplace=True), pool=nn.MaxPool2d(3, 2, 1),
        fc1=nn.Conv2d(256, 256, 1), relu1=nn.ReLU(inplace=True),
        fc2=nn.Conv2d(256, 256, 1), relu2=nn.ReLU(inplace=True))
    return PatchClassifier(stages, 256)
