"""``detect``: screen images with a trained patch classifier.

For each face in each image: ``p(fake)``, the decision at a calibrated
threshold, the face's box and the most suspicious patches (boxes in pixels of
the *original* image), how much of its square was alignment fill and how much
it was enlarged and, optionally, a heatmap PNG and one HTML report of all faces
(:mod:`~.report`). The text forms of the result are in :mod:`~.results`.

Which faces are scored (``faces``, see :data:`FACE_MODES`):

- ``aligned``: the image *is* one aligned face, scored as given (below);
- ``find``: mediapipe's face mesh (:class:`~patchforensics.data.align.FaceLandmarker`)
  finds every face; each is aligned the way the training faces were
  (:func:`~patchforensics.data.align.align_faces`, FFHQ style by default: the
  shared faces and the StyleGAN fakes are FFHQ-aligned) straight to the model's
  ``load_size`` and scored; an image without a face gets **no verdict**;
- ``auto`` (default): ``aligned`` when the image is exactly the model's input
  square (``load_size`` x ``load_size``, 128 x 128 for the bundled detector)
  and a face is found in it (else no face, no verdict), ``find`` otherwise.

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
corners, rounded outward to whole pixels and clipped to the image (never
inverted, :func:`map_box`); the heatmap is warped back onto the original with
the same map.

Scores: ``p(fake) = 1 - P(real)`` with ``P(real)`` the ``after_softmax``
aggregation (mean of the per-patch softmax), computed by the same
:class:`~patchforensics.scoring.engine.Engine` as ``test`` and ``visualize``;
for a found face whose square leaves the photo, the patches more than half in
the alignment's fill (:data:`MAX_PATCH_FILL`) are left out of that mean. A
face is called fake when ``p(fake) >= 1 - t`` for the chosen stored threshold
``t`` (``calibrate`` stores them on ``P(real)``; :meth:`ModelCard.p_fake_threshold`
converts).
"""
from __future__ import annotations

import glob
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..core import fileio
from ..core.config import ConfigError, require
from ..core.heatmap import colorize, overlay, with_colorbar
from ..core.imageio import ImageLoadError, list_images, load_rgb
from ..data.align import STYLES, AlignedFace, FaceLandmarker, align_faces, output_to_source, pixel_affine
from ..data.transforms import TransformConfig
from ..evaluation.calibrate import validation_false_alarm_rate
from ..models.card import ModelCard
from ..scoring.engine import Engine
from ..scoring.fastpath import BACKENDS, FastPath
from ..scoring.metrics import aggregate
from ..scoring.onnx_backend import is_onnx_file
from .report import ReportFace, png_data_url, write_report
from .results import DetectResult, FaceResult, ImageResult
from .scope import scope_note

