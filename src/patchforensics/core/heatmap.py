"""Heatmaps of per-patch p(fake) maps: one colour convention for every command.

Every heatmap a person sees (``visualize``'s galleries and averages, ``detect``'s
overlays, ``serve``'s page, the report, TensorBoard) shows **p(fake)** on one
absolute JET scale: **red = 1 (fake-looking), blue = 0 (real-looking)**, and
carries a colour bar saying so (:func:`with_colorbar`).
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

#: the words printed on every colour bar and in every page's legend
SCALE_TEXT = "p(fake): red = fake-looking (1), blue = real-looking (0)"


def colorize(p_fake: np.ndarray, size: tuple[int, int], normalize: bool = False) -> np.ndarray:
    """``(H', W')`` p(fake) map in [0, 1] -> ``(h, w, 3)`` uint8 JET colours at ``size=(w, h)``.

    ``normalize`` stretches the map to its own min..max first (the seed's
    visualisation); otherwise 0 = blue (real-looking) and 1 = red (fake-looking) everywhere.
    """
    m = np.asarray(p_fake, dtype=np.float32)
    if normalize:
        m = (m - m.min()) / (m.max() - m.min() + 1e-6)
    m8 = np.uint8(np.clip(m, 0, 1) * 255)
    m8 = cv2.resize(m8, size, interpolation=cv2.INTER_LINEAR)
    return cv2.applyColorMap(m8, cv2.COLORMAP_JET)[:, :, ::-1]


def overlay(image: Image.Image, p_fake: np.ndarray, alpha: float = 0.45,
            normalize: bool = False) -> Image.Image:
    """Blend the coloured p(fake) map over the image (same size as the image)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    col = colorize(p_fake, image.size, normalize).astype(np.float32)
    return Image.fromarray(np.uint8(np.clip(rgb * (1 - alpha) + col * alpha, 0, 255)))


def _label(a: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
    for thick, col in ((3, (255, 255, 255)), (1, (0, 0, 0))):
        cv2.putText(a, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, col, thick, cv2.LINE_AA)


def with_colorbar(image: Image.Image, bar_width: int = 12) -> Image.Image:
    """``image`` with the p(fake) colour bar at its right: red at the top (``fake 1``),
    blue at the bottom (``real 0``), on white. The result is as tall as ``image``."""
    h = image.height
    scale = 0.35 if h < 300 else 0.5
    label_w = int(round(38 * scale / 0.35))
    a = np.full((h, image.width + 4 + bar_width + label_w, 3), 255, dtype=np.uint8)
    a[:, :image.width] = np.asarray(image.convert("RGB"))
    ramp = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None].repeat(bar_width, axis=1)
    x0 = image.width + 4
    a[:, x0:x0 + bar_width] = colorize(ramp, (bar_width, h))
    text_x = x0 + bar_width + 3
    _label(a, "fake", (text_x, int(12 * scale / 0.35)), scale)
    _label(a, "1", (text_x, int(24 * scale / 0.35)), scale)
    _label(a, "0", (text_x, h - int(14 * scale / 0.35)), scale)
    _label(a, "real", (text_x, h - 3), scale)
    return Image.fromarray(a)


def heatmap_figure(image: Image.Image, p_fake: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The p(fake) map over ``image``, with its colour bar."""
    return with_colorbar(overlay(image, p_fake, alpha))


def draw_border(image: Image.Image, correct: bool, label: str | None = None, width: int = 3) -> Image.Image:
    """Green border when the decision is right, red when wrong, optional caption."""
    a = np.array(image.convert("RGB"))
    color = (0, 200, 0) if correct else (230, 0, 0)
    cv2.rectangle(a, (0, 0), (a.shape[1] - 1, a.shape[0] - 1), color, width)
    if label:
        cv2.putText(a, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(a, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return Image.fromarray(a)
