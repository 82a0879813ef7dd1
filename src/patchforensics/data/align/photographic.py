"""Whether an aligned face is a photograph: a drawing, a cartoon or a flat-colour picture is flat where a photo has texture.

mediapipe finds faces in drawings too (PIL ellipses on a flat backdrop, a cartoon
with outlines), and a patch detector scores them like any face: a drawn face came
out "real" at p(fake) 0.05. Skin in a photograph varies from pixel to pixel (sensor
noise, pores, shading, JPEG's own noise), even enlarged or blurred; a drawing's fills
are constant. So the centre of the aligned face (skin, eyes, nose, mouth) is
measured: the share of its pixels in whose 3 x 3 neighbourhood no channel moves by
more than :data:`FLAT_SPREAD`. Blown-out white and crushed black pixels do not count
as flat: a photo clips there too (a bright flash), and they are no drawing's mark.
The measurements behind :data:`MAX_FLAT_SHARE`: docs/detect.md, "Drawings and other
faces that are not photographs".
"""
from __future__ import annotations

import cv2
import numpy as np

#: a pixel is flat when no channel of its 3 x 3 neighbourhood spans more than this (grey levels)
FLAT_SPREAD = 1
#: a face whose centre is at least this share flat is not a photograph: of 4,506 aligned shared faces
#: (all splits, fakes included) at most 0.18, of the 304 wild-portrait faces 0.05; drawings >= 0.35
MAX_FLAT_SHARE = 0.25
#: a pixel whose channels are all at or below the first, or all at or above the second, is clipped
CLIPPED = (5, 250)


def flat_share(face: np.ndarray) -> float:
    """The share of the middle half (across and down) of an aligned ``(S, S, 3)`` uint8 face
    that is flat and not clipped (0: all texture, 1: one flat fill)."""
    side = face.shape[0]
    centre = np.ascontiguousarray(face[side // 4: side - side // 4, side // 4: side - side // 4])
    kernel = np.ones((3, 3), np.uint8)
    spread = (cv2.dilate(centre, kernel).astype(np.int16) - cv2.erode(centre, kernel)).max(axis=2)
    clipped = (centre.max(axis=2) <= CLIPPED[0]) | (centre.min(axis=2) >= CLIPPED[1])
    return float(((spread <= FLAT_SPREAD) & ~clipped).mean())


def is_photographic(face: np.ndarray) -> bool:
    """Whether an aligned ``(S, S, 3)`` uint8 face looks like a photograph (:func:`flat_share`
    under :data:`MAX_FLAT_SHARE`)."""
    return flat_share(face) < MAX_FLAT_SHARE
