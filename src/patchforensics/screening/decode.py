"""How ``detect`` and ``serve`` decode a photo: within a pixel budget, a large JPEG at a reduced size.

An image that would decode to more than ``max_pixels`` (``--max-pixels``, default
:data:`~patchforensics.core.imageio.SCREEN_MAX_PIXELS`) is refused from its header, before
any pixel is decoded. A JPEG whose shorter side is at least twice
:data:`~patchforensics.core.imageio.DRAFT_MIN_SIDE` is decoded at 1/2, 1/4 or 1/8 of its size
(Pillow's draft mode), never below that side; its faces are found and scored in the reduced
pixels and their boxes given back in the file's own pixels (:func:`in_file_pixels`), as for any
other image.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace

from ..core.config import require
from ..core.imageio import DRAFT_MIN_SIDE, MAX_PIXELS, SCREEN_MAX_PIXELS, Decoded, decode_rgb
from .faces import ScoredFace


#: ``--max-pixels`` in words (detect's and serve's help)
MAX_PIXELS_HELP = (f"refuse an image that would decode to more than N pixels, before decoding it (default "
                   f"{SCREEN_MAX_PIXELS}, about 5000x5000; at most {MAX_PIXELS}). A JPEG whose shorter side is "
                   f"{2 * DRAFT_MIN_SIDE} px or more is decoded at 1/2, 1/4 or 1/8 size (never below "
                   f"{DRAFT_MIN_SIDE} px) and counts at that size")


def check_max_pixels(max_pixels: int) -> None:
    """Refuse a ``--max-pixels`` outside ``1 .. MAX_PIXELS`` (the decompression-bomb guard stays)."""
    require(0 < max_pixels <= MAX_PIXELS, "max_pixels",
            f"must be between 1 and {MAX_PIXELS} (the decompression-bomb guard); default {SCREEN_MAX_PIXELS}")


def decode_photo(path: str | os.PathLike, max_pixels: int = SCREEN_MAX_PIXELS) -> Decoded:
    """``path`` decoded for screening (see the module's note); raises
    :class:`~patchforensics.core.imageio.ImageLoadError` with the reason."""
    return decode_rgb(path, max_pixels, DRAFT_MIN_SIDE)


def in_file_pixels(face: ScoredFace, decoded: Decoded) -> ScoredFace:
    """``face`` (found in ``decoded.image``) with its boxes, quad and upscale in the file's pixels
    (boxes rounded outward and clipped to the file's size); itself when the image was decoded whole."""
    if decoded.image.size == decoded.file_size:
        return face
    (sx, sy), (width, height) = decoded.scale, decoded.file_size

    def box(b):
        t, l, bottom, r = b
        return (math.floor(t * sy), math.floor(l * sx), min(height, math.ceil(bottom * sy)),
                min(width, math.ceil(r * sx)))

    quad = None if face.quad is None else [[round(x * sx, 2), round(y * sy, 2)] for x, y in face.quad]
    return replace(face, face_box=box(face.face_box), quad=quad, upscale=round(face.upscale / max(sx, sy), 4),
                   top_patches=[replace(p, box=box(p.box), centre_box=box(p.centre_box)) for p in face.top_patches])
