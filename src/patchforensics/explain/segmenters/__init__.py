"""Face segmenters for ``regions``: an RGB image to a map of fine face classes, each in one region.

- ``mediapipe`` (default, offline: ``mediapipe==0.10.21`` ships its models):
  face-mesh landmarks give eye, brows, nose, mouth and skin (the face oval);
  selfie segmentation gives person vs background; person pixels outside the
  face are ``hair`` down to the chin and ``neck_clothes`` below it (ears fall
  into ``hair``: the mesh has no ear landmarks).
- ``bisenet``: a BiSeNet face-parsing network (19 CelebAMask-HQ classes, the
  seed's segmenter) loaded from a checkpoint the user supplies (safetensors,
  or a ``.pth`` state dict read with ``weights_only=True``); classes are
  grouped as in the paper.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from .bisenet import CELEBAMASK_CLASSES, CELEBAMASK_GROUPS, BiSeNet, BiSeNetSegmenter, load_bisenet
from .mediapipe_mesh import MediapipeSegmenter

#: the segmenters by name (``regions --segmenter``)
SEGMENTERS = ("mediapipe", "bisenet")


class Segmenter(Protocol):
    """Turns an RGB image into a map of fine classes, each belonging to one region."""

    name: str
    classes: tuple[str, ...]        # label id -> fine class name (l_eye, r_eye, …)
    region_of: np.ndarray           # label id -> region id, (len(classes),) integers
    regions: tuple[str, ...]        # region id -> region name (eye, …)
    face_regions: frozenset[int]    # region ids whose presence means "a face was found"

    def segment(self, rgb: np.ndarray) -> np.ndarray | None:
        """``(H, W, 3)`` uint8 -> ``(H, W)`` uint8 class ids, or ``None`` when no face is found."""

    def close(self) -> None:
        """Release the models (``regions`` closes a segmenter it built itself)."""


__all__ = ["CELEBAMASK_CLASSES", "CELEBAMASK_GROUPS", "SEGMENTERS", "BiSeNet", "BiSeNetSegmenter",
           "MediapipeSegmenter", "Segmenter", "load_bisenet"]
