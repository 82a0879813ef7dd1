"""WideNet: one wide strided convolution and 1x1 layers (``widenet_kw7_d1`` …), a shallow
patch model whose receptive field is set by its kernel and dilation alone."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .classifiers import PatchClassifier
from .registry import register_family


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
