"""Everyday image edits, one vocabulary for ``test --corrupt``, ``release`` and ``probe``.

A :class:`Corruption` is parsed from ``name[:value]`` (:func:`parse_corruption`): the edits a
photo meets between a generator and a screener (re-compression, resizing, blur, noise,
colour changes, greyscale, flips, small shifts, a painted backdrop). Each takes and returns
an RGB PIL image of the same size and is deterministic: the same image always gets the same
edit (``noise`` seeds its generator from the image's bytes), so a test run is reproducible.
An identity value (``noise:0``, ``hue:0``, ``saturation:1``, ``brightness:1``,
``contrast:1``, ``shift:0``, ``gamma:1``, ``blur:0``) returns the image unchanged, byte for byte.

The training augmentations (``transforms.train_transform``) use the same primitives
(:func:`jpeg`, :func:`gaussian_blur`, :func:`hflip`), so an augmentation and the test-time
edit of the same name are the same pixels.
"""
from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

LANCZOS = Image.Resampling.LANCZOS

#: the painted backdrops: flat colours and the photo's own pixels heavily blurred
BACKDROPS = ("grey", "white", "blue", "blurred")
BACKDROP_COLOURS = {"grey": (128, 128, 128), "white": (255, 255, 255), "blue": (40, 90, 170)}
#: band width and blur radius at a 128-px side, scaled with the side: top, left and right
#: edges, as a studio backdrop frames a head
BACKDROP_BAND_128 = 20
BACKDROP_BLUR_128 = 8
#: the largest ``shift`` in pixels: a few pixels is what re-framing or a crop tool does
MAX_SHIFT = 32


# ------------------------------------------------------------- the edits
def jpeg(im: Image.Image, quality: int) -> Image.Image:
    """JPEG round trip at ``quality`` (PIL encoder, 4:2:0 subsampling)."""
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def gaussian_blur(im: Image.Image, sigma: float) -> Image.Image:
    return im if sigma <= 0 else im.filter(ImageFilter.GaussianBlur(radius=float(sigma)))


def gamma(im: Image.Image, g: float) -> Image.Image:
    """Apply ``out = in ** g`` on [0, 1] intensities."""
    if g == 1:
        return im
    lut = [min(255, int(round(255.0 * (i / 255.0) ** g))) for i in range(256)]
    return im.point(lut * 3)


def hflip(im: Image.Image) -> Image.Image:
    return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def down_up(im: Image.Image, factor: float) -> Image.Image:
    """Resize by ``factor`` (Lanczos), then back to the input size."""
    w, h = im.size
    small = im.resize((max(1, round(w * factor)), max(1, round(h * factor))), LANCZOS)
    return small.resize((w, h), LANCZOS)


def greyscale(im: Image.Image) -> Image.Image:
    """ITU-R 601 luma (PIL's ``L``: 0.299 R + 0.587 G + 0.114 B), kept as 3-channel RGB (R = G = B)."""
    return im.convert("L").convert("RGB")


def add_noise(im: Image.Image, sigma: float) -> Image.Image:
    """Additive Gaussian noise of ``sigma`` (0-255 pixel units), rounded and clipped. The
    generator is seeded from the image's size and bytes: the same image always gets the same noise."""
    if sigma == 0:
        return im
    a = np.asarray(im.convert("RGB"), dtype=np.float64)
    digest = hashlib.sha256(repr(im.size).encode() + im.tobytes()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return Image.fromarray(np.uint8(np.clip(np.rint(a + rng.normal(0.0, sigma, a.shape)), 0, 255)))


# full-range YCbCr (JPEG's): luma is ITU-R 601, as in :func:`greyscale`
_RGB_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)


def rotate_hue(im: Image.Image, degrees: float) -> Image.Image:
    """Rotate every pixel's hue by ``degrees``: its (Cb, Cr) chroma turned by that angle,
    counter-clockwise, with the luma Y kept (up to rounding and clipping to [0, 255])."""
    if degrees == 0:
        return im
    ycc = np.asarray(im.convert("RGB"), dtype=np.float64) @ _RGB_TO_YCC.T
    t = np.deg2rad((degrees + 180.0) % 360.0 - 180.0)      # 180 and -180: one turn, the same pixels
    cb, cr = ycc[..., 1].copy(), ycc[..., 2].copy()
    ycc[..., 1], ycc[..., 2] = cb * np.cos(t) - cr * np.sin(t), cb * np.sin(t) + cr * np.cos(t)
    return Image.fromarray(np.uint8(np.clip(np.rint(ycc @ _YCC_TO_RGB.T), 0, 255)))


