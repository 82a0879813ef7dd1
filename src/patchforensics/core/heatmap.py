"""Heatmaps of per-patch p(fake) maps: one colour convention for every command.

Every heatmap a person sees (``visualize``'s galleries and averages, ``detect``'s
overlays and report, ``serve``'s page, TensorBoard) shows **p(fake)** on one
diverging scale, :data:`COLORMAP`, centred on the decision threshold: **blue = the
real side** (p(fake) below the threshold, darkest at 0), **white = the threshold**,
**red = the fake side** (darkest at 1). A face called real is drawn in blues, one
called fake in reds, whatever the threshold. Each side is stretched linearly
(matplotlib's ``TwoSlopeNorm``), and every picture carries a colour bar, linear in
p(fake), with the threshold marked on it (:func:`with_colorbar`). A checkpoint
without stored thresholds is drawn (and decided) at 0.5.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

#: matplotlib's perceptual diverging map (ColorBrewer red-blue, reversed: red = high p(fake))
COLORMAP = "RdBu_r"
#: the centre of the scale for a model without stored thresholds (where it decides, too)
DEFAULT_CENTRE = 0.5
#: the scale in words, where no single threshold applies (pages over several models)
SCALE_TEXT = ("p(fake) on a blue-white-red scale centred on the decision threshold: blue = real side (0), "
              "white = the threshold (0.5 for a checkpoint without stored thresholds), red = fake side (1)")


def scale_text(threshold: float = DEFAULT_CENTRE, name: str | None = None) -> str:
    """The scale in words for pictures centred on ``threshold`` (``name``: the threshold's name)."""
    named = f" ({name})" if name else ""
    return (f"p(fake): blue = real side (0), white = the threshold {threshold:.3f}{named}, "
            f"red = fake side (1)")


def norm(threshold: float = DEFAULT_CENTRE):
    """The p(fake) -> [0, 1] colour position: 0 -> 0, ``threshold`` -> 0.5, 1 -> 1, linear on each side
    (for matplotlib figures: ``imshow(..., cmap=COLORMAP, norm=norm(t))``)."""
    from matplotlib.colors import TwoSlopeNorm     # matplotlib only once a picture is drawn

    return TwoSlopeNorm(vcenter=float(np.clip(threshold, 1e-6, 1 - 1e-6)), vmin=0.0, vmax=1.0)


@lru_cache(maxsize=1)
def _lut() -> np.ndarray:
    """:data:`COLORMAP` as 256 uint8 RGB entries."""
    import matplotlib

    return np.uint8(np.rint(matplotlib.colormaps[COLORMAP](np.linspace(0, 1, 256))[:, :3] * 255))


def colorize(p_fake: np.ndarray, size: tuple[int, int], threshold: float = DEFAULT_CENTRE,
             normalize: bool = False) -> np.ndarray:
    """``(H', W')`` p(fake) map in [0, 1] -> ``(h, w, 3)`` uint8 RGB at ``size=(w, h)``, on the
    scale centred on ``threshold``.

    ``normalize`` stretches the map to its own min..max first (the seed's
    visualisation, centred on 0.5); otherwise the colours are absolute.
    """
    m = np.asarray(p_fake, dtype=np.float32)
    if normalize:
        m = (m - m.min()) / (m.max() - m.min() + 1e-6)
        threshold = DEFAULT_CENTRE
    m = cv2.resize(np.clip(m, 0, 1), size, interpolation=cv2.INTER_LINEAR)
    position = np.asarray(norm(threshold)(m), dtype=np.float32)
    return _lut()[np.uint8(np.rint(np.clip(position, 0, 1) * 255))]


def overlay(image: Image.Image, p_fake: np.ndarray, alpha: float = 0.45, threshold: float = DEFAULT_CENTRE,
            normalize: bool = False) -> Image.Image:
    """Blend the coloured p(fake) map over the image (same size as the image)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    col = colorize(p_fake, image.size, threshold, normalize).astype(np.float32)
    return Image.fromarray(np.uint8(np.clip(rgb * (1 - alpha) + col * alpha, 0, 255)))


def text_scale(height: int) -> float:
    """OpenCV font scale of labels on a picture ``height`` px tall: text about 2.5% of its height
    (25 px on a 1024-px picture), at least 0.45 (10 px, legible on a 128-px face), so that captions
    and colour-bar labels grow with the picture."""
    return max(0.45, height / 900)


def put_label(a: np.ndarray, text: str, org: tuple[int, int], scale: float, colour=(0, 0, 0),
              outline=(255, 255, 255)) -> None:
    """``text`` in ``colour``, outlined in ``outline``, its baseline starting at ``org``; strokes grow
    with ``scale``."""
    thick = max(1, round(scale * 1.6))
    for t, col in ((thick + 2, outline), (thick, colour)):
        cv2.putText(a, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, col, t, cv2.LINE_AA)


def with_colorbar(image: Image.Image, threshold: float = DEFAULT_CENTRE) -> Image.Image:
    """``image`` with the p(fake) colour bar at its right, on white, as tall as ``image``: linear in
    p(fake) from 1 (top, ``fake``) to 0 (bottom, ``real``), white at ``threshold``, where a tick
    and its value mark it."""
    h = image.height
    scale = text_scale(h)
    bar_w = max(12, h // 40)
    (text_w, text_h), _ = cv2.getTextSize("0.000", cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, round(scale * 1.6)) + 2)
    x0 = image.width + 4
    a = np.full((h, x0 + bar_w + 6 + text_w + 4, 3), 255, dtype=np.uint8)
    a[:, :image.width] = np.asarray(image.convert("RGB"))
    ramp = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None].repeat(bar_w, axis=1)
    a[:, x0:x0 + bar_w] = colorize(ramp, (bar_w, h), threshold)
    tx, gap = x0 + bar_w + 4, text_h + max(2, text_h // 3)
    y_cut = int(round((1 - threshold) * (h - 1)))
    a[max(0, y_cut - 1):y_cut + 1, x0 - 3:x0 + bar_w + 3] = 0         # the threshold's tick
    cut_base = int(np.clip(y_cut + text_h // 2, text_h + 1, h - 2))
    put_label(a, f"{threshold:.3f}", (tx, cut_base), scale)
    for text, base in (("fake", text_h + 1), ("1", text_h + 1 + gap), ("0", h - 3 - gap), ("real", h - 3)):
        if abs(base - cut_base) >= gap and text_h + 1 <= base <= h - 2:     # never over the threshold's value
            put_label(a, text, (tx, base), scale)
    return Image.fromarray(a)


def heatmap_figure(image: Image.Image, p_fake: np.ndarray, alpha: float = 0.45,
                   threshold: float = DEFAULT_CENTRE) -> Image.Image:
    """The p(fake) map over ``image``, with its colour bar, centred on ``threshold``."""
    return with_colorbar(overlay(image, p_fake, alpha, threshold), threshold)


def draw_border(image: Image.Image, correct: bool, label: str | None = None, width: int = 3) -> Image.Image:
    """Green border when the decision is right, red when wrong, optional caption."""
    a = np.array(image.convert("RGB"))
    color = (0, 200, 0) if correct else (230, 0, 0)
    cv2.rectangle(a, (0, 0), (a.shape[1] - 1, a.shape[0] - 1), color, width)
    if label:
        scale = text_scale(a.shape[0])
        put_label(a, label, (5, 5 + cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][1]), scale,
                  (255, 255, 255), (0, 0, 0))
    return Image.fromarray(a)
