"""``detect``: screen images with a trained patch classifier.

For each face in each image: ``p(fake)``, the decision at a calibrated
threshold, the face's box and the most suspicious patches (boxes in pixels of
the *original* image) and, optionally, a heatmap PNG.

Which faces are scored (``faces``, see :data:`FACE_MODES`):

- ``aligned``: the image *is* one aligned face, scored as given (below);
- ``find``: mediapipe's face mesh (:class:`~patchforensics.data.align.FaceLandmarker`)
  finds every face; each is aligned the way the training faces were
  (:func:`~patchforensics.data.align.align_faces`, FFHQ style by default: the
  shared faces and the StyleGAN fakes are FFHQ-aligned) straight to the model's
  ``load_size`` and scored; an image without a face gets **no verdict**;
- ``auto`` (default): ``aligned`` when the image is exactly the model's input
  square (``load_size`` x ``load_size``, 128 x 128 for the bundled detector),
  ``find`` otherwise.

How an image reaches the model (``transforms.eval_image``, the geometry the
model was trained with): the shorter side is resized to the config's
``load_size`` (Lanczos; small images are enlarged), then a centred square is
cut, ``load_size`` px for patch models (``fine_size`` for full-image models).
An aligned face already has that size, so it is examined whole.

How boxes map back: the model's per-patch outputs ``(H', W')`` each see a
receptive field; :meth:`ModelCard.patch_boxes` gives those boxes in model-input
pixels (clipped to the input, from the architecture alone). Each scored face
carries the affine map ``to_original`` (2 x 3) from model-input pixels to the
original image: for an aligned input the centred-square window
(:func:`input_window`: ``left = round((w_r - S) / 2)``, ``top = round((h_r - S)
/ 2)`` in the resized ``w_r x h_r`` image, scaled by ``w / w_r`` and ``h /
h_r``); for a found face that window composed with the alignment's
aligned-to-source map (:func:`~patchforensics.data.align.output_to_source`,
rotation + scale + shift). A box is the bounding rectangle of its mapped
corners, rounded outward to whole pixels and clipped to the image; the heatmap
is warped back onto the original with the same map.

Scores: ``p(fake) = 1 - P(real)`` with ``P(real)`` the ``after_softmax``
aggregation (mean of the per-patch softmax), computed by the same
:class:`~patchforensics.scoring.engine.Engine` as ``test`` and ``visualize``. A
face is called fake when ``p(fake) >= 1 - t`` for the chosen stored threshold
``t`` (``calibrate`` stores them on ``P(real)``; :meth:`ModelCard.p_fake_threshold`
converts).
"""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..core import fileio
from ..core.config import ConfigError, require
from ..core.heatmap import colorize, overlay, with_colorbar
from ..core.imageio import ImageLoadError, SkipLog, list_images, load_rgb
from ..data.align import STYLES, AlignedFace, FaceLandmarker, align_faces, output_to_source, pixel_affine
from ..data.transforms import TransformConfig
from ..models.card import ModelCard
from ..scoring.engine import Engine
from ..scoring.fastpath import BACKENDS, FastPath
from ..scoring.metrics import aggregate

#: the card's default threshold (``fpr3pct``, else ``eer``: :meth:`ModelCard.default_threshold`)
DEFAULT_THRESHOLD = "default"
FORMATS = ("table", "json", "csv")
#: which faces are scored: ``auto`` (aligned when the image is the model's input square, else find),
#: ``find`` (find and align every face), ``aligned`` (the image is one aligned face)
FACE_MODES = ("auto", "find", "aligned")
#: how found faces are aligned: as the shared training faces (FFHQ; StyleGAN's fakes share it)
DEFAULT_ALIGN_STYLE = "ffhq"


