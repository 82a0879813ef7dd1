"""The painted-backdrop check: real faces with a plain band painted on top, left and right (a
studio backdrop) must score as the unchanged faces do (issue [detector], item 6).

The release's choice, its card and ``tests/screening/test_detect_bundled.py`` all judge a detector by it,
so the measurement and the tolerances live here once. The paint is the ``backdrop:KIND``
corruption (:func:`~patchforensics.data.corruptions.paint_backdrop`: a 20-px band at 128 px),
which ``test --corrupt`` and ``probe`` apply too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..core.imageio import list_images, load_rgb
from ..data.corruptions import BACKDROPS, paint_backdrop
from ..scoring.engine import Engine
from ..scoring.metrics import image_p_fake

BACKDROP_FACES = 80      # the first 80 FFHQ test reals
#: how far a painted backdrop may move the mean p(fake) of real faces
BACKDROP_MEAN_TOLERANCE = 0.05
#: how far it may move the share of them flagged fake: 5 points
BACKDROP_FLAGGED_TOLERANCE = 0.05
#: the flagged shares are fractions k/n, and a move of exactly 5 points can come out a hair above
#: 0.05 in floating point (7/80 against 11/80 differ by 0.05000000000000002): the bound the
#: shift is compared with, so that exactly 5 points passes
BACKDROP_FLAGGED_BOUND = BACKDROP_FLAGGED_TOLERANCE + 1e-9


def backdrop_shift(engine: Engine, images: Sequence[Image.Image], cut: float) -> dict[str, dict[str, float]]:
    """Flagged share (p(fake) >= ``cut``) and mean p(fake) of ``images`` unchanged and with
    each of :data:`~patchforensics.data.corruptions.BACKDROPS` painted on: does a plain
    background make a real face fake?"""
    out = {}
    for kind in ("unchanged",) + BACKDROPS:
        shown = list(images) if kind == "unchanged" else [paint_backdrop(im, kind) for im in images]
        _, logits = engine.score_images(shown)
        p_fake = image_p_fake(logits)
        out[kind] = {"flagged": float(np.mean(p_fake >= cut)), "mean_p_fake": float(np.mean(p_fake))}
    return out


def backdrop_faces(faces: Path, n: int = BACKDROP_FACES) -> list[Image.Image]:
    return [load_rgb(p) for p in list_images(faces / "ffhq" / "test")[:n]]


def backdrop_ok(shift: dict[str, dict[str, float]]) -> bool:
    """Whether no painted backdrop moves the flagged share by more than
    :data:`BACKDROP_FLAGGED_TOLERANCE` or the mean p(fake) by more than :data:`BACKDROP_MEAN_TOLERANCE`."""
    base = shift["unchanged"]
    return all(abs(r["flagged"] - base["flagged"]) <= BACKDROP_FLAGGED_BOUND
               and abs(r["mean_p_fake"] - base["mean_p_fake"]) <= BACKDROP_MEAN_TOLERANCE for r in shift.values())