#: the card's default threshold (``fpr3pct``, else ``eer``: :meth:`ModelCard.default_threshold`)
DEFAULT_THRESHOLD = "default"
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
    to a ``width x height`` image. Always a valid box inside the image
    (``0 <= top < bottom <= height``, the same across): one mapped wholly outside
    the image becomes the one-pixel strip of the image's edge nearest to it."""
    t, l, b, r = (float(v) for v in box)
    xs, ys = zip(*(map_point(affine, x, y) for x, y in ((l, t), (r, t), (r, b), (l, b))))
    top = min(max(0, int(np.floor(min(ys)))), height - 1)
    left = min(max(0, int(np.floor(min(xs)))), width - 1)
    bottom = max(min(height, int(np.ceil(max(ys)))), top + 1)
    right = max(min(width, int(np.ceil(max(xs)))), left + 1)
    return top, left, bottom, right


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The (2, 3) affine map ``outer ∘ inner`` (``inner`` first)."""
    return np.column_stack([outer[:, :2] @ inner[:, :2], outer[:, :2] @ inner[:, 2] + outer[:, 2]])


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


# ------------------------------------------------------------- placement
#: a patch whose field is more than this share alignment fill (outside the photo) is left out of
#: p(fake) and of the top patches: the blurred, median-coloured fill looks like the flat backdrops
#: the detector takes for fake, and it is not the photo's evidence
MAX_PATCH_FILL = 0.5


@dataclass(frozen=True)
class Placement:
    """Where one model input lies in its photo: ``to_original`` maps model-input px
    ``(x, y)`` (``side`` x ``side``) to photo px; the photo is ``width x height``;
    ``face_box`` ``(top, left, bottom, right)`` in photo px; ``quad`` the aligned
    square's corners ``(x, y)`` in photo px (found faces only)."""

    to_original: np.ndarray
    side: int
    width: int
    height: int
    face_box: tuple[int, int, int, int]
    quad: np.ndarray | None = None

    def inside_photo(self) -> np.ndarray:
        """``(side, side)`` bool: the model-input pixels whose centre falls inside the photo
        (the others are the fill alignment adds where its square leaves the photo)."""
        centres = np.arange(self.side) + 0.5
        xs, ys = np.meshgrid(centres, centres)
        a = self.to_original
        px = a[0, 0] * xs + a[0, 1] * ys + a[0, 2]
        py = a[1, 0] * xs + a[1, 1] * ys + a[1, 2]
        return (px >= 0) & (px < self.width) & (py >= 0) & (py < self.height)

    def patch_fill(self, boxes: np.ndarray) -> np.ndarray:
        """``(P,)`` share of each ``(top, left, bottom, right)`` model-input box that is fill."""
        outside = np.pad(np.cumsum(np.cumsum(~self.inside_photo(), 0), 1), ((1, 0), (1, 0)))   # summed-area table
        t, l, b, r = (boxes[:, k] for k in range(4))
        counts = outside[b, r] - outside[t, r] - outside[b, l] + outside[t, l]
        return counts / np.maximum((b - t) * (r - l), 1)

    def upscale(self) -> float:
        """Model-input px per photo px: above 1 the face was smaller than the model's input and
        was enlarged to be scored."""
        return float(1.0 / np.sqrt(abs(np.linalg.det(self.to_original[:, :2]))))


def as_is(image: Image.Image, window: InputWindow) -> Placement:
    """An image scored as it is: the model sees its centred square (``window``)."""
    return Placement(window.affine, window.side, image.width, image.height,
                     window.to_original((0, 0, window.side, window.side)))


