"""``align`` and ``align-video``: FFHQ / CelebA-HQ face alignment with mediapipe.

The paper's datasets are aligned face crops: FFHQ and CelebA-HQ were cut from
photos by an oriented square derived from the eyes and the mouth, and the seed
cut FaceForensics++ frames the same way so that every dataset shares one
geometry. The seed found the eyes and mouth with dlib; here mediapipe's face
mesh (478 points, iris included; the detector and mesh models ship inside the
mediapipe wheel, nothing is downloaded) provides them.

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

The styles differ in which points stand for "the eyes": ``ffhq`` averages the
six eye-contour points (FFHQ used dlib's 68-point contour), ``celebahq`` uses
the iris centres (CelebA's annotations mark eye centres) and CelebA-HQ's
half-pixel convention.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..core import fileio
from ..core.config import require
from ..core.imageio import ImageLoadError, SkipLog, load_rgb, require_images
from ..core.stderr import native_stderr_silenced
from .prepare import SPLITS, assign_splits, png_bytes, standardize

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


STYLES = {
    "ffhq": AlignStyle("ffhq", eyes="contour", pixel_offset=0.0),
    "celebahq": AlignStyle("celebahq", eyes="iris", pixel_offset=0.5),
}


# ---------------------------------------------------------------- landmarks
#: side and stride (px) of the overlapping tiles searched for faces too small for a whole-photo pass;
#: the overlap (128 px) is larger than the faces the whole-photo pass misses (~120 px), so every such
#: face lies whole in some tile, where it is large enough for the short-range detector (from ~50 px)
TILE, TILE_STRIDE = 384, 256
#: how far apart two detections may overlap (intersection over union) and still be two faces
SAME_FACE_IOU = 0.3


class FaceLandmarker:
    """mediapipe's 478-point face mesh on still images (one call per image or frame).

    ``detect`` returns one ``(478, 2)`` array of pixel coordinates per face:

    1. **upright**: the mesh assumes a roughly upright face (it reads most faces turned
       by ±90°, but fits an upside-down face as if it were upright, eyes on the mouth).
       So the photo is turned upside down first when mediapipe's short-range face
       detector is surer of a face that way (on the 316 upright raw photos of the shared
       data the upright photo always scored higher, by 0.09 at least); when nothing is
       found, a quarter turn either way is tried where the detector sees a face. The
       points are given back in the photo's own pixels;
    2. the mesh runs on the whole photo; when it finds nothing,
    3. mediapipe's full-range detector proposes boxes, and when that finds nothing in
       a photo larger than a :data:`TILE`, the short-range detector looks at
       overlapping tiles (faces down to ~60 px high in large photos); the mesh is then
       re-run on an enlarged crop of each box.
    """

    def __init__(self, max_faces: int = 10, min_confidence: float = 0.5):
        with native_stderr_silenced():
            import mediapipe as mp  # heavy import, only when aligning

            solutions = mp.solutions
            self.min_confidence = min_confidence
            self._mesh = solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces,
                                                      refine_landmarks=True,
                                                      min_detection_confidence=min_confidence)
            self._crop_mesh = solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                           refine_landmarks=True,
                                                           min_detection_confidence=min_confidence)
            self._full_range = solutions.face_detection.FaceDetection(model_selection=1,
                                                                      min_detection_confidence=min_confidence)
            # weak detections too: the orientation test compares scores below the threshold
            self._short_range = solutions.face_detection.FaceDetection(model_selection=0,
                                                                       min_detection_confidence=0.05)
            # the graphs set up their models on worker threads, which log as they go; one image through
            # each waits for that to end inside this silenced block instead of leaking lines later
            blank = np.zeros((64, 64, 3), np.uint8)
            for graph in self._graphs():
                graph.process(blank)

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _graphs(self) -> tuple:
        return self._mesh, self._crop_mesh, self._full_range, self._short_range

    def close(self) -> None:
        for graph in self._graphs():
            graph.close()

    @staticmethod
    def _run(graph, rgb: np.ndarray):
        with native_stderr_silenced():
            return graph.process(np.ascontiguousarray(rgb))

    def _meshes(self, graph, rgb: np.ndarray) -> list[np.ndarray]:
        h, w = rgb.shape[:2]
        faces = self._run(graph, rgb).multi_face_landmarks or []
        return [np.array([(p.x * w, p.y * h) for p in face.landmark], dtype=np.float64) for face in faces]

    def _detections(self, graph, rgb: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """``(score, box x0, y0, x1, y1 in px)`` of each face a face-detection graph finds."""
        h, w = rgb.shape[:2]
        out = []
        for det in self._run(graph, rgb).detections or []:
            box = det.location_data.relative_bounding_box
            out.append((float(det.score[0]), np.array([box.xmin * w, box.ymin * h, (box.xmin + box.width) * w,
                                                       (box.ymin + box.height) * h])))
        return out

    def face_score(self, rgb: np.ndarray) -> float:
        """The short-range detector's best face score on a whole (H, W, 3) RGB array (0: none)."""
        return max((score for score, _ in self._detections(self._short_range, rgb)), default=0.0)

    def has_face(self, rgb: np.ndarray) -> bool:
        """Whether the short-range detector finds a face at ``min_confidence`` (it found one in
        every one of the 902 aligned 128 px test faces of the shared data, and none in flat,
        noise or drawn pictures)."""
        return self.face_score(rgb) >= self.min_confidence

    def detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Face meshes in an (H, W, 3) uint8 RGB array, as (478, 2) pixel (x, y) arrays.

        The photo is searched as it is or turned upside down, whichever holds the surer
        face; when that finds nothing, turned a quarter turn where the detector sees a face
        that way (a sideways face the mesh could not read as it was)."""
        h, w = rgb.shape[:2]
        turned = {k: np.rot90(rgb, k) for k in range(4)}
        upright = max((0, 2), key=lambda k: self.face_score(turned[k]))    # a tie keeps the photo as it is
        faces = self._find(turned[upright])
        if faces:
            return [_turned_back(mesh, upright, w, h) for mesh in faces]
        sideways = {k: self.face_score(turned[k]) for k in (1, 3)}
        for k in sorted((k for k in sideways if sideways[k] >= self.min_confidence), key=lambda k: -sideways[k]):
            faces = self._find(turned[k])
            if faces:
                return [_turned_back(mesh, k, w, h) for mesh in faces]
        return []

    def _find(self, rgb: np.ndarray) -> list[np.ndarray]:
        faces = self._meshes(self._mesh, rgb)
        if faces:
            return faces
        boxes = [box for _, box in self._detections(self._full_range, rgb)]
        if not boxes and max(rgb.shape[:2]) > TILE:
            boxes = self._tiled_boxes(rgb)
        h, w = rgb.shape[:2]
        for box in boxes:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            half = max(box[2] - box[0], box[3] - box[1])  # crop twice the box side: the mesh wants context
            x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
            x1, y1 = int(min(cx + half, w)), int(min(cy + half, h))
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            for mesh in self._meshes(self._crop_mesh, rgb[y0:y1, x0:x1]):
                faces.append(mesh + (x0, y0))
        return faces

    def _tiled_boxes(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Face boxes the short-range detector finds in overlapping :data:`TILE` px tiles, one
        per face (a face in the overlap of two tiles is found twice: the surer box is kept)."""
        h, w = rgb.shape[:2]
        found = []
        for y in _tile_starts(h):
            for x in _tile_starts(w):
                found += [(score, box + (x, y, x, y)) for score, box in
                          self._detections(self._short_range, rgb[y:y + TILE, x:x + TILE])
                          if score >= self.min_confidence]
        if not found:
            return []
        scores = [score for score, _ in found]
        rects = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for _, b in found]
        keep = cv2.dnn.NMSBoxes(rects, scores, self.min_confidence, SAME_FACE_IOU)
        return [found[i][1] for i in np.asarray(keep).reshape(-1)]