def enhance(kind: str, im: Image.Image, factor: float) -> Image.Image:
    """PIL ``ImageEnhance`` ``kind`` (Color, Brightness, Contrast) by ``factor``; 1 = unchanged."""
    return im if factor == 1 else getattr(ImageEnhance, kind)(im).enhance(factor)


def shift(im: Image.Image, px: int) -> Image.Image:
    """Translate right and down by ``px`` pixels (left and up when negative), the edge pixels
    replicated into the uncovered band, so the size stays."""
    px = int(px)
    if px == 0:
        return im
    a, p = np.asarray(im.convert("RGB")), abs(px)
    h, w = a.shape[:2]
    padded = np.pad(a, ((p, p), (p, p), (0, 0)), mode="edge")
    return Image.fromarray(np.ascontiguousarray(padded[p - px:p - px + h, p - px:p - px + w]))


def backdrop_band(side: int) -> int:
    """Width in px of the painted backdrop band on an image of shorter ``side``: 20 px at 128 px."""
    return round(BACKDROP_BAND_128 * side / 128)


def paint_backdrop(im: Image.Image, kind: str) -> Image.Image:
    """``im`` with its top, left and right bands (:func:`backdrop_band`) replaced by a backdrop
    ``kind`` of :data:`BACKDROPS`: a flat colour, or the image itself blurred with radius 8 px at 128 px."""
    w, h = im.size
    side = min(w, h)
    band = backdrop_band(side)
    if kind == "blurred":
        fill = im.filter(ImageFilter.GaussianBlur(radius=BACKDROP_BLUR_128 * side / 128))
    else:
        fill = Image.new("RGB", im.size, BACKDROP_COLOURS[kind])
    mask = Image.new("L", im.size, 0)
    mask.paste(255, (0, 0, w, band))
    mask.paste(255, (0, 0, band, h))
    mask.paste(255, (w - band, 0, w, h))
    return Image.composite(fill, im, mask)


# -------------------------------------------------------------- the grammar
class _Rule(NamedTuple):
    """How one corruption name is applied and what value it accepts.

    ``check``: ``None`` = no value; a tuple = one of these names; else a test of the number."""

    apply: Callable[[Image.Image, float | str | None], Image.Image]
    check: Callable[[float], bool] | tuple[str, ...] | None
    hint: str


_CORRUPTION_RULES: dict[str, _Rule] = {
    "jpeg": _Rule(lambda im, v: jpeg(im, int(v)), lambda v: 1 <= v <= 100,
                  "a quality between 1 and 100, e.g. jpeg:75"),
    "blur": _Rule(gaussian_blur, lambda v: v >= 0, "a Gaussian sigma >= 0 in pixels, e.g. blur:1.0"),
    "gamma": _Rule(gamma, lambda v: v > 0, "a gamma > 0, e.g. gamma:1.2"),
    "resize": _Rule(down_up, lambda v: 0 < v <= 4, "a scale factor in (0, 4], e.g. resize:0.5"),
    "flip": _Rule(lambda im, v: hflip(im), None, "no value: flip"),
    "grey": _Rule(lambda im, v: greyscale(im), None, "no value: grey"),
    "noise": _Rule(add_noise, lambda v: 0 <= v <= 255,
                   "a Gaussian sigma in 0-255 pixel units, e.g. noise:4"),
    "hue": _Rule(rotate_hue, lambda v: -180 <= v <= 180, "a hue rotation in degrees, -180 to 180, e.g. hue:20"),
    "saturation": _Rule(lambda im, v: enhance("Color", im, v), lambda v: v >= 0,
                        "a saturation factor >= 0 (0 = grey, 1 = unchanged), e.g. saturation:1.5"),
    "brightness": _Rule(lambda im, v: enhance("Brightness", im, v), lambda v: v > 0,
                        "a brightness factor > 0 (1 = unchanged), e.g. brightness:1.2"),
    "contrast": _Rule(lambda im, v: enhance("Contrast", im, v), lambda v: v > 0,
                      "a contrast factor > 0 (1 = unchanged), e.g. contrast:0.7"),
    "shift": _Rule(shift, lambda v: v == int(v) and abs(v) <= MAX_SHIFT,
                   f"a whole number of pixels, -{MAX_SHIFT} to {MAX_SHIFT}, right and down, e.g. shift:2"),
    "backdrop": _Rule(paint_backdrop, BACKDROPS, "one of " + ", ".join(BACKDROPS) + ", e.g. backdrop:grey"),
}