def on_photo(face: AlignedFace, window: InputWindow, width: int, height: int) -> Placement:
    """A face found in a ``width x height`` photo and aligned: the window of its aligned
    picture followed by the alignment's aligned-to-photo map; its box is the mesh's extent."""
    to_original = compose(output_to_source(face.quad, window.width), window.affine)
    x0, y0, x1, y1 = face.box
    # the mesh may reach past the photo's edge (a face cut by it): clipped like every box
    face_box = map_box(np.eye(2, 3), (y0, x0, y1, x1), width, height)
    return Placement(to_original, window.side, width, height, face_box, face.quad)


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
    ``None`` for an aligned input. ``inside_photo`` marks the model-input pixels
    from the photo, ``fill_share`` the share of the others (alignment fill: left
    out of ``p_fake`` and ``top_patches`` where a patch is mostly fill);
    ``upscale`` model-input px per photo px (above 1: an enlarged small face)."""

    p_fake: float
    is_fake: bool
    patch_p_fake: np.ndarray
    top_patches: list[Patch]
    input_image: Image.Image
    to_original: np.ndarray
    face_box: tuple[int, int, int, int]
    inside_photo: np.ndarray
    fill_share: float
    upscale: float
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

    @property
    def scope(self) -> str:
        """What the model was trained on and what it does not detect (:func:`~.scope.scope_note`)."""
        return scope_note(self.card)

    def validation_false_alarm_rate(self) -> float | None:
        """The share of validation reals called fake at this detector's threshold (the
        checkpoint's ``calibration.json``); ``None`` when unknown: an ``.onnx`` model, a
        p(fake) value as threshold, or no report of this threshold."""
        weights = self.engine.weights_file
        if weights is None or is_onnx_file(weights):
            return None
        return validation_false_alarm_rate(Path(weights).parent, self.card, self.threshold_name)

    def analyze(self, images: Sequence[Image.Image], top_k: int = 3) -> list[Analysis]:
        """Score RGB images (any sizes) as they are (their centred square); one :class:`Analysis` each."""
        transform = self.card.transform()
        return self._analyze(images, [as_is(im, input_window(im.width, im.height, transform)) for im in images],
                             top_k)

    def _analyze(self, images: Sequence[Image.Image], placements: Sequence[Placement],
                 top_k: int) -> list[Analysis]:
        """Score model inputs, each with where it lies in its photo; all in one batch."""
        if not images:
            return []
        inputs, logits = self.engine.score_images(images)              # logits (N, 2, H', W')
        p_real = aggregate(logits)["after_softmax"].double().numpy()
        patch_fake = self.card.p_fake(logits).numpy()                     # (N, H', W')
        boxes = self.card.patch_boxes(inputs[0].size[0])
        if boxes.shape[:2] != patch_fake.shape[1:]:
            raise RuntimeError(f"model output {patch_fake.shape[1:]} does not match its receptive field "
                               f"{boxes.shape[:2]}")
        boxes = boxes.reshape(-1, 4)
        out = []
        for i, placement in enumerate(placements):
            flat = patch_fake[i].reshape(-1)
            scored = placement.patch_fill(boxes) <= MAX_PATCH_FILL
            # no patch left out: the plain after_softmax mean, test's and visualize's p(fake) to the last bit
            p_fake = 1.0 - p_real[i] if scored.all() else float(flat[scored].mean(dtype=np.float64))
            picks = _nms((j for j in np.argsort(-flat, kind="stable") if scored[j]), boxes, top_k)
            patches = [Patch(map_box(placement.to_original, boxes[j], placement.width, placement.height),
                             tuple(int(v) for v in boxes[j]), float(flat[j])) for j in picks]
            inside = placement.inside_photo()
            out.append(Analysis(p_fake=float(p_fake), is_fake=bool(p_fake >= self.p_fake_threshold),
                                patch_p_fake=patch_fake[i], top_patches=patches, input_image=inputs[i],
                                to_original=placement.to_original, face_box=placement.face_box,
                                inside_photo=inside, fill_share=float(1.0 - inside.mean()),
                                upscale=placement.upscale(), quad=placement.quad))
        return out

    def _face_finder(self) -> FaceLandmarker:
        if self._landmarker is None:
            self._landmarker = FaceLandmarker()
        return self._landmarker

    def is_aligned(self, image: Image.Image) -> bool:
        """The ``auto`` rule: an image exactly the model's input square (``load_size`` x
        ``load_size``) is taken to be an aligned face; whether it holds a face at all is
        :meth:`has_face`."""
        side = self.card.transform().load_size
        return image.width == image.height == side

    def has_face(self, image: Image.Image) -> bool:
        """Whether mediapipe's face detector finds a face in ``image`` (the gate of an image
        taken as aligned under ``auto``: a flat, noise or drawn square holds none)."""
        return self._face_finder().has_face(np.asarray(image))

    def find_faces(self, image: Image.Image) -> list[AlignedFace]:
        """Every face of an RGB image, aligned (``align_style``) to the model's
        ``load_size``, largest first; ``[]`` when there is none."""
        rgb = np.asarray(image)
        return align_faces(rgb, self._face_finder().detect(rgb), STYLES[self.align_style],
                           self.card.transform().load_size, "all")

    def screen(self, images: Sequence[Image.Image], faces: str = "auto", top_k: int = 3) -> list[Screened]:
        """Score every face of RGB images of any size (``faces``: one of
        :data:`FACE_MODES`); one :class:`Screened` per image, all faces scored in one batch.

        ``auto`` takes an image of the model's input size as one aligned face only when a
        face is found in it (else: no face, no verdict). A found face with no patch mostly
        inside the photo is dropped: nothing of it would be left to score."""
        require(faces in FACE_MODES, "faces", f"must be one of {', '.join(FACE_MODES)}")
        transform = self.card.transform()
        patch_boxes = self.card.patch_boxes().reshape(-1, 4)
        out, inputs, placements, owners = [], [], [], []
        for i, im in enumerate(images):
            aligned = faces == "aligned" or (faces == "auto" and self.is_aligned(im))
            out.append(Screened("aligned" if aligned else "found", [], im.width, im.height))
            if aligned:
                if faces == "aligned" or self.has_face(im):
                    inputs.append(im)
                    placements.append(as_is(im, input_window(im.width, im.height, transform)))
                    owners.append(i)
                continue
            for face in self.find_faces(im):
                placement = on_photo(face, input_window(face.image.width, face.image.height, transform),
                                     im.width, im.height)
                if placement.patch_fill(patch_boxes).min() <= MAX_PATCH_FILL:
                    inputs.append(face.image)
                    placements.append(placement)
                    owners.append(i)
        for i, a in zip(owners, self._analyze(inputs, placements, top_k)):
            out[i].faces.append(a)
        return out


def resolve_threshold(card: ModelCard, threshold: str | float) -> tuple[str, float]:
    """``(name, p(fake) threshold)`` for a threshold stored on ``card`` or a p(fake) value."""
    stored = card.thresholds
    if threshold == DEFAULT_THRESHOLD and card.default_cut():
        return card.default_cut()
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
    report: str | None = None           # one offline HTML page of every face, sorted by p(fake)
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
        require(self.report is None or Path(self.report).suffix.lower() in (".html", ".htm"), "report",
                "give a file name ending in .html, e.g. --report screening.html")


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
    with ``/`` turned into ``__`` (``ffhq/test/00001.png`` -> ``ffhq__test__00001.png``); files
    differing only in their suffix keep it (``a.jpg.png``, ``a.png.png``)."""
    # absolute as typed, symlinks kept: a link's heatmap is named after the link, not its target
    typed = [Path(os.path.abspath(p)) for p in paths]
    if not typed:
        return []
    common = Path(os.path.commonpath([str(p.parent) for p in typed]))
    names = ["__".join(p.relative_to(common).with_suffix("").parts) for p in typed]
    clash = {n for n in names if names.count(n) > 1}       # a.jpg and a.png side by side keep their suffix
    return [(f"{n}{p.suffix}" if n in clash else n) + ".png" for n, p in zip(names, typed)]


