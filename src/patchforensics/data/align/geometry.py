"""The FFHQ / CelebA-HQ crop: five points from a face mesh, the oriented square, the warp.

Geometry (the published FFHQ / CelebA-HQ recipe): with ``e`` the mid-point of
the eyes, ``m`` the mid-point of the mouth corners, ``v_eye`` the eye-to-eye
vector and ``v_mouth = m - e``, the crop is a square centred at
``e + 0.1·v_mouth``, rotated so its horizontal axis follows
``v_eye - rot90(v_mouth)`` (a compromise between the eye line and the
perpendicular of the eye-mouth line), with half-side
``max(2·|v_eye|, 1.8·|v_mouth|)``. Where the square leaves the photo it is
filled by reflection, faded into a blurred copy and then into the median colour
so no hard mirror seam is left; the square is resampled at 4× the output size
and reduced with :func:`patchforensics.data.prepare.standardize` (Lanczos), the
resampler every data builder shares.

The styles (:data:`STYLES`) differ in which points stand for "the eyes": ``ffhq``
averages the six eye-contour points (FFHQ used dlib's 68-point contour),
``celebahq`` uses the iris centres (CelebA's annotations mark eye centres) and
CelebA-HQ's half-pixel convention.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from ..prepare import standardize

# mediapipe face-mesh indices; "image-left" is the subject's right side.
EYE_CONTOUR_IMAGE_LEFT = (33, 160, 158, 133, 153, 144)
EYE_CONTOUR_IMAGE_RIGHT = (362, 385, 387, 263, 373, 380)
IRIS_IMAGE_LEFT, IRIS_IMAGE_RIGHT = 468, 473
NOSE_TIP = 1
MOUTH_IMAGE_LEFT, MOUTH_IMAGE_RIGHT = 61, 291
POINT_NAMES = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")  # image left/right

#: Largest supersampling of the oriented square before the final Lanczos reduction.
SUPERSAMPLE = 4


@dataclass(frozen=True)
class AlignStyle:
    """Which mesh points define the eyes, and the pixel-centre offset of the recipe."""

    name: str
    eyes: str              # "contour" (mean of six contour points) or "iris" (iris centre)
    pixel_offset: float    # added to every point before the quad is built


#: the crop recipes by name: the one list the CLI choices and every config's check read
STYLES = {
    "ffhq": AlignStyle("ffhq", eyes="contour", pixel_offset=0.0),
    "celebahq": AlignStyle("celebahq", eyes="iris", pixel_offset=0.5),
}


def five_points(mesh: np.ndarray, style: AlignStyle) -> np.ndarray:
    """(5, 2) eye, nose and mouth-corner positions (order :data:`POINT_NAMES`) from a (478, 2) mesh."""
    if style.eyes == "iris":
        eyes = [mesh[IRIS_IMAGE_LEFT], mesh[IRIS_IMAGE_RIGHT]]
    else:
        eyes = [mesh[list(EYE_CONTOUR_IMAGE_LEFT)].mean(0), mesh[list(EYE_CONTOUR_IMAGE_RIGHT)].mean(0)]
    return np.stack([*eyes, mesh[NOSE_TIP], mesh[MOUTH_IMAGE_LEFT], mesh[MOUTH_IMAGE_RIGHT]])


def _rot90(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]])


def alignment_quad(points: np.ndarray, style: AlignStyle) -> np.ndarray:
    """(4, 2) corners of the oriented crop square, in source pixels: top-left,
    bottom-left, bottom-right, top-right (see module docstring)."""
    eye_l, eye_r, _, mouth_l, mouth_r = points + style.pixel_offset
    eye_mid = (eye_l + eye_r) / 2
    eye_to_eye = eye_r - eye_l
    eye_to_mouth = (mouth_l + mouth_r) / 2 - eye_mid
    x = eye_to_eye - _rot90(eye_to_mouth)
    x = x / np.hypot(*x) * max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    y = _rot90(x)
    centre = eye_mid + 0.1 * eye_to_mouth
    return np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])


def output_to_source(quad: np.ndarray, size: int) -> np.ndarray:
    """(2, 3) affine map from aligned-image coordinates (0..size) to source coordinates."""
    return np.column_stack([(quad[3] - quad[0]) / size, (quad[1] - quad[0]) / size, quad[0]])


def pixel_affine(affine: np.ndarray) -> np.ndarray:
    """A (2, 3) map between continuous coordinates (pixel ``i`` spans ``[i, i + 1)``)
    restated between pixel indices (pixel ``i``'s centre is index ``i``), as
    ``cv2.warpAffine`` takes it: ``index' = A·(index + 0.5) + b − 0.5``."""
    a = np.asarray(affine, dtype=np.float64)
    return np.column_stack([a[:, :2], a[:, :2] @ np.array([0.5, 0.5]) + a[:, 2] - 0.5])


# ---------------------------------------------------------------- warping
def _pad_reflect_blend(img: np.ndarray, pads: tuple[int, int, int, int], side: float) -> np.ndarray:
    """Reflect-pad (left, top, right, bottom) and fade the padding into a blurred
    copy and then the picture's median colour, so the mirror seam does not show."""
    left, top, right, bottom = pads
    median = np.median(img[::4, ::4].reshape(-1, 3), axis=0).astype(np.float32)
    padded = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_REFLECT_101).astype(np.float32)
    h, w = padded.shape[:2]
    # distance outside the original picture, as a fraction of that side's padding (0 inside)
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
    out_x = np.maximum((left - xs) / max(left, 1), (xs - (w - 1 - right)) / max(right, 1))
    out_y = np.maximum((top - ys) / max(top, 1), (ys - (h - 1 - bottom)) / max(bottom, 1))
    outside = np.clip(np.maximum(out_x[None, :], out_y[:, None]), 0.0, 1.0)[..., None]
    sigma = max(0.02 * side, 0.5)
    blurred = cv2.GaussianBlur(padded, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    padded += (blurred - padded) * np.minimum(4.0 * outside, 1.0)
    padded += (median - padded) * outside
    return padded


def warp_quad(rgb: np.ndarray, quad: np.ndarray, size: int) -> Image.Image:
    """Cut the oriented square ``quad`` out of an (H, W, 3) uint8 image as a
    ``size``×``size`` RGB image (crop, reduce, pad, warp, then Lanczos)."""
    quad = np.asarray(quad, dtype=np.float64).copy()
    side = float(np.hypot(*(quad[3] - quad[0])))
    # supersample only as far as the source has pixels: beyond that it costs time and adds nothing
    work = int(min(size * SUPERSAMPLE, max(size, np.ceil(side))))
    border = max(int(round(0.1 * side)), 3)
    h, w = rgb.shape[:2]
    # 1. crop to the square's bounding box plus a border (clamped to the picture)
    x0 = max(int(np.floor(quad[:, 0].min())) - border, 0)
    y0 = max(int(np.floor(quad[:, 1].min())) - border, 0)
    x1 = min(int(np.ceil(quad[:, 0].max())) + border, w)
    y1 = min(int(np.ceil(quad[:, 1].max())) + border, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError("the face square lies outside the picture")
    img = rgb[y0:y1, x0:x1]
    quad -= (x0, y0)
    # 2. reduce with Lanczos first when the square is larger than the working size: the warp is bilinear
    if side > work:
        scale = work / side
        new_w, new_h = max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))
        img = np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.Resampling.LANCZOS))
        quad *= (new_w / (x1 - x0), new_h / (y1 - y0))
        side *= scale
        border = max(int(round(0.1 * side)), 3)
    # 3. pad where the square (plus border) leaves the picture
    h, w = img.shape[:2]
    need = (border - quad[:, 0].min(), border - quad[:, 1].min(),
            quad[:, 0].max() + border - w, quad[:, 1].max() + border - h)
    if max(need) > 0:
        # at least 30% of the side, so the fade is gradual
        pads = [max(int(np.ceil(n)), int(round(0.3 * side))) if n > 0 else 0 for n in need]
        img = _pad_reflect_blend(img, tuple(pads), side)
        quad += (pads[0], pads[1])
    # 4. sample the square at the working size: output pixel centre (u+.5, v+.5) → source point
    matrix = pixel_affine(output_to_source(quad, work))
    warped = cv2.warpAffine(np.ascontiguousarray(img, dtype=np.float32), matrix, (work, work),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    warped = Image.fromarray(np.clip(np.rint(warped), 0, 255).astype(np.uint8), "RGB")
    return standardize(warped, size)


# ---------------------------------------------------------------- one picture
@dataclass
class AlignedFace:
    """One aligned face: its picture and what made it."""

    image: Image.Image
    points: np.ndarray       # (5, 2) source pixels, order POINT_NAMES
    quad: np.ndarray         # (4, 2) source pixels
    box: np.ndarray | None   # (4,) mesh extent x0, y0, x1, y1 in source pixels; None when points were given
    rank: int                # index among the faces found, largest first

    def file_name(self, stem: str, faces: str) -> str:
        """``<stem>.png``, or ``<stem>_face<rank>.png`` when every face of a picture is kept (``faces='all'``)."""
        return f"{stem}.png" if faces == "largest" else f"{stem}_face{self.rank}.png"

    def report(self, output: str, size: int) -> dict:
        return {"output": output, "face_rank": self.rank,
                "box": None if self.box is None else _rounded(self.box),
                "landmarks": {n: _rounded(p) for n, p in zip(POINT_NAMES, self.points)},
                "quad": _rounded(self.quad),
                "output_to_source": _rounded(output_to_source(self.quad, size), 5)}


def _rounded(a: np.ndarray, digits: int = 2) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def align_faces(rgb: np.ndarray, meshes: Sequence[np.ndarray] | None, style: AlignStyle, size: int,
                faces: str, points: Sequence[np.ndarray] | None = None) -> list[AlignedFace]:
    """Align the faces of one (H, W, 3) uint8 picture.

    Give either ``meshes`` (from :meth:`FaceLandmarker.detect`) or ``points``
    ((5, 2) arrays, e.g. reused from another frame). Faces are ranked by the
    size of their square, largest first; ``faces='largest'`` keeps the first.
    Faces whose square lies entirely outside the picture are dropped.
    """
    if points is None:
        points = [five_points(m, style) for m in meshes]
        boxes = [np.concatenate([m.min(0), m.max(0)]) for m in meshes]
    else:
        boxes = [None] * len(points)
    quads = [alignment_quad(p, style) for p in points]
    order = sorted(range(len(quads)), key=lambda i: -np.hypot(*(quads[i][3] - quads[i][0])))
    if faces == "largest":
        order = order[:1]
    aligned = []
    for rank, i in enumerate(order):
        try:
            image = warp_quad(rgb, quads[i], size)
        except ValueError:
            continue
        aligned.append(AlignedFace(image, np.asarray(points[i]), quads[i], boxes[i], rank))
    return aligned
