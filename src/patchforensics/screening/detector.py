"""The detector: an engine and a calibrated threshold that find, align and score every face of an image.

How images reach the model, how patches are left out and how p(fake) is formed:
docs/detect.md, "How a face is scored".
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from ..core.config import ConfigError, require
from ..core.imageio import load_rgb
from ..data.align import STYLES, AlignedFace, FaceLandmarker, align_faces, is_photographic
from ..evaluation.calibrate import validation_false_alarm_rate
from ..models.card import ModelCard
from ..scoring.engine import Engine
from ..scoring.metrics import aggregate
from ..scoring.runtime import FastPath
from ..scoring.onnx_backend import is_onnx_file
from .faces import PICK_MARGIN, PICK_MAX_IOU, FaceMaps, Patch, ScoredFace, colour_caveat, verdict_at
from .geometry import Placement, as_is, input_window, map_box, on_photo
from .scope import scope_note

#: the card's default threshold (``fpr3pct``, else ``eer``: :meth:`ModelCard.default_threshold`)
DEFAULT_THRESHOLD = "default"
#: which faces are scored (``--faces``, ``?faces=``), each with what it does; the first is the default
FACE_MODES = {
    "auto": "an image of exactly the model's input size (128x128 for the bundled detector) is one aligned "
            "face if a face is found in it (else: no face, no verdict), any other is searched for faces",
    "find": "always find and align faces",
    "aligned": "score every image as it is (centred square)",
}
DEFAULT_FACE_MODE = next(iter(FACE_MODES))
#: how a screened image's faces were obtained: taken as one aligned face, or found and aligned
INPUT_KINDS = ("aligned", "found")
#: how found faces are aligned: as the shared training faces (FFHQ; StyleGAN's fakes share it)
DEFAULT_ALIGN_STYLE = "ffhq"
#: a patch whose field is more than this share alignment fill (outside the photo) is left out of
#: p(fake) and of the top patches: the blurred, median-coloured fill looks like the flat backdrops
#: the detector takes for fake, and it is not the photo's evidence
MAX_PATCH_FILL = 0.5


def face_modes_text(default: str | None = DEFAULT_FACE_MODE) -> str:
    """``auto (default): …; find: …; aligned: …``: the face modes in words (``--help``, the API)."""
    return "; ".join(f"{mode}{' (default)' * (mode == default)}: {what}" for mode, what in FACE_MODES.items())


@dataclass
class Screened:
    """One image screened: ``mode`` says how its faces were obtained (one of
    :data:`INPUT_KINDS`), ``faces`` holds one :class:`~.faces.ScoredFace` per face,
    largest first (empty: no face found, no verdict)."""

    mode: str
    faces: list[ScoredFace]
    width: int
    height: int


def centre_boxes(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` ``(top, left, bottom, right)`` boxes -> the middle of each: half its height and width
    (at least 1 px), centred in it. Of a patch's receptive field it is where to look: about half of
    what moves the patch's score lies there (the gradient's mass, docs/detect.md)."""
    boxes = np.asarray(boxes, dtype=np.int64)
    size = boxes[:, 2:] - boxes[:, :2]
    half = np.maximum(1, np.rint(size / 2).astype(np.int64))
    start = boxes[:, :2] + (size - half) // 2
    return np.concatenate([start, start + half], axis=1)