#: every corruption name, in the order the grammar lists them
CORRUPTION_NAMES = tuple(_CORRUPTION_RULES)
#: the everyday edits the probe and the evasion table run by default, in this order
EVERYDAY_EDITS = ("jpeg:95", "jpeg:75", "jpeg:50", "resize:0.5", "resize:0.75", "blur:1", "noise:4",
                  "brightness:1.2", "brightness:0.8", "contrast:1.3", "contrast:0.7", "saturation:1.5",
                  "saturation:0.5", "hue:20", "grey", "flip", "shift:2", "shift:4",
                  "backdrop:grey", "backdrop:white", "backdrop:blue", "backdrop:blurred")


@dataclass(frozen=True)
class Corruption:
    """One test-time corruption, e.g. ``jpeg:75``, ``blur:1.0``, ``grey``, ``backdrop:blue``:
    ``value`` is a number, a name (``backdrop``) or ``None`` (``flip``, ``grey``)."""

    kind: str
    value: float | str | None = None

    @property
    def tag(self) -> str:
        """Path-safe: ``jpeg75``, ``blur1.5``, ``backdropgrey``, ``flip``."""
        if self.value is None or isinstance(self.value, str):
            return f"{self.kind}{self.value or ''}"
        return f"{self.kind}{int(self.value)}" if self.kind == "jpeg" else f"{self.kind}{self.value:g}"

    def __str__(self) -> str:
        if self.value is None or isinstance(self.value, str):
            return self.kind if self.value is None else f"{self.kind}:{self.value}"
        return f"{self.kind}:{self.value:g}"

    def apply(self, im: Image.Image) -> Image.Image:
        """The edited RGB image, the size of ``im``."""
        return _CORRUPTION_RULES[self.kind].apply(im, self.value)


def parse_corruption(spec: str) -> Corruption:
    """Parse ``name[:value]``; raises ``ValueError`` saying what is accepted."""
    name, _, raw = spec.strip().partition(":")
    name = name.lower()
    if name not in _CORRUPTION_RULES:
        raise ValueError(f"unknown corruption {spec!r}; use one of "
                         + "; ".join(r.hint for r in _CORRUPTION_RULES.values()))
    check, hint = _CORRUPTION_RULES[name].check, _CORRUPTION_RULES[name].hint
    if check is None:
        if raw:
            raise ValueError(f"corruption {spec!r} takes {hint}")
        return Corruption(name)
    if isinstance(check, tuple):
        if raw.strip().lower() not in check:
            raise ValueError(f"corruption {spec!r} needs {hint}")
        return Corruption(name, raw.strip().lower())
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"corruption {spec!r} needs {hint}") from None
    if not (math.isfinite(value) and check(value)):
        raise ValueError(f"corruption {spec!r} is out of range; it needs {hint}")
    return Corruption(name, value)


def parse_corruptions(specs) -> tuple[Corruption, ...]:
    """Parse a list of specs (each may itself be comma-separated)."""
    if not specs:
        return ()
    if isinstance(specs, str):
        specs = [specs]
    out = []
    for s in specs:
        out.extend(parse_corruption(p) for p in str(s).split(",") if p.strip())
    return tuple(out)


def corruption_tag(corruptions) -> str:
    """Path-safe tag of a corruption list, e.g. ``jpeg75_blur1`` ('' if none)."""
    return "_".join(c.tag for c in corruptions)
