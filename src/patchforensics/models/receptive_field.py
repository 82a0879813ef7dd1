"""Analytic receptive fields of patch models.

Each layer maps output index ``i`` (along one axis) to the input interval
``[stride*i + start, stride*i + end]`` (inclusive). Such affine interval maps
compose in closed form, and a residual block's field is the union of its
branches' maps, so the field of a whole network follows from its layer list
without any forward pass. (The seed brute-forced this with gradients and
cached the result; ``tests/test_receptive_field.py`` checks the two agree.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

_PASS_THROUGH = (nn.BatchNorm2d, nn.ReLU, nn.Identity, nn.Dropout, nn.LeakyReLU, nn.Sigmoid)


@dataclass(frozen=True)
class AxisMap:
    """Output index ``i`` sees input ``[stride*i + start, stride*i + end]`` along one axis."""

    stride: int = 1
    start: int = 0
    end: int = 0

    def then(self, outer: "AxisMap") -> "AxisMap":
        """The map of ``outer`` applied after ``self`` (self is closer to the input)."""
        return AxisMap(self.stride * outer.stride,
                       self.stride * outer.start + self.start,
                       self.stride * outer.end + self.end)

    def union(self, other: "AxisMap") -> "AxisMap":
        if self.stride != other.stride:
            raise ValueError("branches with different strides cannot be merged")
        return AxisMap(self.stride, min(self.start, other.start), max(self.end, other.end))

    @property
    def size(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class _Layer:
    """Per-axis geometry of one layer plus how to compute its output length."""

    maps: tuple[AxisMap, AxisMap]
    # (kernel_extent, stride, padding) per axis, or None for size-preserving layers
    shape: tuple[tuple[int, int, int], tuple[int, int, int]] | None


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _layer_geometry(module: nn.Module) -> list[_Layer] | None:
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k, s, p = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
        d = _pair(getattr(module, "dilation", 1))
        if getattr(module, "ceil_mode", False):
            raise NotImplementedError("ceil_mode pooling is not supported")
        ext = tuple((k[a] - 1) * d[a] + 1 for a in range(2))
        maps = tuple(AxisMap(s[a], -p[a], -p[a] + ext[a] - 1) for a in range(2))
        return [_Layer(maps, tuple((ext[a], s[a], p[a]) for a in range(2)))]
    if isinstance(module, _PASS_THROUGH):
        return []
    return None


def _compose(modules) -> tuple[tuple[AxisMap, AxisMap], list]:
    """Compose the maps of a chain of modules; also return a size function list."""
    maps = (AxisMap(), AxisMap())
    sizes: list = []
    for m in modules:
        geo = _layer_geometry(m)
        if geo is not None:
            for layer in geo:
                maps = (maps[0].then(layer.maps[0]), maps[1].then(layer.maps[1]))
                sizes.append(layer.shape)
            continue
        if hasattr(m, "rf_paths"):
            branch_maps, branch_sizes = None, None
            for path in m.rf_paths():
                bm, bs = _compose(path)
                branch_maps = bm if branch_maps is None else (
                    branch_maps[0].union(bm[0]), branch_maps[1].union(bm[1]))
                branch_sizes = branch_sizes or bs  # all branches give the same output size
            maps = (maps[0].then(branch_maps[0]), maps[1].then(branch_maps[1]))
            sizes.extend(branch_sizes)
        elif isinstance(m, nn.Sequential):
            sm, ss = _compose(list(m))
            maps = (maps[0].then(sm[0]), maps[1].then(sm[1]))
            sizes.extend(ss)
        else:
            raise NotImplementedError(f"no receptive-field rule for {type(m).__name__}")
    return maps, sizes


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of a patch model for one input size.

    ``boxes[y, x] = (top, left, bottom, right)``: the input rows/cols (inclusive
    start, exclusive end) seen by output position ``(y, x)``. Boxes may reach
    outside the image (into the padding); :meth:`clipped_boxes` cuts them to it.
    """

    size: tuple[int, int]           # field height, width in pixels
    stride: tuple[int, int]         # pixels between neighbouring outputs
    offset: tuple[int, int]         # input row/col of output (0,0)'s first pixel
    input_size: tuple[int, int]
    output_size: tuple[int, int]

    @property
    def boxes(self) -> np.ndarray:
        """``(H', W', 4)`` int array of ``(top, left, bottom, right)``."""
        ys = self.offset[0] + self.stride[0] * np.arange(self.output_size[0])
        xs = self.offset[1] + self.stride[1] * np.arange(self.output_size[1])
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        return np.stack([yy, xx, yy + self.size[0], xx + self.size[1]], axis=-1)

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        return tuple(int(v) for v in self.boxes[y, x])

    def clipped_boxes(self) -> np.ndarray:
        b = self.boxes.copy()
        b[..., 0:3:2] = np.clip(b[..., 0:3:2], 0, self.input_size[0])
        b[..., 1:4:2] = np.clip(b[..., 1:4:2], 0, self.input_size[1])
        return b


def receptive_field(model: nn.Module, input_size: int | tuple[int, int]) -> ReceptiveField:
    """Analytic receptive field of a patch model (``model.features`` then the 1×1 head).

    >>> rf = receptive_field(create_model("xception_block2"), 128)
    >>> rf.size, rf.output_size
    """
    if not hasattr(model, "head"):
        raise ValueError("receptive fields are defined for patch models only; "
                         "full-image models see the whole input")
    (my, mx), sizes = _compose(list(model.features) + [model.head])
    h, w = _pair(input_size)
    out = [h, w]
    for shape in sizes:
        if shape is None:
            continue
        for a in range(2):
            ext, s, p = shape[a]
            out[a] = (out[a] + 2 * p - ext) // s + 1
    if min(out) < 1:
        raise ValueError(f"input {h}x{w} is too small for this model")
    return ReceptiveField((my.size, mx.size), (my.stride, mx.stride), (my.start, mx.start),
                          (h, w), (out[0], out[1]))
