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
#: a face whose examined pixels hold less colour than this (mean chroma, :func:`mean_chroma`) is
#: greyscale or nearly so, where the detector misses most fakes: measured on the shared test fakes it
#: flags in colour, desaturated step by step, it still flags 19% of the StyleGAN ones between 6 and 8
#: and 33% between 8 and 10 (docs/detect.md, "Greyscale photos")
GREYSCALE_MAX_CHROMA = 8.0
#: the caveat of such a face (:attr:`ScoredFace.caveat`)
GREYSCALE_CAVEAT = "greyscale: the detector does not see fakes reliably without colour"
#: the rule of a face's top patches: the highest p(fake) first, then, most suspicious first, those
#: within PICK_MARGIN of it whose centre regions overlap every earlier pick's by at most PICK_MAX_IOU
#: (neighbouring patches share most of their field: without it the picks are one spot); fewer
#: picks rather than less suspicious ones (docs/detect.md, "The most suspicious patches")
PICK_MARGIN = 0.1
PICK_MAX_IOU = 0.25


def verdict_at(p_fake: float, p_fake_threshold: float) -> str:
    """``fake`` when ``p_fake >= p_fake_threshold``, else ``real``."""
    return VERDICTS[0] if p_fake >= p_fake_threshold else VERDICTS[1]


def mean_chroma(image: Image.Image, mask: np.ndarray | None = None) -> float:
    """The mean distance from grey of an RGB image's pixels (those of ``mask`` when given):
    ``sqrt(Cb² + Cr²)`` of its YCbCr (ITU-R BT.601, 8-bit), 0 for a greyscale picture."""
    ycbcr = np.asarray(image.convert("YCbCr"), dtype=np.float64)
    chroma = np.hypot(ycbcr[..., 1] - 128.0, ycbcr[..., 2] - 128.0)
    return float(chroma[mask].mean() if mask is not None and mask.any() else chroma.mean())


def colour_caveat(image: Image.Image, mask: np.ndarray | None = None) -> str | None:
    """:data:`GREYSCALE_CAVEAT` for an image (its ``mask`` pixels) under :data:`GREYSCALE_MAX_CHROMA`, else None."""
    return GREYSCALE_CAVEAT if mean_chroma(image, mask) < GREYSCALE_MAX_CHROMA else None


def _doc(text: str):
    """A field with its description (``serve``'s API schema reads it: :func:`field_description`)."""
    return field(metadata={"description": text})


def field_description(record: type, name: str) -> str:
    """The description of the field ``name`` of :class:`Patch` or :class:`ScoredFace`."""
    return next(f.metadata["description"] for f in fields(record) if f.name == name)


@dataclass
class Patch:
    """One patch of a face: its receptive field's box, its own p(fake), and its centre region,
    where to look (the field's middle half: about half of what moves the patch's score lies
    there, docs/detect.md "The most suspicious patches")."""

    box: tuple[int, int, int, int] = _doc("[top, left, bottom, right] in original px, always inside the image")
    input_box: tuple[int, int, int, int] = _doc("[top, left, bottom, right] in model-input px")
    p_fake: float = _doc("this patch's own p(fake)")
    centre_box: tuple[int, int, int, int] = _doc(
        "where to look: the middle of the patch's box (half its height and width), [top, left, bottom, right] "
        "in original px, inside box")
    input_centre_box: tuple[int, int, int, int] = _doc("centre_box in model-input px")


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
    top_patches: list[Patch] = _doc(
        f"the most suspicious patches, most suspicious first: the highest p(fake), then others within "
        f"{PICK_MARGIN:g} of it whose centre regions overlap each earlier one's by at most IoU {PICK_MAX_IOU:g} "
        "(at most top-k, fewer when fewer qualify; none mostly in the fill)")
    fill_share: float = _doc("share of the examined square outside the photo (alignment fill), 4 decimals")
    upscale: float = _doc("model-input px per photo px (above 1: a small face, enlarged to be scored), 4 decimals")
    quad: list[list[float]] | None = _doc(
        "the aligned square's corners (x, y) in original px, 2 decimals (top-left, bottom-left, bottom-right, "
        "top-right); null for an image taken as one aligned face")
    caveat: str | None = _doc(
        f"null, or why the verdict is not to be trusted as it stands: '{GREYSCALE_CAVEAT}' when the examined "
        f"face is greyscale or nearly (mean chroma of its pixels in the photo under {GREYSCALE_MAX_CHROMA:g})")
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

