"""Heatmap overlays of per-patch P(real) maps."""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def colorize(heatmap: np.ndarray, size: tuple[int, int], normalize: bool = False) -> np.ndarray:
    """``(H', W')`` map in [0, 1] -> ``(h, w, 3)`` uint8 JET colours at ``size=(w, h)``.

    ``normalize`` stretches the map to its own min..max first (the seed's
    visualisation); otherwise 0 = blue (fake) and 1 = red (real) everywhere.
    """
    m = np.asarray(heatmap, dtype=np.float32)
    if normalize:
        m = (m - m.min()) / (m.max() - m.min() + 1e-6)
    m8 = np.uint8(np.clip(m, 0, 1) * 255)
    m8 = cv2.resize(m8, size, interpolation=cv2.INTER_LINEAR)
    return cv2.applyColorMap(m8, cv2.COLORMAP_JET)[:, :, ::-1]


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.45,
            normalize: bool = False) -> Image.Image:
    """Blend the coloured heatmap over the image (same size as the image)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    col = colorize(heatmap, image.size, normalize).astype(np.float32)
    return Image.fromarray(np.uint8(np.clip(rgb * (1 - alpha) + col * alpha, 0, 255)))


def draw_border(image: Image.Image, correct: bool, label: str | None = None, width: int = 3) -> Image.Image:
    """Green border when the decision is right, red when wrong, optional caption."""
    a = np.array(image.convert("RGB"))
    color = (0, 200, 0) if correct else (230, 0, 0)
    cv2.rectangle(a, (0, 0), (a.shape[1] - 1, a.shape[0] - 1), color, width)
    if label:
        cv2.putText(a, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(a, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return Image.fromarray(a)
