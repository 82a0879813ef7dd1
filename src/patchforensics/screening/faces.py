"""One scored face: the record that ``detect``'s table, JSON and CSV, the report and ``serve`` are written from.

Its numbers are the ones every output shows (``fill_share`` and ``upscale`` to 4
decimals, ``quad`` to 2), so they all say the same; the pictures are drawn from
its :class:`FaceMaps`, which ``detect`` drops once they are drawn.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
from PIL import Image

#: a face's decision at the threshold
VERDICTS = ("fake", "real")


def verdict_at(p_fake: float, p_fake_threshold: float) -> str:
    """``fake`` when ``p_fake >= p_fake_threshold``, else ``real``."""
    return VERDICTS[0] if p_fake >= p_fake_threshold else VERDICTS[1]


def _doc(text: str):
    """A field with its description (``serve``'s API schema reads it: :func:`field_description`)."""
    return field(metadata={"description": text})


def field_description(record: type, name: str) -> str:
    """The description of the field ``name`` of :class:`Patch` or :class:`ScoredFace`."""
    return next(f.metadata["description"] for f in fields(record) if f.name == name)


@dataclass
class Patch:
    """One patch of a face: its receptive field's box and its own p(fake)."""

    box: tuple[int, int, int, int] = _doc("[top, left, bottom, right] in original px, always inside the image")
    input_box: tuple[int, int, int, int] = _doc("[top, left, bottom, right] in model-input px")
    p_fake: float = _doc("this patch's own p(fake)")


@dataclass(frozen=True)
class FaceMaps:
    """What a face's pictures are drawn from: ``input_image`` the model input (``S x S``),
    ``patch_p_fake`` the ``(H', W')`` per-patch p(fake) map, ``to_original`` the (2, 3)
    map from model-input px ``(x, y)`` to the original image, ``inside_photo`` ``(S, S)``
    bool: the model-input pixels that come from the photo (the others are alignment fill)."""

    input_image: Image.Image
    patch_p_fake: np.ndarray
    to_original: np.ndarray
    inside_photo: np.ndarray


@dataclass
class ScoredFace:
    """One face (or image taken as one aligned face), scored. Boxes are ``(top, left, bottom,
    right)`` in pixels of the original image, bottom/right exclusive, always inside it."""

    index: int = _doc("0 = the largest face of its image (0 for an image taken as one aligned face)")
    p_fake: float = _doc("1 - P(real), P(real) the mean of the per-patch softmax (after_softmax), patches "
                                "mostly in the alignment fill left out")
    verdict: str = _doc("fake when p_fake >= the threshold, else real")
    face_box: tuple[int, int, int, int] = _doc(
        "[top, left, bottom, right] in original px: the face mesh's extent for a found face, the "
        "examined square for an aligned input")
    top_patches: list[Patch] = _doc("the most suspicious patches, most suspicious first (none mostly in the fill)")
    fill_share: float = _doc("share of the examined square outside the photo (alignment fill), 4 decimals")
    upscale: float = _doc("model-input px per photo px (above 1: a small face, enlarged to be scored), 4 decimals")
    quad: list[list[float]] | None = _doc(
        "the aligned square's corners (x, y) in original px, 2 decimals (top-left, bottom-left, bottom-right, "
        "top-right); null for an image taken as one aligned face")
    maps: FaceMaps | None = field(default=None, repr=False)

    @property
    def is_fake(self) -> bool:
        return self.verdict == VERDICTS[0]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The most suspicious patch's box."""
        return self.top_patches[0].box

    @property
    def box_p_fake(self) -> float:
        """The most suspicious patch's own p(fake)."""
        return self.top_patches[0].p_fake

    @property
    def notes(self) -> list[str]:
        """What a reader should know about how this face was scored (``fill 23%``, ``upscaled 2.1x``)."""
        return ([f"fill {self.fill_share:.0%}"] if self.fill_share >= 0.005 else []) + \
               ([f"upscaled {self.upscale:.2f}x"] if self.upscale > 1 else [])

    def without_maps(self) -> "ScoredFace":
        """The record alone, its pictures drawn (a folder's worth of faces kept without their pixels)."""
        return replace(self, maps=None)

