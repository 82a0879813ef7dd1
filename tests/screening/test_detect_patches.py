"""The most suspicious patches (issue #28): every pick is within ``PICK_MARGIN`` of the best
patch, picks show distinct spots, fewer picks rather than less suspicious ones; and what is shown
of a pick, its centre region, is the middle half of its field, on the heatmap and in ``serve``."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import FACES, listed, raw_images
from patchforensics.screening.detector import MAX_PATCH_FILL, centre_boxes, open_detector, pick_patches
from patchforensics.screening.faces import PICK_MARGIN, PICK_MAX_IOU
from patchforensics.screening.render import render_overlay
from patchforensics.screening.serve import DetectService, create_app

TOP_K = 3


@pytest.fixture(scope="module")
def detector():
    with open_detector() as d:
        yield d


@pytest.fixture(scope="module")
def real_faces(detector):
    """Faces of real photos: wild portraits (found) and aligned test fakes and reals, listed."""
    found = [f for s in detector.screen_paths(raw_images("wild-portraits", 12), "find", TOP_K) for f in s.faces]
    aligned = detector.analyze([Image.open(FACES / p).convert("RGB")
                                for folder in ("tpdne-stylegan2/test", "ffhq/test") for p in listed(folder, 12)],
                               TOP_K)
    return found + aligned


def iou(a, b) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda x: (x[2] - x[0]) * (x[3] - x[1])      # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_every_pick_is_within_the_margin_of_the_best_patch(detector, real_faces):
    boxes = detector.card.patch_boxes().reshape(-1, 4)
    centres = centre_boxes(boxes)
    counts = []
    for face in real_faces:
        flat = face.maps.patch_p_fake.reshape(-1)
        inside = face.maps.inside_photo
        scored = np.array([1 - inside[t:b, l:r].mean() <= MAX_PATCH_FILL for t, l, b, r in boxes])
        best = flat[scored].max()
        picks = face.top_patches
        assert picks[0].p_fake == best                                   # the best patch comes first
        assert [p.p_fake for p in picks] == sorted((p.p_fake for p in picks), reverse=True)
        assert all(best - p.p_fake <= PICK_MARGIN + 1e-6 for p in picks)
        for i, p in enumerate(picks):                                    # distinct spots
            assert all(iou(p.input_centre_box, q.input_centre_box) <= PICK_MAX_IOU for q in picks[:i])
        if len(picks) < TOP_K:                                           # fewer: none left out that qualified
            picked = {tuple(p.input_centre_box) for p in picks}
            for j in np.flatnonzero(scored & (flat >= best - PICK_MARGIN)):
                if tuple(centres[j]) not in picked:
                    assert any(iou(centres[j], c) > PICK_MAX_IOU for c in picked), j
        counts.append(len(picks))
    assert len(real_faces) >= 30 and 1 in counts and TOP_K in counts


def test_a_low_patch_is_never_picked_to_fill_the_count():
    """Made-up maps: a lone peak gets one pick, not two far-off low ones; a plateau several."""
    boxes = np.array([[y, x, y + 40, x + 40] for y in range(0, 80, 16) for x in range(0, 80, 16)])
    centres = centre_boxes(boxes)
    peak = np.full(len(boxes), 0.2, np.float32)
    peak[12] = 0.95
    assert pick_patches(peak, np.ones(len(boxes), bool), centres, 3) == [12]
    plateau = np.full(len(boxes), 0.9, np.float32)
    picks = pick_patches(plateau, np.ones(len(boxes), bool), centres, 3)
    assert len(picks) == 3 and picks[0] == 0                            # a tie: the first index
    scored = np.ones(len(boxes), bool)
    scored[12] = False                                                  # mostly fill: never picked
    assert 12 not in pick_patches(peak, scored, centres, 3)
    assert pick_patches(peak, np.zeros(len(boxes), bool), centres, 3) == []


def test_centre_boxes_are_the_middle_half():
    boxes = np.array([[0, 0, 91, 91], [0, 38, 49, 127], [10, 20, 11, 23]])
    assert centre_boxes(boxes).tolist() == [[22, 22, 68, 68], [12, 60, 36, 104], [10, 20, 11, 22]]


def test_the_region_shown_is_a_pick_centre_at_a_usable_scale(detector):
    """On a 1024-px photo a block-3 patch covers most of the face: what is shown is its middle
    half (a quarter of its area), inside it, outlined on the heatmap and cut out by ``serve``."""
    photo = raw_images("tpdne-1024", 1)[0]
    face = detector.screen_paths([photo], "find", TOP_K)[0].faces[0]
    for p in face.top_patches:
        (t, l, b, r), (ct, cl, cb, cr) = p.box, p.centre_box
        assert t <= ct < cb <= b and l <= cl < cr <= r
        assert (cb - ct) <= 0.56 * (b - t) + 2 and (cr - cl) <= 0.56 * (r - l) + 2
        assert (cb - ct) * (cr - cl) <= 0.32 * (b - t) * (r - l)
    # the heatmap outlines the centre region in white (the most suspicious), not the whole field
    picture = np.asarray(render_overlay(face))
    side = face.maps.input_image.width
    scale = picture.shape[0] // side
    heat = picture[:, side * scale:2 * side * scale]                   # the heatmap half
    ys, xs = np.nonzero((heat == 255).all(axis=2))                     # the white outline
    t, l, b, r = (v * scale for v in face.top_patches[0].input_centre_box)
    assert abs(ys.min() - t) <= 1 and abs(ys.max() - (b - 1)) <= 1
    assert abs(xs.min() - l) <= 1 and abs(xs.max() - (r - 1)) <= 1
    # serve cuts out exactly that region
    with TestClient(create_app(DetectService(detector, 20_000_000, TOP_K))) as client:
        body = client.post("/api/detect", files={"file": (photo.name, photo.read_bytes())}).json()
    for p, shown in zip(face.top_patches, body["faces"][0]["top_patches"]):
        assert shown["centre_box"] == list(p.centre_box)
        crop = Image.open(io.BytesIO(base64.b64decode(shown["centre_crop"].split(",", 1)[1])))
        assert crop.size == (p.centre_box[3] - p.centre_box[1], p.centre_box[2] - p.centre_box[0])
        assert crop.width * crop.height <= 0.32 * (p.box[2] - p.box[0]) * (p.box[3] - p.box[1])
