"""Region interventions: pixel edits confined to a mask, to ask which part of a face carries the evidence.

Pure functions on NumPy arrays: images are ``(H, W, 3)`` uint8 RGB, masks ``(H, W)`` floats in
``[0, 1]`` (1 = edited). Every edit is composited through its mask, so a pixel where the mask is
0 keeps its bytes exactly, and an all-zero mask returns the input unchanged.

- :func:`feathered_mask`: the intersection of two images' region maps, feathered inward
  (0 everywhere outside the intersection, so a transplant never reaches past either region);
- :func:`transplant`: the masked pixels taken from another (aligned) image;
- :func:`occlude`: the masked pixels hidden (:data:`OCCLUDE_FILLS`: mean colour, blur, noise);
- :func:`keep_only`: everything but the masked pixels hidden.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

#: how :func:`occlude` hides a region: its mean colour, the image strongly blurred, or Gaussian
#: noise with the region's mean and spread
OCCLUDE_FILLS = ("mean", "blur", "noise")
#: the ``blur`` fill's Gaussian sigma as a share of the image's shorter side (8 px at 128 px)
OCCLUDE_BLUR_SHARE = 1 / 16


def _check_image(img: np.ndarray, name: str = "img") -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must be an (H, W, 3) uint8 RGB array; got "
                         f"{getattr(img, 'shape', type(img).__name__)} {getattr(img, 'dtype', '')}".rstrip())


def _check_mask(mask: np.ndarray, shape: tuple[int, ...]) -> None:
    if not isinstance(mask, np.ndarray) or not np.issubdtype(mask.dtype, np.floating) or mask.shape != shape[:2]:
        raise ValueError(f"mask must be an {shape[:2]} float array in [0, 1] (the image's height and width); got "
                         f"{getattr(mask, 'shape', type(mask).__name__)} {getattr(mask, 'dtype', '')}".rstrip())
    if mask.size and not (mask.min() >= 0.0 and mask.max() <= 1.0):
        raise ValueError(f"mask values must lie in [0, 1]; got {mask.min():g} to {mask.max():g}")


def feathered_mask(a: np.ndarray, b: np.ndarray, feather_px: float = 2.0) -> np.ndarray:
    """The intersection of region maps ``a`` and ``b`` (boolean ``(H, W)``), feathered inward:
    ``(H, W)`` float32 that is exactly 0 outside the intersection and rises to 1 inside it.

    The intersection is eroded by ``r = ceil(feather_px)`` px (a square), then Gaussian-blurred
    within a ``(2r + 1)`` px window (sigma ``r / 2``): the blur cannot reach past the erosion, so
    the ramp lies wholly inside the intersection, 0 at its border and 1 from about ``2r`` px in.
    A region touching the image border is not eroded from there. ``feather_px = 0`` gives the
    hard intersection; an empty intersection all zeros.
    """
    for name, m in (("a", a), ("b", b)):
        if not isinstance(m, np.ndarray) or m.dtype != np.bool_ or m.ndim != 2:
            raise ValueError(f"region map {name} must be an (H, W) boolean array; got "
                             f"{getattr(m, 'shape', type(m).__name__)} {getattr(m, 'dtype', '')}".rstrip())
    if a.shape != b.shape:
        raise ValueError(f"region maps differ in size: {a.shape} and {b.shape}; align both images to one size")
    if not (math.isfinite(feather_px) and feather_px >= 0):
        raise ValueError(f"feather_px must be a number of pixels >= 0; got {feather_px}")
    inter = (a & b).astype(np.float64)
    r = math.ceil(feather_px)
    if r == 0 or not inter.any():
        return inter.astype(np.float32)
    # cv2.erode treats pixels beyond the image as set, so the image border is not a region border
    eroded = cv2.erode(inter, np.ones((2 * r + 1, 2 * r + 1), np.uint8))
    soft = cv2.GaussianBlur(eroded, (2 * r + 1, 2 * r + 1), r / 2, borderType=cv2.BORDER_REPLICATE)
    # float64 so that a window of ones sums to 1 (to float32 precision) deep inside
    return np.clip(soft, 0.0, 1.0).astype(np.float32)


def transplant(dst: np.ndarray, src: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``dst * (1 - mask) + src * mask``, rounded to uint8 ``(H, W, 3)``: ``dst`` with the masked
    pixels of ``src`` (the same aligned coordinates). Where ``mask == 0`` the result is ``dst``
    byte for byte; an all-ones mask gives ``src``."""
    _check_image(dst, "dst")
    _check_image(src, "src")
    if dst.shape != src.shape:
        raise ValueError(f"dst and src differ in size: {dst.shape} and {src.shape}; align both images to one size")
    _check_mask(mask, dst.shape)
    m = mask.astype(np.float64)[..., None]
    out = dst.astype(np.float64) * (1.0 - m) + src.astype(np.float64) * m
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _fill(img: np.ndarray, mask: np.ndarray, fill: str, seed: int) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 image that :func:`occlude` composites in under ``mask``."""
    w = mask.astype(np.float64)[..., None]
    pixels = img.astype(np.float64)
    mean = (pixels * w).sum(axis=(0, 1)) / w.sum()
    if fill == "mean":
        return np.broadcast_to(np.uint8(np.clip(np.rint(mean), 0, 255)), img.shape).copy()
    if fill == "blur":
        sigma = OCCLUDE_BLUR_SHARE * min(img.shape[:2])
        return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    std = np.sqrt(((pixels - mean) ** 2 * w).sum(axis=(0, 1)) / w.sum())
    noise = np.random.default_rng(seed).normal(mean, std, img.shape)
    return np.clip(np.rint(noise), 0, 255).astype(np.uint8)


def occlude(img: np.ndarray, mask: np.ndarray, fill: str, seed: int = 0) -> np.ndarray:
    """``img`` with the masked area hidden by ``fill`` (:data:`OCCLUDE_FILLS`), through the mask:

    - ``mean``: the image's mean colour over the masked area (weighted by the mask);
    - ``blur``: the image Gaussian-blurred with sigma = side / 16 (8 px at 128 px);
    - ``noise``: Gaussian noise per channel with the masked area's mean and standard
      deviation, from a generator seeded with ``seed``.

    Pixels where ``mask == 0`` are untouched; an all-zero mask returns a copy of ``img``.
    """
    if fill not in OCCLUDE_FILLS:
        raise ValueError(f"unknown occlusion fill {fill!r}; use one of {', '.join(OCCLUDE_FILLS)}")
    _check_image(img)
    _check_mask(mask, img.shape)
    if not mask.any():
        return img.copy()
    return transplant(img, _fill(img, mask, fill, seed), mask)


def keep_only(img: np.ndarray, mask: np.ndarray, fill: str, seed: int = 0) -> np.ndarray:
    """``img`` with everything but the masked area hidden: :func:`occlude` under ``1 - mask``."""
    _check_image(img)
    _check_mask(mask, img.shape)
    return occlude(img, (1.0 - mask).astype(mask.dtype), fill, seed)
