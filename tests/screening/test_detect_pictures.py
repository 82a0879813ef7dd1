"""``detect``'s and ``serve``'s pictures (issue #28, item 5): heatmaps on the scale centred on the
decision threshold, so that a face called real is drawn in blues and one called fake in reds, and
captions that grow with the picture (they were ~8 px high on a 1024-px overlay)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import raw_images
from patchforensics.core.imageio import load_rgb
from patchforensics.screening.detector import open_detector
from patchforensics.screening.render import face_caption, render_on_original, render_overlay

REALS, FAKES = raw_images("ffhq-1024", 2), raw_images("tpdne-1024", 2)


@pytest.fixture(scope="module")
def detector():
    with open_detector() as d:
        yield d


def screened(detector, path, size: int | None = None):
    photo = load_rgb(path)
    if size:
        photo = photo.resize((size, size), Image.Resampling.LANCZOS)
    (found,) = detector.screen([photo], "find")
    assert found.faces
    return photo, found.faces


def caption_height(photo, faces, cut: float) -> int:
    """Rows the captions cover: the picture with captions against the same picture without."""
    with_text = np.asarray(render_on_original(photo, faces, [face_caption(i, f) for i, f in enumerate(faces)],
                                              threshold=cut), dtype=int)
    without = np.asarray(render_on_original(photo, faces, [""] * len(faces), threshold=cut), dtype=int)
    rows = np.flatnonzero(np.abs(with_text - without).max(axis=(1, 2)) > 0)
    return int(rows.max() - rows.min() + 1)


def test_captions_grow_with_the_picture(detector):
    cut = detector.p_fake_threshold
    large, faces = screened(detector, REALS[0])                      # 1024 px: shown at 1024 px
    assert large.height == 1024 and caption_height(large, faces, cut) >= 0.02 * 1024
    small, faces = screened(detector, REALS[0], 320)                 # shown at 320 px: still legible
    assert 9 <= caption_height(small, faces, cut) < 0.06 * 320


def heat_shift(detector, path) -> tuple[float, float, str]:
    """How the face's heatmap shifts the model input's red and blue (mean over the input), and
    the face's verdict."""
    (face,) = screened(detector, path)[1][:1]
    picture = np.asarray(render_overlay(face, min_side=128, threshold=detector.p_fake_threshold), dtype=float)
    side = face.maps.input_image.width
    heat = picture[:side, side:2 * side] - np.asarray(face.maps.input_image, dtype=float)
    return float(heat[..., 0].mean()), float(heat[..., 2].mean()), face.verdict


@pytest.mark.parametrize("path", REALS + FAKES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_face_called_real_is_drawn_blue_and_one_called_fake_red(detector, path):
    red, blue, verdict = heat_shift(detector, path)
    assert (blue > red) == (verdict == "real"), (red, blue, verdict)