def _turned_back(points: np.ndarray, turns: int, width: int, height: int) -> np.ndarray:
    """(N, 2) points ``(x, y)`` found in ``np.rot90(image, turns)`` (quarter turns
    anticlockwise), given back in the ``width x height`` image itself."""
    for k in range(turns, 0, -1):
        # one quarter turn takes (x, y) of an image w px wide to (y, w - x): undo it
        before_width = width if (k - 1) % 2 == 0 else height
        points = np.column_stack([before_width - points[:, 1], points[:, 0]])
    return points


def _tile_starts(length: int) -> list[int]:
    """Start offsets of :data:`TILE` px tiles every :data:`TILE_STRIDE` px, the last flush with the end."""
    starts = list(range(0, max(length - TILE, 0) + 1, TILE_STRIDE))
    if starts[-1] + TILE < length:
        starts.append(length - TILE)
    return starts


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


def _face_name(stem: str, face: AlignedFace, faces: str) -> str:
    return f"{stem}.png" if faces == "largest" else f"{stem}_face{face.rank}.png"


# ---------------------------------------------------------------- photos
@dataclass
class AlignConfig:
    """Options of ``patchforensics align``.

    ``style`` ffhq | celebahq; ``size`` output side in pixels; ``faces``
    'largest' (one per picture) or 'all'; ``split``/``seed`` assign each source
    picture (all its faces) to train/val/test as ``prepare`` does;
    ``max_faces`` caps the faces the mesh looks for; ``min_confidence`` is the
    detector's threshold.
    """

    src: str
    out: str
    style: str = "ffhq"
    size: int = 256
    faces: str = "largest"
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    max_faces: int = 10
    min_confidence: float = 0.5
    force: bool = False

    def validate(self) -> None:
        _validate_common(self)
        require(Path(self.src).resolve() != Path(self.out).resolve(), "out", "must differ from the source folder")