#: height (px) of a face's picture in the report: the model's input, not enlarged
REPORT_SIDE = 128
#: the grey that washes out alignment fill in heatmaps
FILL_GREY = 160.0
CAPTION_FONT, CAPTION_SCALE, CAPTION_OUTLINE = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 3


def render_overlay(analysis: Analysis, caption: str | None = None, alpha: float = 0.45,
                   min_side: int = 256) -> Image.Image:
    """The model input and the p(fake) heatmap over it, side by side, with the top
    patches outlined (the most suspicious in white) and the colour bar (red =
    fake-looking, :mod:`~patchforensics.core.heatmap`) at the right. Alignment fill
    (outside the photo) is washed grey in the heatmap: it does not count."""
    base = analysis.input_image
    heat = np.asarray(overlay(base, analysis.patch_p_fake, alpha=alpha), dtype=np.float32)
    fill = ~analysis.inside_photo
    heat[fill] = 0.3 * heat[fill] + 0.7 * FILL_GREY
    pair = Image.new("RGB", (base.width * 2, base.height))
    pair.paste(base, (0, 0))
    pair.paste(Image.fromarray(np.uint8(np.rint(heat))), (base.width, 0))
    scale = max(1, int(np.ceil(min_side / base.height)))
    if scale > 1:
        pair = pair.resize((pair.width * scale, pair.height * scale), Image.Resampling.NEAREST)
    a = np.array(pair)
    for rank, p in reversed(list(enumerate(analysis.top_patches))):
        t, l, b, r = (v * scale for v in p.input_box)
        colour = (255, 255, 255) if rank == 0 else (40, 40, 40)
        cv2.rectangle(a, (l + base.width * scale, t), (r - 1 + base.width * scale, b - 1), colour, 2)
    if caption:
        _put_caption(a, caption, (6, 18))
    return with_colorbar(Image.fromarray(a))


def _put_caption(a: np.ndarray, text: str, origin: tuple[int, int]) -> None:
    """White text outlined in black, its baseline starting at ``origin``."""
    for thick, col in ((CAPTION_OUTLINE, (0, 0, 0)), (1, (255, 255, 255))):
        cv2.putText(a, text, origin, CAPTION_FONT, CAPTION_SCALE, col, thick, cv2.LINE_AA)


