"""Region interventions on real aligned faces: each edit reaches only the pixels its mask names,
an empty mask changes nothing, and the feathered mask never leaves the intersection of both regions."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import FACES, listed
from patchforensics.data.interventions import OCCLUDE_FILLS, feathered_mask, keep_only, occlude, transplant


def face(folder: str, i: int = 0) -> np.ndarray:
    return np.asarray(Image.open(FACES / listed(folder, i + 1)[i]).convert("RGB"))


def ellipse(shape, centre, axes) -> np.ndarray:
    """A boolean region map: a filled ellipse (a stand-in for a segmenter's region)."""
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(m, centre, axes, 0, 0, 360, 1, -1)
    return m.astype(bool)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """An FFHQ real and a StyleGAN2 fake test face (128 px, the same aligned coordinates)."""
    return face("ffhq/test"), face("tpdne-stylegan2/test")


@pytest.fixture(scope="module")
def regions() -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping 'mouth' regions as two images' segmenters might draw them."""
    return ellipse((128, 128), (64, 92), (20, 10)), ellipse((128, 128), (60, 95), (18, 12))


def test_feathered_mask_is_zero_outside_the_intersection_and_one_deep_inside(regions):
    a, b = regions
    inter = a & b
    for feather in (1.0, 2.0, 3.5):
        m = feathered_mask(a, b, feather)
        assert m.dtype == np.float32 and m.shape == a.shape
        assert (m[~inter] == 0).all() and m.min() >= 0 and m.max() <= 1
        r = int(np.ceil(feather))
        deep = cv2.erode(inter.astype(np.uint8), np.ones((4 * r + 1, 4 * r + 1), np.uint8)).astype(bool)
        assert deep.any() and (m[deep] == 1).all(), feather
        ring = m[inter & ~deep]
        assert ((ring > 0.1) & (ring < 0.9)).any() and (ring < 0.5).any()        # a ramp, not a step
    assert (feathered_mask(a, b, 0) == inter).all()
    assert not feathered_mask(a, ~a).any()                                     # no intersection: all zeros


def test_a_region_at_the_image_border_is_not_feathered_there():
    chin_down = np.zeros((128, 128), bool)
    chin_down[100:] = True
    m = feathered_mask(chin_down, chin_down, 2.0)
    assert (m[110:] == 1).all() and (m[:100] == 0).all() and 0 < m[100, 64] < 1


def test_transplant_changes_only_the_masked_pixels(pair, regions):
    real, fake = pair
    mask = feathered_mask(*regions)
    out = transplant(fake, real, mask)
    assert out.dtype == np.uint8 and out.shape == fake.shape
    assert (out[mask == 0] == fake[mask == 0]).all()
    assert (out[mask == 1] == real[mask == 1]).all()
    assert (out[(mask > 0) & (mask < 1)] != fake[(mask > 0) & (mask < 1)]).any()
    assert transplant(fake, real, np.zeros((128, 128), np.float32)).tobytes() == fake.tobytes()
    assert transplant(fake, real, np.ones((128, 128), np.float32)).tobytes() == real.tobytes()


@pytest.mark.parametrize("fill", OCCLUDE_FILLS)
def test_occlude_hides_the_region_and_leaves_the_rest(pair, regions, fill):
    img = pair[1]
    mask = feathered_mask(*regions)
    out = occlude(img, mask, fill, seed=3)
    assert (out[mask == 0] == img[mask == 0]).all()
    inside = mask == 1
    assert np.abs(out[inside].astype(int) - img[inside]).mean() > 3
    if fill == "mean":
        weighted = (img * mask[..., None]).sum(axis=(0, 1)) / mask.sum()
        assert (out[inside] == np.rint(weighted)).all()
    elif fill == "blur":
        blurred = cv2.GaussianBlur(img, (0, 0), 128 / 16, borderType=cv2.BORDER_REFLECT)
        assert (out[inside] == blurred[inside]).all()
    else:
        assert occlude(img, mask, fill, seed=3).tobytes() == out.tobytes()     # seeded
        assert occlude(img, mask, fill, seed=4).tobytes() != out.tobytes()
        assert np.abs(np.diff(out[inside].astype(int), axis=0)).mean() > 2     # noise, not a flat patch
        # over the whole face (16,384 draws) the noise has the masked area's mean and spread
        whole = occlude(img, np.ones((128, 128), np.float32), fill, seed=3).reshape(-1, 3).astype(np.float64)
        pixels = img.reshape(-1, 3).astype(np.float64)
        np.testing.assert_allclose(whole.mean(axis=0), pixels.mean(axis=0), atol=1.5)
        np.testing.assert_allclose(whole.std(axis=0), pixels.std(axis=0), rtol=0.1)


@pytest.mark.parametrize("fill", OCCLUDE_FILLS)
def test_identity_interventions_change_nothing(pair, fill):
    img = pair[0]
    zero, one = np.zeros((128, 128), np.float32), np.ones((128, 128), np.float32)
    assert occlude(img, zero, fill).tobytes() == img.tobytes()
    assert keep_only(img, one, fill).tobytes() == img.tobytes()


@pytest.mark.parametrize("fill", OCCLUDE_FILLS)
def test_keep_only_occludes_everything_else(pair, regions, fill):
    img = pair[0]
    mask = feathered_mask(*regions)
    out = keep_only(img, mask, fill, seed=1)
    assert out.tobytes() == occlude(img, 1 - mask, fill, seed=1).tobytes()
    assert (out[mask == 1] == img[mask == 1]).all()
    assert (out[mask == 0] != img[mask == 0]).any()


def test_bad_input_is_refused_with_a_clear_message(pair, regions):
    real, fake = pair
    a, b = regions
    mask = feathered_mask(a, b)
    cases = [
        (lambda: transplant(fake, real[:64], mask), "differ in size"),
        (lambda: transplant(fake.astype(np.float32), real, mask), "uint8 RGB"),
        (lambda: transplant(fake, real, mask[:64]), "mask must be an \\(128, 128\\)"),
        (lambda: transplant(fake, real, mask * 2), "in \\[0, 1\\]"),
        (lambda: transplant(fake, real, (mask > 0)), "float"),
        (lambda: occlude(fake, mask, "paint"), "mean, blur, noise"),
        (lambda: keep_only(fake[..., :2].copy(), mask, "mean"), "uint8 RGB"),
        (lambda: feathered_mask(a, b[:64]), "differ in size"),
        (lambda: feathered_mask(a.astype(np.uint8), b), "boolean"),
        (lambda: feathered_mask(a, b, -1), ">= 0"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