def _validate_common(cfg) -> None:
    require(cfg.style in STYLES, "style", f"must be one of {', '.join(STYLES)}")
    require(cfg.size >= 16, "size", "must be at least 16 pixels")
    require(cfg.faces in ("largest", "all"), "faces", "must be 'largest' or 'all'")
    require(len(cfg.split) == 3 and all(f >= 0 for f in cfg.split) and abs(sum(cfg.split) - 1) < 1e-6,
            "split", "give three non-negative fractions summing to 1, e.g. 0.7,0.1,0.2")
    require(cfg.max_faces >= 1, "max_faces", "must be >= 1")
    require(0.0 < cfg.min_confidence < 1.0, "min_confidence", "must be between 0 and 1")


@dataclass
class AlignResult:
    out: Path
    counts: dict[str, int]               # aligned faces written per split
    images: int                          # usable source pictures
    images_aligned: int                  # pictures with at least one face written
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.images_aligned / self.images if self.images else 0.0


def align_images(cfg: AlignConfig, progress: bool = True) -> AlignResult:
    """Align every picture under ``cfg.src`` into ``cfg.out/{train,val,test}/*.png``.

    Writes ``report.json`` (per picture: split, size, faces found, and per face
    written its output, mesh box, five landmarks, crop square and
    output→source affine map) and ``summary.json`` (options, counts, success
    rate, skipped pictures with reasons: unreadable, or no face found).
    Output names are the source path relative to ``src`` with ``/`` → ``__``;
    with ``faces='all'`` a ``_face<rank>`` suffix is added (0 = largest).
    """
    cfg.validate()
    paths = require_images(cfg.src)
    with fileio.atomic_dir(cfg.out, cfg.force) as tmp:   # --force replaces OUT whole, never merges into it
        result = _align_images_into(cfg, paths, tmp, progress)
    return replace(result, out=Path(cfg.out))


