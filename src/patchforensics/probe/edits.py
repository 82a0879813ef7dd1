"""Each intervention's edited image of one face: what is scored, and the mask of what it may change.

The pixel work is :mod:`patchforensics.data.interventions` (transplant, occlude, keep only)
and the corruptions of :mod:`patchforensics.data.corruptions`; this module picks the masks:
a transplant's is the feathered intersection of both faces' region maps, an occlusion's the
feathered region of the face itself. The feather lies inside the region (the mask is eroded
first), so a region only a few pixels thick at 128 px (a brow, an eye) is feathered less, down
to a hard edge, rather than erased: :func:`region_mask`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from ..data.interventions import feathered_mask, keep_only, occlude, transplant
from .inputs import Face
from .registry import Intervention

#: why an intervention was not made on a face (counted per intervention and class)
NO_FACE = "no_face"             # the segmenter found no face in it (or in no partner)
NO_REGION = "no_region"         # the region is absent (transplant: no overlap with the partner's)
SKIP_REASONS = (NO_FACE, NO_REGION)
#: a feathered mask keeps at least this share of the hard intersection's pixels (its sum), else a smaller
#: feather is used
MIN_KEPT = 0.5


@dataclass(frozen=True)
class Edit:
    """An edited face: ``image`` ``(S, S, 3)`` uint8; ``mask`` ``(S, S)`` float32 in [0, 1], where
    pixels may have changed (``None``: anywhere, a whole-image edit)."""

    image: np.ndarray
    mask: np.ndarray | None = None


def region_mask(a: np.ndarray, b: np.ndarray, feather_px: float) -> np.ndarray:
    """``(H, W)`` float32: :func:`~patchforensics.data.interventions.feathered_mask` of the boolean
    region maps ``a`` and ``b`` with the largest feather of ``feather_px``, 1 px and 0 (a hard
    edge), no larger than ``feather_px``, whose mask keeps :data:`MIN_KEPT` of the intersection."""
    hard = float(np.count_nonzero(a & b))
    for feather in sorted({feather_px, min(feather_px, 1.0)} - {0.0}, reverse=True):
        mask = feathered_mask(a, b, feather)
        if mask.sum() >= MIN_KEPT * hard:
            return mask
    return feathered_mask(a, b, 0.0)


def edit_face(iv: Intervention, face: Face, partner: Face | None, region_ids: dict[str, int], seed: int = 0,
              feather_px: float = 2.0) -> Edit | str:
    """The edited ``face`` for ``iv`` (``partner``: the paired face of a transplant), or the
    reason it cannot be made (:data:`SKIP_REASONS`). ``seed`` seeds a noise fill."""
    if iv.family == "identity":
        return Edit(face.image)
    if iv.family == "edit":
        return Edit(np.asarray(iv.corruption.apply(Image.fromarray(face.image)), dtype=np.uint8))
    if face.regions is None or (iv.paired and partner is None):
        return NO_FACE
    own = face.regions == region_ids[iv.region]
    other = partner.regions == region_ids[iv.region] if iv.paired else own
    mask = region_mask(own, other, feather_px)
    if not mask.any():
        return NO_REGION
    if iv.paired:
        return Edit(transplant(face.image, partner.image, mask), mask)
    if iv.family == "keep":
        return Edit(keep_only(face.image, mask, iv.fill, seed=seed), 1.0 - mask)
    return Edit(occlude(face.image, mask, iv.fill, seed=seed), mask)


def edits(iv: Intervention, faces: Sequence[Face], partners: Sequence[Face | None] | None,
          region_ids: dict[str, int], seed: int = 0, feather_px: float = 2.0) -> Iterator[tuple[int, Edit | str]]:
    """``(index, edit or skip reason)`` for every face, in order: the images the probe scores."""
    for i, face in enumerate(faces):
        partner = partners[i] if partners is not None else None
        yield i, edit_face(iv, face, partner, region_ids, seed + i, feather_px)