# ------------------------------------------------------------- geometry
@dataclass(frozen=True)
class InputWindow:
    """Where the model input sits in the original image.

    The model sees ``side x side`` pixels: the original's region
    ``[top, top + side*scale_y) x [left, left + side*scale_x)`` in original pixels
    (``top``/``left`` also in original pixels).
    """

    width: int          # original image size, px
    height: int
    side: int           # model input side, px
    left: float         # window origin in original px
    top: float
    scale_x: float      # original px per model-input px
    scale_y: float

    @property
    def affine(self) -> np.ndarray:
        """(2, 3) map from model-input px ``(x, y)`` to original px."""
        return np.array([[self.scale_x, 0.0, self.left], [0.0, self.scale_y, self.top]])

    def to_original(self, box: Sequence[float]) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` in model-input px -> original px (rounded
        outward, clipped to the image)."""
        return map_box(self.affine, box, self.width, self.height)


def map_point(affine: np.ndarray, x: float, y: float) -> tuple[float, float]:
    """``(x, y)`` through a (2, 3) affine map."""
    return tuple(float(v) for v in np.asarray(affine) @ np.array([x, y, 1.0]))


def map_box(affine: np.ndarray, box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """A ``(top, left, bottom, right)`` box through a (2, 3) affine map of ``(x, y)``
    px: the bounding rectangle of its mapped corners, rounded outward and clipped
    to a ``width x height`` image."""
    t, l, b, r = (float(v) for v in box)
    xs, ys = zip(*(map_point(affine, x, y) for x, y in ((l, t), (r, t), (r, b), (l, b))))
    return (max(0, int(np.floor(min(ys)))), max(0, int(np.floor(min(xs)))),
            min(height, int(np.ceil(max(ys)))), min(width, int(np.ceil(max(xs)))))


def input_window(width: int, height: int, tcfg: TransformConfig) -> InputWindow:
    """The crop window of ``transforms.eval_image`` for an image of ``width x height``."""
    size = tcfg.load_size
    # resize_shorter: shorter side -> load_size, longer side rounded, never below 1
    if min(width, height) == size:
        w_r, h_r = width, height
    elif width <= height:
        w_r, h_r = size, max(1, round(height * size / width))
    else:
        w_r, h_r = max(1, round(width * size / height)), size
    side = tcfg.load_size if tcfg.patch_model else tcfg.fine_size
    left_r, top_r = int(round((w_r - side) / 2.0)), int(round((h_r - side) / 2.0))   # center_crop
    sx, sy = width / w_r, height / h_r
    return InputWindow(width, height, side, left_r * sx, top_r * sy, sx, sy)


# ------------------------------------------------------------- results
@dataclass
class Patch:
    """One patch: its box ``(top, left, bottom, right)`` (exclusive ends) in the
    original image and in model-input pixels, and its own ``p(fake)``."""

    box: tuple[int, int, int, int]
    input_box: tuple[int, int, int, int]
    p_fake: float


@dataclass
class Analysis:
    """One scored face (or aligned image). ``patch_p_fake`` is the ``(H', W')``
    per-patch p(fake) map; ``to_original`` the (2, 3) map from model-input px
    ``(x, y)`` to the original image; ``face_box`` ``(top, left, bottom, right)``
    in original px: the examined square of an aligned input, the face mesh's
    extent for a found face; ``quad`` (4, 2) the aligned square's corners
    ``(x, y)`` in original px (top-left, bottom-left, bottom-right, top-right),
    ``None`` for an aligned input."""

    p_fake: float
    is_fake: bool
    patch_p_fake: np.ndarray
    top_patches: list[Patch]
    input_image: Image.Image
    window: InputWindow
    to_original: np.ndarray
    face_box: tuple[int, int, int, int]
    quad: np.ndarray | None = None


@dataclass
class Screened:
    """One image screened: ``mode`` says how its faces were obtained (``aligned``:
    the image as given; ``found``: found and aligned), ``faces`` holds one
    :class:`Analysis` per face, largest first (empty: no face found, no verdict)."""

    mode: str
    faces: list[Analysis]
    width: int
    height: int


@dataclass
class FaceResult:
    """One face of ``detect``'s output; boxes are ``(top, left, bottom, right)`` in original px."""

    index: int                          # 0 = the largest face of its image (0 for an aligned input)
    p_fake: float
    verdict: str                        # "fake" | "real"
    face_box: tuple[int, int, int, int]
    box: tuple[int, int, int, int]      # the most suspicious patch
    box_p_fake: float
    quad: list[list[float]] | None = None   # aligned square's corners (x, y), found faces only

    def to_dict(self) -> dict:
        return {"index": self.index, "p_fake": self.p_fake, "verdict": self.verdict,
                "face_box": list(self.face_box), "box": list(self.box), "box_p_fake": self.box_p_fake,
                "quad": self.quad}


@dataclass
class ImageResult:
    """One input file of ``detect``: its faces (largest first), or none (no face
    found: no verdict), or ``error`` (unreadable, skipped)."""

    path: str
    input: str | None = None            # "aligned" | "found" (how the faces were obtained)
    faces: list[FaceResult] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    heatmap: str | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        """``scored``, ``no face found`` or ``skipped``."""
        return "skipped" if self.error else ("scored" if self.faces else "no face found")

    def to_dict(self) -> dict:
        return {"path": self.path, "status": self.status, "input": self.input,
                "faces": [f.to_dict() for f in self.faces], "width": self.width, "height": self.height,
                "heatmap": self.heatmap, "error": self.error}


# ------------------------------------------------------------- detector
def _nms(order: Iterable[int], boxes: np.ndarray, k: int, max_iou: float = 0.25) -> list[int]:
    """Greedy non-maximum suppression: the first ``k`` indices of ``order`` whose
    boxes overlap every earlier pick by at most ``max_iou`` (neighbouring patches
    share most of their field, so without this the top few are one spot)."""
    picks: list[int] = []
    for i in order:
        t, l, b, r = boxes[i]
        area = max(0, b - t) * max(0, r - l)
        ok = True
        for j in picks:
            t2, l2, b2, r2 = boxes[j]
            inter = max(0, min(b, b2) - max(t, t2)) * max(0, min(r, r2) - max(l, l2))
            union = area + max(0, b2 - t2) * max(0, r2 - l2) - inter
            if union > 0 and inter / union > max_iou:
                ok = False
                break
        if ok:
            picks.append(int(i))
            if len(picks) == k:
                break
    return picks


class Detector:
    """An :class:`~patchforensics.scoring.engine.Engine` and a decision threshold; scores PIL images.

    ``threshold``: ``default`` (the card's :meth:`~ModelCard.default_threshold`), the name of
    a threshold stored with the model (``fpr3pct``, ``fpr1pct``, ``eer`` …) or a ``p(fake)``
    value in (0, 1). A model without stored
    thresholds falls back to p(fake) >= 0.5, with a warning.
    """

    def __init__(self, engine: Engine, threshold: str | float = DEFAULT_THRESHOLD,
                 align_style: str = DEFAULT_ALIGN_STYLE):
        require(align_style in STYLES, "align_style", f"must be one of {', '.join(STYLES)}")
        self.engine = engine
        self.threshold_name, self.p_fake_threshold = resolve_threshold(engine.card, threshold)
        self.align_style = align_style
        self._landmarker: FaceLandmarker | None = None     # loaded when the first face is looked for

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the face finder (mediapipe graphs), if one was loaded."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    @property
    def card(self) -> ModelCard:
        return self.engine.card

    def analyze(self, images: Sequence[Image.Image], top_k: int = 3) -> list[Analysis]:
        """Score RGB images (any sizes); returns one :class:`Analysis` each."""
        if not images:
            return []
        inputs, logits = self.engine.score_images(images)              # logits (N, 2, H', W')
        p_fake = 1.0 - aggregate(logits)["after_softmax"].double().numpy()
        patch_fake = self.card.p_fake(logits).numpy()                     # (N, H', W')
        boxes = self.card.patch_boxes(inputs[0].size[0])
        if boxes.shape[:2] != patch_fake.shape[1:]:
            raise RuntimeError(f"model output {patch_fake.shape[1:]} does not match its receptive field "
                               f"{boxes.shape[:2]}")
        boxes = boxes.reshape(-1, 4)
        transform = self.card.transform()
        out = []
        for i, im in enumerate(images):
            window = input_window(im.width, im.height, transform)
            flat = patch_fake[i].reshape(-1)
            picks = _nms(np.argsort(-flat, kind="stable"), boxes, top_k)
            patches = [Patch(window.to_original(boxes[j]), tuple(int(v) for v in boxes[j]), float(flat[j]))
                       for j in picks]
            out.append(Analysis(p_fake=float(p_fake[i]), is_fake=bool(p_fake[i] >= self.p_fake_threshold),
                                patch_p_fake=patch_fake[i], top_patches=patches, input_image=inputs[i],
                                window=window, to_original=window.affine,
                                face_box=window.to_original((0, 0, window.side, window.side))))
        return out

    def is_aligned(self, image: Image.Image) -> bool:
        """The ``auto`` rule: an image exactly the model's input square (``load_size`` x
        ``load_size``) is taken to be an aligned face."""
        side = self.card.transform().load_size
        return image.width == image.height == side

    def find_faces(self, image: Image.Image) -> list[AlignedFace]:
        """Every face of an RGB image, aligned (``align_style``) to the model's
        ``load_size``, largest first; ``[]`` when there is none."""
        if self._landmarker is None:
            self._landmarker = FaceLandmarker()
        rgb = np.asarray(image)
        return align_faces(rgb, self._landmarker.detect(rgb), STYLES[self.align_style],
                           self.card.transform().load_size, "all")

    def screen(self, images: Sequence[Image.Image], faces: str = "auto", top_k: int = 3) -> list[Screened]:
        """Score every face of RGB images of any size (``faces``: one of
        :data:`FACE_MODES`); one :class:`Screened` per image, all faces scored in one batch."""
        require(faces in FACE_MODES, "faces", f"must be one of {', '.join(FACE_MODES)}")
        out, inputs, owners = [], [], []
        for i, im in enumerate(images):
            aligned = faces == "aligned" or (faces == "auto" and self.is_aligned(im))
            out.append(Screened("aligned" if aligned else "found", [], im.width, im.height))
            for face in [None] if aligned else self.find_faces(im):
                inputs.append(im if face is None else face.image)
                owners.append((i, face))
        for (i, face), a in zip(owners, self.analyze(inputs, top_k)):
            out[i].faces.append(a if face is None else _on_original(a, face, out[i].width, out[i].height))
        return out


def _on_original(a: Analysis, face: AlignedFace, width: int, height: int) -> Analysis:
    """``a`` (scored on the aligned ``face``) with its boxes and map in the original ``width x height`` image."""
    to_face = output_to_source(face.quad, a.window.width)          # aligned px -> original px
    to_original = np.column_stack([to_face[:, :2] @ a.to_original[:, :2],
                                   to_face[:, :2] @ a.to_original[:, 2] + to_face[:, 2]])
    patches = [replace(p, box=map_box(to_original, p.input_box, width, height)) for p in a.top_patches]
    x0, y0, x1, y1 = face.box
    face_box = (max(0, int(np.floor(y0))), max(0, int(np.floor(x0))),
                min(height, int(np.ceil(y1))), min(width, int(np.ceil(x1))))
    return replace(a, top_patches=patches, to_original=to_original, face_box=face_box, quad=face.quad)


def resolve_threshold(card: ModelCard, threshold: str | float) -> tuple[str, float]:
    """``(name, p(fake) threshold)`` for a threshold stored on ``card`` or a p(fake) value."""
    stored = card.thresholds
    if threshold == DEFAULT_THRESHOLD and card.default_threshold():
        threshold = card.default_threshold()
    if isinstance(threshold, str) and threshold in stored:
        return threshold, card.p_fake_threshold(threshold)
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = None
    if value is not None:
        if not 0 < value < 1:
            raise ConfigError(f"threshold: a p(fake) threshold must be in (0, 1), got {value}")
        return f"p_fake>={value:g}", value
    if not stored:
        if threshold == DEFAULT_THRESHOLD:
            warnings.warn("this model has no calibrated thresholds (run 'patchforensics calibrate "
                          "CHECKPOINT_DIR'); deciding at p(fake) >= 0.5", stacklevel=3)
            return "p_fake>=0.5", 0.5
        raise ConfigError("threshold: the model has no stored thresholds; run 'patchforensics calibrate' "
                          "or give a p(fake) value such as --threshold 0.5")
    raise ConfigError(f"threshold: unknown threshold {threshold!r}; this model has "
                      f"{', '.join(sorted(stored))}, or give a p(fake) value such as 0.5")


def open_detector(model: str | os.PathLike | None = None, which: str | None = None, backend: str = "auto",
                  device: str = "auto", threshold: str | float = DEFAULT_THRESHOLD,
                  align_style: str = DEFAULT_ALIGN_STYLE) -> Detector:
    """A :class:`Detector` over a checkpoint folder, an ``.onnx`` file or (``None``) the bundled detector."""
    return Detector(Engine.load(model, which, FastPath(backend=backend, cache_mb=0), device), threshold,
                    align_style)


# ------------------------------------------------------------- detect
@dataclass
class DetectConfig:
    """Options of ``patchforensics detect``."""

    paths: list[str]
    model: str | None = None            # checkpoint folder or .onnx; None = the bundled detector
    which_epoch: str | None = None      # default: bestval (bundled: weights)
    backend: str = "auto"               # auto | torch | onnx
    threshold: str = DEFAULT_THRESHOLD  # stored threshold name, or a p(fake) value
    heatmaps: str | None = None         # folder for overlay PNGs
    faces: str = "auto"                 # auto | find | aligned (FACE_MODES)
    align_style: str = DEFAULT_ALIGN_STYLE
    top_k: int = 3
    batch_size: int = 32
    device: str = "auto"
    force: bool = False

    def validate(self) -> None:
        require(bool(self.paths), "paths", "give at least one image, folder or glob pattern")
        require(self.faces in FACE_MODES, "faces", f"must be one of {', '.join(FACE_MODES)}")
        require(self.align_style in STYLES, "align_style", f"must be one of {', '.join(STYLES)}")
        require(self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}")
        require(self.batch_size > 0, "batch_size", "must be > 0")
        require(self.top_k > 0, "top_k", "must be > 0")


@dataclass
class DetectResult:
    """``images`` in input order, each with its faces."""

    images: list[ImageResult]
    model_name: str
    threshold_name: str
    p_fake_threshold: float
    skipped: SkipLog = field(default_factory=SkipLog)

    @property
    def faces(self) -> list[tuple[ImageResult, FaceResult]]:
        """Every scored face with its image, in input order."""
        return [(im, f) for im in self.images for f in im.faces]

    @property
    def no_face(self) -> list[ImageResult]:
        """Images that were read but hold no face (no verdict)."""
        return [im for im in self.images if im.status == "no face found"]


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files, folders (searched recursively for images) and glob patterns -> image files.

    Raises ``FileNotFoundError`` for a path that does not exist or a pattern or
    folder with no images, before any work starts. An explicitly named file is
    always kept (if it is not an image it is reported as unreadable later).
    """
    found: list[Path] = []
    for raw in paths:
        if glob.has_magic(raw) and not Path(raw).exists():
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                raise FileNotFoundError(f"the pattern {raw!r} matches nothing")
            for m in matches:
                found.extend(list_images(m) if Path(m).is_dir() else [Path(m)])
            continue
        images = list_images(raw)      # raises FileNotFoundError with a hint
        if not images:
            raise FileNotFoundError(f"{raw}: no images found in this folder")
        found.extend(images)
    seen: set[str] = set()
    unique = []
    for p in found:
        if str(p) not in seen:
            seen.add(str(p))
            unique.append(p)
    return unique


def heatmap_names(paths: Sequence[Path]) -> list[str]:
    """Distinct PNG names for overlay files: the path below the inputs' common folder,
    with ``/`` turned into ``__`` (``ffhq/test/00001.png`` -> ``ffhq__test__00001.png``)."""
    resolved = [p.resolve() for p in paths]
    if not resolved:
        return []
    common = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    return ["__".join(p.relative_to(common).with_suffix("").parts) + ".png" for p in resolved]


def render_overlay(analysis: Analysis, caption: str | None = None, alpha: float = 0.45,
                   min_side: int = 256) -> Image.Image:
    """The model input and the p(fake) heatmap over it, side by side, with the top
    patches outlined (the most suspicious in white) and the colour bar (red =
    fake-looking, :mod:`~patchforensics.core.heatmap`) at the right."""
    base = analysis.input_image
    heat = overlay(base, analysis.patch_p_fake, alpha=alpha)
    pair = Image.new("RGB", (base.width * 2, base.height))
    pair.paste(base, (0, 0))
    pair.paste(heat, (base.width, 0))
    scale = max(1, int(np.ceil(min_side / base.height)))
    if scale > 1:
        pair = pair.resize((pair.width * scale, pair.height * scale), Image.Resampling.NEAREST)
    a = np.array(pair)
    for rank, p in reversed(list(enumerate(analysis.top_patches))):
        t, l, b, r = (v * scale for v in p.input_box)
        colour = (255, 255, 255) if rank == 0 else (40, 40, 40)
        cv2.rectangle(a, (l + base.width * scale, t), (r - 1 + base.width * scale, b - 1), colour, 2)
    if caption:
        for thick, col in ((3, (0, 0, 0)), (1, (255, 255, 255))):
            cv2.putText(a, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, col, thick, cv2.LINE_AA)
    return with_colorbar(Image.fromarray(a))


def render_on_original(image: Image.Image, faces: Sequence[Analysis], captions: Sequence[str],
                       alpha: float = 0.45, max_side: int = 1024, min_side: int = 256) -> Image.Image:
    """The original image with each face's p(fake) map warped back onto it (through
    its ``to_original`` map), the face's examined square outlined and captioned,
    and the colour bar at the right; scaled so its longer side is at most
    ``max_side`` px (and its height at least ``min_side``)."""
    scale = min(1.0, max_side / max(image.size))
    scale = max(scale, min_side / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    a = np.asarray(image.resize(size, Image.Resampling.LANCZOS) if size != image.size else image,
                   dtype=np.float32).copy()
    corners = []
    for f in faces:
        side = f.input_image.width
        to_shown = pixel_affine(f.to_original * scale)        # input pixel index -> shown pixel index
        colour = cv2.warpAffine(colorize(f.patch_p_fake, (side, side)).astype(np.float32), to_shown, size,
                                flags=cv2.INTER_LINEAR, borderValue=0)
        weight = alpha * cv2.warpAffine(np.ones((side, side), np.float32), to_shown, size,
                                        flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
        a = a * (1 - weight) + colour * weight
        corners.append([map_point(f.to_original * scale, x, y) for x, y in ((0, 0), (0, side), (side, side),
                                                                             (side, 0))])
    a = np.uint8(np.clip(np.rint(a), 0, 255))
    for quad, caption in zip(corners, captions):
        cv2.polylines(a, [np.int32(np.rint(np.array(quad) - 0.5))], True, (255, 255, 255), 2, cv2.LINE_AA)
        x, y = min(p[0] for p in quad), min(p[1] for p in quad)
        org = (int(max(2, x)), int(max(14, y - 4)))
        for thick, col in ((3, (0, 0, 0)), (1, (255, 255, 255))):
            cv2.putText(a, caption, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, col, thick, cv2.LINE_AA)
    return with_colorbar(Image.fromarray(a))


def face_caption(index: int, a: Analysis) -> str:
    """``#0 fake 0.83``: a face's label on pictures."""
    return f"#{index} {'fake' if a.is_fake else 'real'} {a.p_fake:.2f}"


def render_screened(image: Image.Image, screened: Screened) -> Image.Image | None:
    """``detect``'s heatmap picture of one image: for an aligned input its examined
    square beside the heatmap (:func:`render_overlay`); for found faces the original
    with every face's heatmap on it (:func:`render_on_original`); ``None`` when no face was found."""
    if not screened.faces:
        return None
    if screened.mode == "aligned":
        a = screened.faces[0]
        return render_overlay(a, f"p(fake) {a.p_fake:.2f}: {'fake' if a.is_fake else 'real'}")
    return render_on_original(image, screened.faces, [face_caption(i, a) for i, a in enumerate(screened.faces)])


def face_results(screened: Screened) -> list[FaceResult]:
    """``detect``'s rows for one screened image."""
    return [FaceResult(i, a.p_fake, "fake" if a.is_fake else "real", a.face_box, a.top_patches[0].box,
                       a.top_patches[0].p_fake, None if a.quad is None else np.round(a.quad, 2).tolist())
            for i, a in enumerate(screened.faces)]


def detect(cfg: DetectConfig, progress: bool = True, engine: Engine | None = None,
           on_skip=None) -> DetectResult:
    """Score every face of every image under ``cfg.paths``; unreadable files are
    skipped and listed, images without a face get no verdict.

    ``on_skip(path, reason)`` is called as each unreadable file is met (the CLI
    prints it then, so the run need not end before the user hears of it).
    """
    cfg.validate()
    paths = expand_paths(cfg.paths)                       # fails before the model loads
    if cfg.heatmaps:
        fileio.ensure_new_output(cfg.heatmaps, cfg.force)
    detector = (open_detector(cfg.model, cfg.which_epoch, cfg.backend, cfg.device, cfg.threshold, cfg.align_style)
                if engine is None else Detector(engine, cfg.threshold, cfg.align_style))
    names = heatmap_names(paths) if cfg.heatmaps else []
    result = DetectResult([], detector.engine.name, detector.threshold_name, detector.p_fake_threshold)
    rows: list[ImageResult | None] = [None] * len(paths)      # kept in input order
    bar = tqdm(total=len(paths), desc="detect", unit="img", disable=not progress)
    with detector:
        for start in range(0, len(paths), cfg.batch_size):
            chunk = list(range(start, min(start + cfg.batch_size, len(paths))))
            images, kept = [], []
            for i in chunk:
                try:
                    images.append(load_rgb(paths[i]))
                    kept.append(i)
                except ImageLoadError as e:
                    result.skipped.add(e)
                    rows[i] = ImageResult(str(paths[i]), error=e.reason)
                    if on_skip:
                        on_skip(str(paths[i]), e.reason)
            for i, image, screened in zip(kept, images, detector.screen(images, cfg.faces, cfg.top_k)):
                row = ImageResult(str(paths[i]), screened.mode, face_results(screened), image.width, image.height)
                picture = render_screened(image, screened) if cfg.heatmaps else None
                if picture is not None:
                    row.heatmap = str(Path(cfg.heatmaps) / names[i])
                    fileio.save_image(picture, row.heatmap)
                rows[i] = row
            bar.update(len(chunk))
    bar.close()
    result.images = [r for r in rows if r is not None]
    return result


# ------------------------------------------------------------- output
CSV_FIELDS = ("path", "status", "input", "face", "p_fake", "verdict", "face_top", "face_left", "face_bottom",
              "face_right", "box_top", "box_left", "box_bottom", "box_right", "box_p_fake", "width", "height",
              "heatmap", "error")


def _csv_rows(im: ImageResult) -> Iterable[list]:
    head = [im.path, im.status, im.input or ""]
    tail = [im.width or "", im.height or "", im.heatmap or "", im.error or ""]
    if not im.faces:
        yield head + [""] * 12 + tail
    for f in im.faces:
        yield head + [f.index, f"{f.p_fake:.6f}", f.verdict, *f.face_box, *f.box, f"{f.box_p_fake:.6f}"] + tail


def summary_line(result: DetectResult) -> str:
    """``3 faces scored in 2 images: 1 fake, 2 real; 1 image with no face (no verdict) (fake when …)``."""
    faces = [f for _, f in result.faces]
    n_fake = sum(f.verdict == "fake" for f in faces)
    n_images = sum(im.status == "scored" for im in result.images)
    line = (f"{len(faces)} face{'s' * (len(faces) != 1)} scored in {n_images} image{'s' * (n_images != 1)}: "
            f"{n_fake} fake, {len(faces) - n_fake} real")
    if result.no_face:
        n = len(result.no_face)
        line += f"; {n} image{'s' * (n != 1)} with no face found (no verdict)"
    if len(result.skipped):
        line += f"; {len(result.skipped)} skipped"
    return line + (f" (fake when p(fake) >= {result.p_fake_threshold:.4f}, threshold '{result.threshold_name}' "
                   f"of {result.model_name})")


def format_result(result: DetectResult, fmt: str = "table") -> str:
    """The result as a text table (one line per face, or per image without one), JSON
    (one entry per image, its faces inside) or CSV (one row per face, or per image without one)."""
    if fmt == "json":
        return json.dumps({"model": result.model_name, "threshold": result.threshold_name,
                           "p_fake_threshold": result.p_fake_threshold,
                           "results": [im.to_dict() for im in result.images],
                           "skipped": result.skipped.as_list()}, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_FIELDS)
        for im in result.images:
            w.writerows(_csv_rows(im))
        return buf.getvalue().rstrip("\n")
    if fmt != "table":
        raise ConfigError(f"format: must be one of {', '.join(FORMATS)}")
    lines = [f"{'p(fake)':>7}  {'verdict':<7}  {'face':<7}  {'face box (t,l,b,r)':<20}  "
             f"{'most suspicious patch (t,l,b,r)':<32}  file"]
    for im in result.images:
        if im.error:
            lines.append(f"{'-':>7}  {'skipped':<7}  {'-':<7}  {im.error[:53]:<54}  {im.path}")
        elif not im.faces:
            lines.append(f"{'-':>7}  {'none':<7}  {'no face':<7}  {'-':<20}  {'-':<32}  {im.path}")
        for f in im.faces:
            face = "aligned" if im.input == "aligned" else f"#{f.index}"
            box = "({},{},{},{})".format(*f.box) + f" p={f.box_p_fake:.2f}"
            lines.append(f"{f.p_fake:7.3f}  {f.verdict:<7}  {face:<7}  {'({},{},{},{})'.format(*f.face_box):<20}  "
                         f"{box:<32}  {im.path}")
    lines.append(summary_line(result))
    return "\n".join(lines)