def _align_images_into(cfg: AlignConfig, paths: list[Path], out: Path, progress: bool) -> AlignResult:
    src = Path(cfg.src)
    style = STYLES[cfg.style]
    splits = assign_splits(len(paths), cfg.split, cfg.seed)
    counts = {s: 0 for s in SPLITS}
    skipped, report, usable, aligned_images = SkipLog(), [], 0, 0
    with FaceLandmarker(cfg.max_faces, cfg.min_confidence) as landmarker:
        for path, split in tqdm(list(zip(paths, splits)), desc="align", disable=not progress, unit="img"):
            rel = path.relative_to(src).as_posix() if path != src else path.name
            try:
                im = load_rgb(path)
            except ImageLoadError as e:
                skipped.add(e)
                continue
            usable += 1
            rgb = np.asarray(im)
            meshes = landmarker.detect(rgb)
            faces = align_faces(rgb, meshes, style, cfg.size, cfg.faces)
            stem = Path(rel).with_suffix("").as_posix().replace("/", "__")
            entry = {"source": rel, "split": split, "width": im.width, "height": im.height,
                     "faces_found": len(meshes), "faces": []}
            for face in faces:
                name = f"{split}/{_face_name(stem, face, cfg.faces)}"
                fileio.write_bytes(out / name, png_bytes(face.image))
                entry["faces"].append(face.report(name, cfg.size))
                counts[split] += 1
            if faces:
                aligned_images += 1
            else:
                skipped.add(ImageLoadError(path, "no face found" if not meshes
                                           else "face square outside the picture"))
            report.append(entry)
    fileio.write_json(out / "report.json", {"style": cfg.style, "size": cfg.size, "images": report})
    result = AlignResult(out, counts, usable, aligned_images, skipped.as_list())
    fileio.write_json(out / "summary.json", {
        "source": str(src), "style": cfg.style, "size": cfg.size, "faces": cfg.faces,
        "split": list(cfg.split), "seed": cfg.seed, "counts": counts, "images": usable,
        "images_aligned": aligned_images, "success_rate": round(result.success_rate, 4),
        "skipped": result.skipped})
    return result


# ---------------------------------------------------------------- videos
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
ORIGINAL_DIR, MANIPULATED_DIR = "original_sequences", "manipulated_sequences"


@dataclass
class VideoAlignConfig:
    """Options of ``patchforensics align-video``.

    ``every`` keeps frames 0, N, 2N, …; ``max_frames`` caps the aligned frames
    per video (the seed kept 100 per val/test video). Splits are by video
    identity, the first ``_``-separated token of the file name (FF++'s
    ``000_003.mp4`` goes with ``000.mp4``): from FF++'s ``train/val/test.json``
    pair lists in ``splits_dir`` when given, else drawn with ``split``/``seed``.
    With ``reuse_original_landmarks``, a frame of
    ``manipulated_sequences/<method>/…/A_B.mp4`` is cut with the landmarks of
    the same frame of ``original_sequences/…/A.mp4`` when those were found, so
    real and fake crops share one geometry (as the seed's pairs did).
    """

    src: str
    out: str
    style: str = "celebahq"
    size: int = 128
    every: int = 10
    max_frames: int | None = None
    faces: str = "largest"
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    splits_dir: str | None = None
    reuse_original_landmarks: bool = True
    max_faces: int = 10
    min_confidence: float = 0.5
    force: bool = False

    def validate(self) -> None:
        _validate_common(self)
        require(self.every >= 1, "every", "must be >= 1 (1 keeps every frame)")
        require(self.max_frames is None or self.max_frames >= 1, "max_frames", "must be >= 1")
        if self.splits_dir is not None:
            missing = [s for s in SPLITS if not (Path(self.splits_dir) / f"{s}.json").is_file()]
            require(not missing, "splits_dir",
                    f"{self.splits_dir} lacks {', '.join(m + '.json' for m in missing)} "
                    "(FaceForensics++ split files: lists of [target, source] id pairs)")