def pick_patches(patch_fake: np.ndarray, scored: np.ndarray, centres: np.ndarray, k: int) -> list[int]:
    """The top patches' indices (:data:`~.faces.PICK_MARGIN`, :data:`~.faces.PICK_MAX_IOU`): among the
    ``scored`` patches, those with p(fake) within the margin of the highest, kept greedily from the
    most suspicious on when their ``centres`` box overlaps every earlier pick's by at most the IoU
    (OpenCV's ``NMSBoxes``); at most ``k``, the first the highest p(fake) (lowest index on a tie)."""
    candidates = np.flatnonzero(scored)
    if not candidates.size:
        return []
    candidates = candidates[np.argsort(-patch_fake[candidates], kind="stable")]
    candidates = candidates[patch_fake[candidates] >= patch_fake[candidates[0]] - PICK_MARGIN]
    rects = [[int(l), int(t), int(r - l), int(b - t)] for t, l, b, r in centres[candidates]]
    # NMSBoxes ranks by score (float32, keeping those above a threshold >= 0): the candidates' rank,
    # n down to 1, keeps the order above exactly (near-equal p(fake) near 1 are equal in float32)
    kept = cv2.dnn.NMSBoxes(rects, np.arange(len(candidates), 0, -1, dtype=np.float32).tolist(), 0.0,
                            PICK_MAX_IOU)
    return [int(candidates[i]) for i in np.asarray(kept, dtype=np.int64).reshape(-1)[:k]]


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

    def analyze(self, images: Sequence[Image.Image], top_k: int = 3) -> list[ScoredFace]:
        """Score RGB images (any sizes) as they are (their centred square); one :class:`ScoredFace` each."""
        transform = self.card.transform()
        return self._analyze(images, [as_is(im, input_window(im.width, im.height, transform)) for im in images],
                             [0] * len(images), top_k)

    def _analyze(self, images: Sequence[Image.Image], placements: Sequence[Placement], indices: Sequence[int],
                 top_k: int) -> list[ScoredFace]:
        """Score model inputs, each with where it lies in its photo and its face's index there; all in one
        batch."""
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
        centres = centre_boxes(boxes)
        out = []
        for i, (placement, index) in enumerate(zip(placements, indices)):
            flat = patch_fake[i].reshape(-1)
            scored = placement.patch_fill(boxes) <= MAX_PATCH_FILL
            # no patch left out: the plain after_softmax mean, test's and visualize's p(fake) to the last bit
            p_fake = float(1.0 - p_real[i] if scored.all() else flat[scored].mean(dtype=np.float64))
            def on_photo_box(box: np.ndarray) -> tuple[int, int, int, int]:
                return map_box(placement.to_original, box, placement.width, placement.height)

            patches = [Patch(on_photo_box(boxes[j]), tuple(int(v) for v in boxes[j]), float(flat[j]),
                             on_photo_box(centres[j]), tuple(int(v) for v in centres[j]))
                       for j in pick_patches(flat, scored, centres, top_k)]
            inside = placement.inside_photo()
            quad = None if placement.quad is None else np.round(placement.quad, 2).tolist()
            # the colour is measured where the model looked at the photo (not the alignment's fill)
            out.append(ScoredFace(index, p_fake, verdict_at(p_fake, self.p_fake_threshold), placement.face_box,
                                  patches, round(float(1.0 - inside.mean()), 4), round(placement.upscale(), 4),
                                  quad, colour_caveat(inputs[i], inside),
                                  FaceMaps(inputs[i], patch_fake[i], placement.to_original, inside)))
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
        """Whether mediapipe's face detector finds a face in ``image`` and it looks photographed
        (:func:`~patchforensics.data.align.is_photographic`): the gate of an image taken as
        aligned under ``auto``; a flat, noise or drawn square holds none."""
        rgb = np.asarray(image)
        return self._face_finder().has_face(rgb) and is_photographic(rgb)

    def find_faces(self, image: Image.Image) -> list[AlignedFace]:
        """Every photographed face of an RGB image, aligned (``align_style``) to the model's
        ``load_size``, largest first; ``[]`` when there is none (a drawn face is none:
        :func:`~patchforensics.data.align.is_photographic`)."""
        rgb = np.asarray(image)
        faces = align_faces(rgb, self._face_finder().detect(rgb), STYLES[self.align_style],
                            self.card.transform().load_size, "all")
        return [face for face in faces if is_photographic(np.asarray(face.image))]

    def screen_paths(self, paths: Sequence[str | os.PathLike], faces: str = "auto",
                     top_k: int = 3) -> list[Screened]:
        """:meth:`screen` for image files (decoded as ``detect`` decodes them, EXIF orientation
        applied); an unreadable file raises :class:`~patchforensics.core.imageio.ImageLoadError`."""
        return self.screen([load_rgb(p) for p in paths], faces, top_k)

    def screen(self, images: Sequence[Image.Image], faces: str = "auto", top_k: int = 3) -> list[Screened]:
        """Score every face of RGB images of any size (``faces``: one of
        :data:`FACE_MODES`); one :class:`Screened` per image, all faces scored in one batch.

        ``auto`` takes an image of the model's input size as one aligned face only when a
        face is found in it (else: no face, no verdict). A found face with no patch mostly
        inside the photo is dropped: nothing of it would be left to score."""
        require(faces in FACE_MODES, "faces", f"must be one of {', '.join(FACE_MODES)}")
        transform = self.card.transform()
        patch_boxes = self.card.patch_boxes().reshape(-1, 4)
        out, inputs, placements, owners, indices = [], [], [], [], []

        def add(owner: int, image: Image.Image, placement: Placement) -> None:
            indices.append(owners.count(owner))
            inputs.append(image)
            placements.append(placement)
            owners.append(owner)

        for i, im in enumerate(images):
            aligned = faces == "aligned" or (faces == "auto" and self.is_aligned(im))
            out.append(Screened("aligned" if aligned else "found", [], im.width, im.height))
            if aligned:
                if faces == "aligned" or self.has_face(im):
                    add(i, im, as_is(im, input_window(im.width, im.height, transform)))
                continue
            for face in self.find_faces(im):
                placement = on_photo(face, input_window(face.image.width, face.image.height, transform),
                                     im.width, im.height)
                if placement.patch_fill(patch_boxes).min() <= MAX_PATCH_FILL:
                    add(i, face.image, placement)
        for i, face in zip(owners, self._analyze(inputs, placements, indices, top_k)):
            out[i].faces.append(face)
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

