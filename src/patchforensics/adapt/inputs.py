"""The images an adaptation learns from, as model-input faces.

A user hands in photos of a new generator's faces or faces already aligned; each
becomes one model-input square the way ``detect`` would see it (``--faces``:
``aligned`` takes the image as it is, ``find`` finds and aligns the largest face,
``auto`` takes an image of exactly the model's input size as aligned when a face is
found in it and searches the others; as in ``detect``, a face that is not a photograph
(a drawing) is not one). Files that cannot be read or hold no face are
counted and named, never silently dropped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..core.imageio import ImageLoadError, SkipLog, list_images, load_rgb
from ..data.align import STYLES, FaceLandmarker, align_faces, is_photographic
from ..data.transforms import TransformConfig, eval_image
from ..screening.detector import FACE_MODES



@dataclass
class Faces:
    """Model-input faces and where each came from; what could not be used, and why."""

    images: list[Image.Image] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    skipped: SkipLog = field(default_factory=SkipLog)

    def __len__(self) -> int:
        return len(self.images)


def expand(entries: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files of ``entries`` (files as given, folders searched recursively), sorted
    within each folder, duplicates dropped in order; ``FileNotFoundError`` naming a
    missing entry."""
    out: list[Path] = []
    for entry in map(Path, entries):
        if entry.is_dir():
            out.extend(list_images(entry))
        elif entry.is_file():
            out.append(entry)
        else:
            raise FileNotFoundError(f"{entry} not found; pass image files or folders of them")
    return list(dict.fromkeys(out))


class FaceReader:
    """Turns files into model-input faces for one model's geometry."""

    def __init__(self, tcfg: TransformConfig, faces: str = "auto", align_style: str = "ffhq"):
        if faces not in FACE_MODES:
            raise ValueError(f"faces: use one of {', '.join(FACE_MODES)} (got {faces!r})")
        if align_style not in STYLES:
            raise ValueError(f"align_style: use one of {', '.join(STYLES)} (got {align_style!r})")
        self.tcfg, self.faces, self.style = tcfg, faces, STYLES[align_style]
        self._landmarker: FaceLandmarker | None = None

    def _finder(self) -> FaceLandmarker:
        if self._landmarker is None:
            self._landmarker = FaceLandmarker()
        return self._landmarker

    def face_of(self, im: Image.Image) -> Image.Image | None:
        """The model-input face of one RGB image, or ``None`` when it holds none."""
        side = self.tcfg.load_size
        if self.faces == "aligned":
            return eval_image(im, self.tcfg)
        rgb = np.asarray(im)
        if self.faces == "auto" and im.width == im.height == side:   # detect's gate: a face, and a photograph
            return eval_image(im, self.tcfg) if self._finder().has_face(rgb) and is_photographic(rgb) else None
        found = [f for f in align_faces(rgb, self._finder().detect(rgb), self.style, side, "all")
                 if is_photographic(np.asarray(f.image))]
        return eval_image(found[0].image, self.tcfg) if found else None

    def read(self, paths: Sequence[str | os.PathLike], progress=None) -> Faces:
        out = Faces()
        for path in map(str, paths):
            try:
                face = self.face_of(load_rgb(path))
            except ImageLoadError as e:
                out.skipped.skipped.append((path, e.reason))
                continue
            finally:
                if progress is not None:
                    progress.update(1)
            if face is None:
                out.no_face.append(path)
            else:
                out.images.append(face)
                out.paths.append(path)
        return out

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None
