"""Where a model input lies in its photo: the centred-square window, the alignment's map, boxes mapped back.

Boxes are ``(top, left, bottom, right)`` px, bottom/right exclusive; affine maps are (2, 3)
arrays acting on ``(x, y)`` px. The geometry: docs/detect.md, "How boxes map back to the
original image".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from ..data.align import AlignedFace, output_to_source
from ..data.transforms import TransformConfig


@dataclass(frozen=True)
class InputWindow:
    """Where the model input sits in the original image.

    The model sees ``side x side`` pixels: the original's region
    ``[top, top + side*scale_y) x [left, left + side*scale_x)`` in original pixels
    (``top``/``left`` also in original pixels).
    """

    width: int          # original image size, px
    height: int
    side: int           # model input side, px
    left: float         # window origin in original px
    top: float
    scale_x: float      # original px per model-input px
    scale_y: float

    @property
    def affine(self) -> np.ndarray:
        """(2, 3) map from model-input px ``(x, y)`` to original px."""
        return np.array([[self.scale_x, 0.0, self.left], [0.0, self.scale_y, self.top]])

    def to_original(self, box: Sequence[float]) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` in model-input px -> original px (rounded
        outward, clipped to the image)."""
        return map_box(self.affine, box, self.width, self.height)


def map_point(affine: np.ndarray, x: float, y: float) -> tuple[float, float]:
    """``(x, y)`` through a (2, 3) affine map."""
    return tuple(float(v) for v in np.asarray(affine) @ np.array([x, y, 1.0]))


def map_box(affine: np.ndarray, box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """A ``(top, left, bottom, right)`` box through a (2, 3) affine map of ``(x, y)``
    px: the bounding rectangle of its mapped corners, rounded outward and clipped
    to a ``width x height`` image. Always a valid box inside the image
    (``0 <= top < bottom <= height``, the same across): one mapped wholly outside
    the image becomes the one-pixel strip of the image's edge nearest to it."""
    t, l, b, r = (float(v) for v in box)
    xs, ys = zip(*(map_point(affine, x, y) for x, y in ((l, t), (r, t), (r, b), (l, b))))
    top = min(max(0, int(np.floor(min(ys)))), height - 1)
    left = min(max(0, int(np.floor(min(xs)))), width - 1)
    bottom = max(min(height, int(np.ceil(max(ys)))), top + 1)
    right = max(min(width, int(np.ceil(max(xs)))), left + 1)
    return top, left, bottom, right


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The (2, 3) affine map ``outer ∘ inner`` (``inner`` first)."""
    return np.column_stack([outer[:, :2] @ inner[:, :2], outer[:, :2] @ inner[:, 2] + outer[:, 2]])


def input_window(width: int, height: int, tcfg: TransformConfig) -> InputWindow:
    """The crop window of ``transforms.eval_image`` for an image of ``width x height``."""
    size = tcfg.load_size
    # resize_shorter: shorter side -> load_size, longer side rounded, never below 1
    if min(width, height) == size:
        w_r, h_r = width, height
    elif width <= height:
        w_r, h_r = size, max(1, round(height * size / width))
    else:
        w_r, h_r = max(1, round(width * size / height)), size
    side = tcfg.load_size if tcfg.patch_model else tcfg.fine_size
    left_r, top_r = int(round((w_r - side) / 2.0)), int(round((h_r - side) / 2.0))   # center_crop
    sx, sy = width / w_r, height / h_r
    return InputWindow(width, height, side, left_r * sx, top_r * sy, sx, sy)


@dataclass(frozen=True)
class Placement:
    """Where one model input lies in its photo: ``to_original`` maps model-input px
    ``(x, y)`` (``side`` x ``side``) to photo px; the photo is ``width x height``;
    ``face_box`` ``(top, left, bottom, right)`` in photo px; ``quad`` the aligned
    square's corners ``(x, y)`` in photo px (found faces only)."""

    to_original: np.ndarray
    side: int
    width: int
    height: int
    face_box: tuple[int, int, int, int]
    quad: np.ndarray | None = None

    def inside_photo(self) -> np.ndarray:
        """``(side, side)`` bool: the model-input pixels whose centre falls inside the photo
        (the others are the fill alignment adds where its square leaves the photo)."""
        centres = np.arange(self.side) + 0.5
        xs, ys = np.meshgrid(centres, centres)
        a = self.to_original
        px = a[0, 0] * xs + a[0, 1] * ys + a[0, 2]
        py = a[1, 0] * xs + a[1, 1] * ys + a[1, 2]
        return (px >= 0) & (px < self.width) & (py >= 0) & (py < self.height)

    def patch_fill(self, boxes: np.ndarray) -> np.ndarray:
        """``(P,)`` share of each ``(top, left, bottom, right)`` model-input box that is fill."""
        outside = np.pad(np.cumsum(np.cumsum(~self.inside_photo(), 0), 1), ((1, 0), (1, 0)))   # summed-area table
        t, l, b, r = (boxes[:, k] for k in range(4))
        counts = outside[b, r] - outside[t, r] - outside[b, l] + outside[t, l]
        return counts / np.maximum((b - t) * (r - l), 1)

    def upscale(self) -> float:
        """Model-input px per photo px: above 1 the face was smaller than the model's input and
        was enlarged to be scored."""
        return float(1.0 / np.sqrt(abs(np.linalg.det(self.to_original[:, :2]))))


def as_is(image: Image.Image, window: InputWindow) -> Placement:
    """An image scored as it is: the model sees its centred square (``window``)."""
    return Placement(window.affine, window.side, image.width, image.height,
                     window.to_original((0, 0, window.side, window.side)))


def on_photo(face: AlignedFace, window: InputWindow, width: int, height: int) -> Placement:
    """A face found in a ``width x height`` photo and aligned: the window of its aligned
    picture followed by the alignment's aligned-to-photo map; its box is the mesh's extent."""
    to_original = compose(output_to_source(face.quad, window.width), window.affine)
    x0, y0, x1, y1 = face.box
    # the mesh may reach past the photo's edge (a face cut by it): clipped like every box
    face_box = map_box(np.eye(2, 3), (y0, x0, y1, x1), width, height)
    return Placement(to_original, window.side, width, height, face_box, face.quad)
