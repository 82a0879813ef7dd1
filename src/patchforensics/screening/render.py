"""``detect``'s and ``serve``'s pictures of scored faces: the examined face beside its heatmap, and
the photo with every face's heatmap warped back onto it; both on the p(fake) scale centred on
the decision threshold (blue = real side, red = fake side), with its colour bar
(:mod:`~patchforensics.core.heatmap`), and captions that grow with the picture."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from ..core.heatmap import DEFAULT_CENTRE, colorize, overlay, put_label, text_scale, with_colorbar
from ..data.align import pixel_affine
from .detector import Screened
from .faces import PICK_MARGIN, ScoredFace
from .geometry import map_point

#: the grey that washes out alignment fill in heatmaps
FILL_GREY = 160.0
CAPTION_FONT = cv2.FONT_HERSHEY_SIMPLEX
#: what the outlines of :func:`render_overlay` are, in words (the report's and the page's legends)
PATCH_LEGEND = (f"Outlined on the heatmap, where to look: the centre (middle half) of each most suspicious patch, "
                f"white the most suspicious, black the others within {PICK_MARGIN:g} of its p(fake); a patch's "
                "score comes from a wider field, but about half of what moves it lies in its centre.")


def render_overlay(face: ScoredFace, caption: str | None = None, alpha: float = 0.45,
                   min_side: int = 256, threshold: float = DEFAULT_CENTRE) -> Image.Image:
    """The model input and the p(fake) heatmap over it, side by side, with the top
    patches' centre regions outlined (:data:`PATCH_LEGEND`) and the colour bar (centred on
    ``threshold``, :mod:`~patchforensics.core.heatmap`) at the right. Alignment fill
    (outside the photo) is washed grey in the heatmap: it does not count."""
    base = face.maps.input_image
    heat = np.asarray(overlay(base, face.maps.patch_p_fake, alpha=alpha, threshold=threshold), dtype=np.float32)
    fill = ~face.maps.inside_photo
    heat[fill] = 0.3 * heat[fill] + 0.7 * FILL_GREY
    pair = Image.new("RGB", (base.width * 2, base.height))
    pair.paste(base, (0, 0))
    pair.paste(Image.fromarray(np.uint8(np.rint(heat))), (base.width, 0))
    scale = max(1, int(np.ceil(min_side / base.height)))
    if scale > 1:
        pair = pair.resize((pair.width * scale, pair.height * scale), Image.Resampling.NEAREST)
    a = np.array(pair)
    for rank, p in reversed(list(enumerate(face.top_patches))):
        t, l, b, r = (v * scale for v in p.input_centre_box)
        colour = (255, 255, 255) if rank == 0 else (40, 40, 40)
        cv2.rectangle(a, (l + base.width * scale, t), (r - 1 + base.width * scale, b - 1), colour, 2)
    if caption:
        scale = text_scale(a.shape[0])
        _put_caption(a, caption, (6, 6 + _caption_size(caption, scale)[1]), scale)
    return with_colorbar(Image.fromarray(a), threshold)


def _caption_size(text: str, scale: float) -> tuple[int, int]:
    """``(width, height above the baseline)`` of a caption at ``scale``, its outline included."""
    (w, h), _ = cv2.getTextSize(text, CAPTION_FONT, scale, max(1, round(scale * 1.6)) + 2)
    return w, h


def _put_caption(a: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """White text outlined in black, its baseline starting at ``origin``."""
    put_label(a, text, origin, scale, (255, 255, 255), (0, 0, 0))


def caption_boxes(anchors: Sequence[tuple[float, float]], captions: Sequence[str], width: int,
                  height: int, scale: float = 0.5) -> list[tuple[int, int, int, int]]:
    """Where each caption (font ``scale``) goes on a ``width x height`` picture, as ``(x0, y0, x1, y1)``:
    just above its anchor (a face box's top-left corner), kept inside the picture, and
    moved down below any caption already placed that it would overlap (several faces in
    a small photo, or squares leaving the photo, would otherwise stack their captions)."""
    placed: list[tuple[int, int, int, int]] = []
    for (ax, ay), text in zip(anchors, captions):
        w, h = _caption_size(text, scale)
        h += int(np.ceil(h * 0.45))          # the descenders below the baseline
        x0 = int(min(max(2, ax), max(2, width - w - 2)))
        y0 = int(min(max(2, ay - h - 2), max(2, height - h - 2)))
        while True:
            hits = [p for p in placed if x0 < p[2] and p[0] < x0 + w and y0 < p[3] and p[1] < y0 + h]
            if not hits:
                break
            y0 = max(p[3] for p in hits) + 2
        placed.append((x0, y0, x0 + w, y0 + h))
    return placed


def render_on_original(image: Image.Image, faces: Sequence[ScoredFace], captions: Sequence[str],
                       alpha: float = 0.45, max_side: int = 1024, min_side: int = 256,
                       threshold: float = DEFAULT_CENTRE) -> Image.Image:
    """The original image with each face's p(fake) map (centred on ``threshold``) warped back onto
    it (through its ``to_original`` map), the face's examined square outlined, each face captioned
    at its face box (:func:`caption_boxes`, text about 2.5% of the picture's height), and the colour
    bar at the right; scaled so its longer side is at most ``max_side`` px (and its height at least
    ``min_side``)."""
    scale = min(1.0, max_side / max(image.size))
    scale = max(scale, min_side / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    a = np.asarray(image.resize(size, Image.Resampling.LANCZOS) if size != image.size else image,
                   dtype=np.float32).copy()
    corners = []
    for f in faces:
        side = f.maps.input_image.width
        to_shown = pixel_affine(f.maps.to_original * scale)        # input pixel index -> shown pixel index
        colour = cv2.warpAffine(colorize(f.maps.patch_p_fake, (side, side), threshold).astype(np.float32), to_shown,
                                size, flags=cv2.INTER_LINEAR, borderValue=0)
        weight = alpha * cv2.warpAffine(np.ones((side, side), np.float32), to_shown, size,
                                        flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
        a = a * (1 - weight) + colour * weight
        corners.append([map_point(f.maps.to_original * scale, x, y)
                        for x, y in ((0, 0), (0, side), (side, side), (side, 0))])
    a = np.uint8(np.clip(np.rint(a), 0, 255))
    for quad in corners:
        cv2.polylines(a, [np.int32(np.rint(np.array(quad) - 0.5))], True, (255, 255, 255), 2, cv2.LINE_AA)
    anchors = [(f.face_box[1] * scale, f.face_box[0] * scale) for f in faces]
    text = text_scale(size[1])
    for (x0, y0, _, _), caption in zip(caption_boxes(anchors, captions, size[0], size[1], text), captions):
        _put_caption(a, caption, (x0, y0 + _caption_size(caption, text)[1]), text)
    return with_colorbar(Image.fromarray(a), threshold)


def face_caption(index: int, face: ScoredFace) -> str:
    """``#0 fake 0.83``: a face's label on pictures."""
    return f"#{index} {face.verdict} {face.p_fake:.2f}"


def render_screened(image: Image.Image, screened: Screened, threshold: float = DEFAULT_CENTRE) -> Image.Image | None:
    """``detect``'s heatmap picture of one image: for an aligned input its examined
    square beside the heatmap (:func:`render_overlay`); for found faces the original
    with every face's heatmap on it (:func:`render_on_original`), centred on ``threshold``; ``None``
    when no face was found."""
    if not screened.faces:
        return None
    if screened.mode == "aligned":
        face = screened.faces[0]
        return render_overlay(face, f"p(fake) {face.p_fake:.2f}: {face.verdict}", threshold=threshold)
    return render_on_original(image, screened.faces, [face_caption(i, a) for i, a in enumerate(screened.faces)],
                              threshold=threshold)