def list_videos(root: str | os.PathLike) -> list[Path]:
    """Sorted video files under ``root`` (or ``[root]`` for a single file)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist; pass a video file or a folder of videos "
                                f"({', '.join(sorted(VIDEO_EXTENSIONS))})")
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS
                  and p.is_file() and not p.name.startswith("."))


def video_identity(path: Path) -> str:
    """The id that ties a manipulated video to its original: ``A`` for ``A_B.mp4`` and ``A.mp4``."""
    return path.stem.split("_")[0]


def _ff_splits(splits_dir: Path) -> dict[str, str]:
    ids: dict[str, str] = {}
    for split in SPLITS:
        pairs = json.loads((splits_dir / f"{split}.json").read_text())
        for pair in pairs:
            for vid in (pair if isinstance(pair, list) else [pair]):
                ids[str(vid)] = split
    return ids


def iter_frames(path: Path, every: int) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, (H, W, 3) uint8 RGB) for frames 0, every, 2·every, … of a video.

    Raises ``ValueError`` if OpenCV cannot open or decode the file at all.
    """
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError("OpenCV cannot open this video")
        index, decoded = 0, 0
        while True:
            if index % every == 0:
                ok, frame = cap.read()
                if not ok:
                    break
                decoded += 1
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            elif not cap.grab():  # skipped frames are not converted
                break
            index += 1
        if decoded == 0:
            raise ValueError("no frame could be decoded")
    finally:
        cap.release()


def faceforensics_suite(out: Path, folders: Sequence[Path]) -> dict:
    """A ``test-suite`` YAML body pairing each ``manipulated_sequences/<method>/<tail>``
    output folder with the ``original_sequences/<source>/<tail>`` one (same tail,
    e.g. ``c23/videos``; ``youtube`` preferred), keeping pairs that hold frames."""
    folders = sorted(set(folders))
    originals = [f for f in folders if len(f.parts) >= 2 and f.parts[0] == ORIGINAL_DIR]
    manipulated = [f for f in folders if len(f.parts) >= 2 and f.parts[0] == MANIPULATED_DIR]
    methods = [f.parts[1] for f in manipulated]
    datasets = []
    for fake in manipulated:
        tail = fake.parts[2:]
        matches = sorted((o for o in originals if o.parts[2:] == tail), key=lambda o: o.parts[1] != "youtube")
        if not matches or not (out / fake).is_dir() or not (out / matches[0]).is_dir():
            continue
        method = fake.parts[1]
        name = method if methods.count(method) == 1 else "_".join((method, *tail))
        datasets.append({"name": name, "real": matches[0].as_posix(), "fake": fake.as_posix()})
    return {"name": "faceforensics", "root": ".", "datasets": datasets}


@dataclass
class VideoAlignResult:
    out: Path
    counts: dict[str, int]                 # aligned faces written per split
    videos: int
    frames_sampled: int
    frames_aligned: int
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.frames_aligned / self.frames_sampled if self.frames_sampled else 0.0


def align_videos(cfg: VideoAlignConfig, progress: bool = True) -> VideoAlignResult:
    """Align faces in frames of every video under ``cfg.src``.

    Mirrors the folder layout: ``SRC/<dirs>/<name>.mp4`` →
    ``OUT/<dirs>/<split>/<name>_<frame>.png``, so an FF++ tree gives
    ``OUT/original_sequences/youtube/c23/videos/<split>/`` (reals) beside
    ``OUT/manipulated_sequences/<method>/c23/videos/<split>/`` (fakes), ready for
    ``test``/``test-suite``. Writes ``report.json`` (per video and sampled frame:
    faces found, landmarks, crop square, transform, where landmarks came from)
    and ``summary.json`` (counts, per-frame success rate, skipped videos). For an
    FF++ tree it also writes ``suite.yaml`` pairing each manipulation method with
    the originals, for ``patchforensics test-suite CHECKPOINT OUT/suite.yaml``.
    """
    cfg.validate()
    src, out = Path(cfg.src), Path(cfg.out)
    videos = list_videos(src)
    if not videos:
        raise ValueError(f"no videos found under {src} ({', '.join(sorted(VIDEO_EXTENSIONS))})")
    with fileio.atomic_dir(out, cfg.force) as tmp:   # --force replaces OUT whole, never merges into it
        result = _align_videos_into(cfg, videos, tmp, progress)
    return replace(result, out=out)