def caption_boxes(anchors: Sequence[tuple[float, float]], captions: Sequence[str], width: int,
                  height: int) -> list[tuple[int, int, int, int]]:
    """Where each caption goes on a ``width x height`` picture, as ``(x0, y0, x1, y1)``:
    just above its anchor (a face box's top-left corner), kept inside the picture, and
    moved down below any caption already placed that it would overlap (several faces in
    a small photo, or squares leaving the photo, would otherwise stack their captions)."""
    placed: list[tuple[int, int, int, int]] = []
    for (ax, ay), text in zip(anchors, captions):
        (w, h), baseline = cv2.getTextSize(text, CAPTION_FONT, CAPTION_SCALE, CAPTION_OUTLINE)
        h += baseline
        x0 = int(min(max(2, ax), max(2, width - w - 2)))
        y0 = int(min(max(2, ay - h - 2), max(2, height - h - 2)))
        while True:
            hits = [p for p in placed if x0 < p[2] and p[0] < x0 + w and y0 < p[3] and p[1] < y0 + h]
            if not hits:
                break
            y0 = max(p[3] for p in hits) + 2
        placed.append((x0, y0, x0 + w, y0 + h))
    return placed


def render_on_original(image: Image.Image, faces: Sequence[Analysis], captions: Sequence[str],
                       alpha: float = 0.45, max_side: int = 1024, min_side: int = 256) -> Image.Image:
    """The original image with each face's p(fake) map warped back onto it (through
    its ``to_original`` map), the face's examined square outlined, each face captioned
    at its face box (:func:`caption_boxes`), and the colour bar at the right; scaled so
    its longer side is at most ``max_side`` px (and its height at least ``min_side``)."""
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
    for quad in corners:
        cv2.polylines(a, [np.int32(np.rint(np.array(quad) - 0.5))], True, (255, 255, 255), 2, cv2.LINE_AA)
    anchors = [(f.face_box[1] * scale, f.face_box[0] * scale) for f in faces]
    for (x0, _, _, y1), caption in zip(caption_boxes(anchors, captions, size[0], size[1]), captions):
        _put_caption(a, caption, (x0, y1 - cv2.getTextSize(caption, CAPTION_FONT, CAPTION_SCALE,
                                                           CAPTION_OUTLINE)[1]))
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
                       a.top_patches[0].p_fake, round(a.fill_share, 4), round(a.upscale, 4),
                       None if a.quad is None else np.round(a.quad, 2).tolist())
            for i, a in enumerate(screened.faces)]


def detect(cfg: DetectConfig, progress: bool = True, engine: Engine | None = None,
           on_skip=None) -> DetectResult:
    """Score every face of every image under ``cfg.paths``; unreadable files are
    skipped and listed, images without a face get no verdict. Writes the heatmaps
    and the report (:mod:`~.report`) when ``cfg`` asks for them.

    ``on_skip(path, reason)`` is called as each unreadable file is met (the CLI
    prints it then, so the run need not end before the user hears of it).
    """
    cfg.validate()
    paths = expand_paths(cfg.paths)                       # fails before the model loads
    if cfg.heatmaps:
        fileio.ensure_new_output(cfg.heatmaps, cfg.force)
    if cfg.report:
        fileio.ensure_new_file(cfg.report, cfg.force)
    detector = (open_detector(cfg.model, cfg.which_epoch, cfg.backend, cfg.device, cfg.threshold, cfg.align_style)
                if engine is None else Detector(engine, cfg.threshold, cfg.align_style))
    names = heatmap_names(paths) if cfg.heatmaps else []
    result = DetectResult([], detector.engine.name, detector.threshold_name, detector.p_fake_threshold,
                          detector.scope, detector.validation_false_alarm_rate())
    rows: list[ImageResult | None] = [None] * len(paths)      # kept in input order
    cards: list[ReportFace] = []
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
                if cfg.report:
                    cards += [ReportFace(row.path, face, png_data_url(render_overlay(a, min_side=REPORT_SIDE)))
                              for face, a in zip(row.faces, screened.faces)]
                rows[i] = row
            bar.update(len(chunk))
    bar.close()
    result.images = [r for r in rows if r is not None]
    if cfg.report:
        write_report(cfg.report, result, cards)
    return result
