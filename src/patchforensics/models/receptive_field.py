"""Analytic receptive fields of patch models.

Each layer maps output index ``i`` (along one axis) to the input interval
``[stride*i + start, stride*i + end]`` (inclusive). Such affine interval maps
compose in closed form, and a residual block's field is the union of its
branches' maps, so the field of a whole network follows from its layer list
without any forward pass. (The seed brute-forced this with gradients and
cached the result; ``tests/models/test_models.py`` checks the two agree.)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from torch import nn

from .registry import create_skeleton

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
    """Geometry of one layer along one axis."""

    kernel: int
    dilation: int
    stride: int
    padding: int

    @property
    def extent(self) -> int:
        return (self.kernel - 1) * self.dilation + 1

    @property
    def map(self) -> AxisMap:
        return AxisMap(self.stride, -self.padding, -self.padding + self.extent - 1)

    def out_len(self, n: int) -> int:
        return (n + 2 * self.padding - self.extent) // self.stride + 1

    def back(self, lo: int, hi: int, n_in: int) -> tuple[int, int]:
        """Output interval -> first and last input pixel its kernel taps read.
        Taps in the padding are not image pixels (and a dilated kernel may skip
        the first or last pixel entirely), so they are enumerated."""
        taps = [self.stride * i - self.padding + self.dilation * j
                for i in range(lo, hi + 1) for j in range(self.kernel)]
        inside = [t for t in taps if 0 <= t < n_in]
        if not inside:  # every tap lands in the padding: only possible for tiny inputs
            return max(0, min(taps)), min(n_in - 1, max(taps))
        return min(inside), max(inside)


# A network along one axis: a list whose items are a _Layer or a list of
# branches (each itself such a list) whose outputs are summed.
Geometry = list


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _geometry(modules, axis: int) -> Geometry:
    geo: Geometry = []
    for m in modules:
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            if getattr(m, "ceil_mode", False):
                raise NotImplementedError("ceil_mode pooling is not supported")
            k, s, p = _pair(m.kernel_size)[axis], _pair(m.stride)[axis], _pair(m.padding)[axis]
            d = _pair(getattr(m, "dilation", 1))[axis]
            geo.append(_Layer(k, d, s, p))
        elif isinstance(m, _PASS_THROUGH):
            continue
        elif hasattr(m, "rf_paths"):
            geo.append([_geometry(path, axis) for path in m.rf_paths()])
        elif isinstance(m, nn.Sequential):
            geo.extend(_geometry(list(m), axis))
        else:
            raise NotImplementedError(f"no receptive-field rule for {type(m).__name__}")
    return geo


def _map(geo: Geometry) -> AxisMap:
    """Composite map, ignoring image borders (union over branches)."""
    total = AxisMap()
    for node in geo:
        if isinstance(node, _Layer):
            total = total.then(node.map)
        else:
            maps = [_map(branch) for branch in node]
            merged = maps[0]
            for m in maps[1:]:
                merged = merged.union(m)
            total = total.then(merged)
    return total


def _lengths(geo: Geometry, n: int) -> list[int]:
    """Input length of every node of ``geo`` followed by the output length."""
    out = [n]
    for node in geo:
        out.append(node.out_len(out[-1]) if isinstance(node, _Layer) else _lengths(node[0], out[-1])[-1])
    return out


def _back(geo: Geometry, lo: int, hi: int, n_in: int) -> tuple[int, int]:
    """Exact input interval read by output interval ``[lo, hi]`` for an input of length ``n_in``."""
    for node, n in zip(reversed(geo), reversed(_lengths(geo, n_in)[:-1])):
        if isinstance(node, _Layer):
            lo, hi = node.back(lo, hi, n)
        else:
            spans = [_back(branch, lo, hi, n) for branch in node]
            lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
    return lo, hi


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of a patch model for one input size.

    ``boxes[y, x] = (top, left, bottom, right)`` (start inclusive, end exclusive)
    is the input window of output ``(y, x)`` as the kernel geometry places it:
    every box has the full field ``size`` and may reach outside the image (the
    zero padding), which is what patch cut-outs use. :meth:`clipped_boxes` gives
    the pixels each output really depends on (borders of intermediate layers
    taken into account), which a gradient brute force reproduces exactly.
    """

    size: tuple[int, int]           # field height, width in pixels
    stride: tuple[int, int]         # pixels between neighbouring outputs
    offset: tuple[int, int]         # input row/col of output (0,0)'s first pixel
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    _exact: tuple[np.ndarray, np.ndarray]   # per axis (n_out, 2) inclusive [lo, hi]

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
        """``(H', W', 4)`` boxes of the input pixels each output actually sees."""
        rows, cols = self._exact
        yy, xx = np.meshgrid(np.arange(len(rows)), np.arange(len(cols)), indexing="ij")
        return np.stack([rows[yy, 0], cols[xx, 0], rows[yy, 1] + 1, cols[xx, 1] + 1], axis=-1)


def receptive_field(model: nn.Module, input_size: int | tuple[int, int]) -> ReceptiveField:
    """Analytic receptive field of a patch model (``model.features`` then its 1×1 head)
    for a square or ``(height, width)`` input.

    >>> rf = receptive_field(create_model("xception_block2"), 128)
    >>> rf.size, rf.stride, rf.output_size
    ((43, 43), (8, 8), (16, 16))
    """
    if not hasattr(model, "head"):
        raise ValueError("receptive fields are defined for patch models only; "
                         "full-image models see the whole input")
    modules = list(model.features) + [model.head]
    maps, out, exact = [], [], []
    for axis, n in enumerate(_pair(input_size)):
        geo = _geometry(modules, axis)
        n_out = _lengths(geo, n)[-1]
        if n_out < 1:
            raise ValueError(f"input {input_size} is too small for this model")
        maps.append(_map(geo))
        out.append(n_out)
        exact.append(np.array([_back(geo, i, i, n) for i in range(n_out)], dtype=np.int64))
    return ReceptiveField((maps[0].size, maps[1].size), (maps[0].stride, maps[1].stride),
                          (maps[0].start, maps[1].start), _pair(input_size), (out[0], out[1]),
                          (exact[0], exact[1]))


@lru_cache(maxsize=64)
def architecture_field(name: str, input_size: int) -> ReceptiveField:
    """:func:`receptive_field` of the registered architecture ``name`` at a square
    ``input_size``: it depends on the layers alone, so no weights are built."""
    return receptive_field(create_skeleton(name), input_size)