def _align_videos_into(cfg: VideoAlignConfig, videos: list[Path], out: Path, progress: bool) -> VideoAlignResult:
    src = Path(cfg.src)
    root = src if src.is_dir() else src.parent
    # originals first, so their landmarks are known when their manipulated versions come
    videos.sort(key=lambda p: (MANIPULATED_DIR in p.relative_to(root).parts, p))
    if cfg.splits_dir:
        split_of = _ff_splits(Path(cfg.splits_dir))
    else:
        ids = sorted({video_identity(p) for p in videos})
        split_of = dict(zip(ids, assign_splits(len(ids), cfg.split, cfg.seed)))
    style = STYLES[cfg.style]
    original_points: dict[tuple[str, int], list[np.ndarray]] = {}
    counts = {s: 0 for s in SPLITS}
    skipped, report = SkipLog(), []
    frames_sampled = frames_aligned = 0
    with FaceLandmarker(cfg.max_faces, cfg.min_confidence) as landmarker:
        for video in tqdm(videos, desc="align-video", disable=not progress, unit="video"):
            rel = video.relative_to(root)
            identity = video_identity(video)
            split = split_of.get(identity)
            if split is None:
                skipped.add(ImageLoadError(video, f"id {identity!r} is in none of the split files"))
                continue
            is_original = ORIGINAL_DIR in rel.parts
            reuse = cfg.reuse_original_landmarks and MANIPULATED_DIR in rel.parts
            entry = {"source": rel.as_posix(), "split": split, "frames": []}
            folder = rel.parent / split
            written = 0
            try:
                for index, rgb in iter_frames(video, cfg.every):
                    if cfg.max_frames is not None and written >= cfg.max_frames:
                        break
                    frames_sampled += 1
                    frame = {"frame": index}
                    given = original_points.get((identity, index)) if reuse else None
                    if given is not None:
                        faces = align_faces(rgb, None, style, cfg.size, cfg.faces, points=given)
                        frame["landmarks_from"] = "original"
                    else:
                        meshes = landmarker.detect(rgb)
                        frame["faces_found"] = len(meshes)
                        faces = align_faces(rgb, meshes, style, cfg.size, cfg.faces)
                    if is_original and faces:
                        original_points[(identity, index)] = [f.points for f in faces]
                    frame["faces"] = []
                    for face in faces:
                        name = (folder / _face_name(f"{video.stem}_{index:05d}", face, cfg.faces)).as_posix()
                        fileio.write_bytes(out / name, png_bytes(face.image))
                        frame["faces"].append(face.report(name, cfg.size))
                        counts[split] += 1
                    frames_aligned += bool(faces)
                    written += bool(faces)
                    entry["frames"].append(frame)
            except ValueError as e:
                skipped.add(ImageLoadError(video, str(e)))
                continue
            entry["frames_aligned"] = written
            report.append(entry)
    fileio.write_json(out / "report.json", {"style": cfg.style, "size": cfg.size, "every": cfg.every,
                                            "videos": report})
    suite = faceforensics_suite(out, [Path(v["source"]).parent for v in report])
    if suite["datasets"]:
        fileio.write_yaml(out / "suite.yaml", suite)
    result = VideoAlignResult(out, counts, len(report), frames_sampled, frames_aligned, skipped.as_list())
    fileio.write_json(out / "summary.json", {
        "source": str(src), "style": cfg.style, "size": cfg.size, "every": cfg.every,
        "max_frames": cfg.max_frames, "faces": cfg.faces, "split": list(cfg.split), "seed": cfg.seed,
        "splits_dir": cfg.splits_dir, "reuse_original_landmarks": cfg.reuse_original_landmarks,
        "counts": counts, "videos": len(report), "frames_sampled": frames_sampled,
        "frames_aligned": frames_aligned, "success_rate": round(result.success_rate, 4),
        "skipped": result.skipped})
    return result
