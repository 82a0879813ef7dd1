"""Xception (Chollet 2017) as the seed used it: the full network, or cut after block 1-5
(``xception_block2`` …) into a patch classifier.

Hand-written in plain PyTorch rather than taken from timm: it would pull a multi-GB CUDA
build of torch on this platform, and the seed's truncation points need the blocks as
named modules anyway.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .classifiers import FullImageClassifier, PatchClassifier
from .registry import register_family


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
