"""The everyday edits of the ``--corrupt`` grammar: each changes the image as its name says and
nothing else, identity values give the input byte for byte, and bad values are refused in one line."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import FACES, listed
from patchforensics.data.corruptions import (BACKDROP_COLOURS, BACKDROPS, CORRUPTION_NAMES, EVERYDAY_EDITS,
                                             _RGB_TO_YCC, backdrop_band, parse_corruption, parse_corruptions)


def faces(n: int = 3) -> list[Image.Image]:
    """``n`` FFHQ and ``n`` StyleGAN2 test faces (128 px), picked by listing."""
    return [Image.open(FACES / p).convert("RGB") for p in listed("ffhq/test", n) + listed("tpdne-stylegan2/test", n)]


def edit(spec: str, im: Image.Image) -> np.ndarray:
    out = parse_corruption(spec).apply(im)
    assert out.mode == "RGB" and out.size == im.size, spec
    return np.asarray(out)


def ycc(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) @ _RGB_TO_YCC.T


@pytest.mark.parametrize("spec", ["noise:0", "hue:0", "saturation:1", "brightness:1", "contrast:1", "shift:0",
                                  "gamma:1", "blur:0"])
def test_identity_values_return_the_image_byte_for_byte(spec):
    for im in faces():
        assert edit(spec, im).tobytes() == im.tobytes(), spec


def test_every_default_edit_parses_round_trips_and_changes_every_image():
    parsed = parse_corruptions(EVERYDAY_EDITS)
    assert [str(c) for c in parsed] == list(EVERYDAY_EDITS)
    assert all(parse_corruption(str(c)) == c for c in parsed)
    tags = [c.tag for c in parsed]
    assert len(set(tags)) == len(tags) and all(t.replace(".", "").replace("-", "").isalnum() for t in tags)
    assert {c.kind for c in parsed} == set(CORRUPTION_NAMES) - {"gamma"}
    for im in faces(2):
        for c in parsed:
            assert np.asarray(c.apply(im)).tobytes() != im.tobytes(), c


def test_grey_is_601_luma_in_three_equal_channels():
    for im in faces():
        a, g = np.asarray(im).astype(np.float64), edit("grey", im).astype(np.float64)
        assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
        luma = a @ np.array([0.299, 0.587, 0.114])
        assert np.abs(g[..., 0] - luma).max() <= 1.0
        assert np.abs(np.asarray(im).astype(int) - g).max() > 20       # it did remove the colour


@pytest.mark.parametrize("px", [2, 4, -3, 32])
def test_shift_moves_the_content_and_replicates_the_edge(px):
    for im in faces(2):
        a, s = np.asarray(im), edit(f"shift:{px}", im)
        p = abs(px)
        if px > 0:
            assert (s[p:, p:] == a[:-p, :-p]).all()
            assert (s[:p, p:] == a[0, :-p]).all() and (s[p:, :p] == a[:-p, :1]).all()
        else:
            assert (s[:-p, :-p] == a[p:, p:]).all()
            assert (s[-p:, :-p] == a[-1, p:]).all() and (s[:-p, -p:] == a[p:, -1:]).all()


def test_hue_turns_the_chroma_by_the_angle_and_keeps_the_luma():
    for im in faces():
        before = ycc(np.asarray(im))
        coloured = np.hypot(before[..., 1], before[..., 2]) > 8
        for deg in (20, -90, 180):
            after = ycc(edit(f"hue:{deg}", im))
            turn = (np.arctan2(after[..., 2], after[..., 1]) - np.arctan2(before[..., 2], before[..., 1]))[coloured]
            # the circular mean of the per-pixel turn, against the angle asked for
            off = np.angle(np.exp(1j * (turn - np.radians(deg))).mean())
            assert abs(np.degrees(off)) < 2.0, deg
            assert np.abs(after[..., 0] - before[..., 0]).mean() < 1.5, deg      # luma kept
        assert edit("hue:180", im).tobytes() == edit("hue:-180", im).tobytes()


def test_saturation_brightness_contrast_move_what_they_name():
    for im in faces():
        a = ycc(np.asarray(im))
        chroma = np.hypot(a[..., 1], a[..., 2]).mean()
        assert np.hypot(*ycc(edit("saturation:1.5", im))[..., 1:].transpose(2, 0, 1)).mean() > 1.3 * chroma
        assert np.hypot(*ycc(edit("saturation:0.5", im))[..., 1:].transpose(2, 0, 1)).mean() < 0.6 * chroma
        zero = edit("saturation:0", im)
        assert (zero[..., 0] == zero[..., 1]).all() and (zero[..., 1] == zero[..., 2]).all()
        assert ycc(edit("brightness:1.2", im))[..., 0].mean() > a[..., 0].mean() + 5
        assert ycc(edit("brightness:0.8", im))[..., 0].mean() < a[..., 0].mean() - 5
        assert ycc(edit("contrast:0.7", im))[..., 0].std() < 0.8 * a[..., 0].std()
        assert ycc(edit("contrast:1.3", im))[..., 0].std() > 1.1 * a[..., 0].std()


def test_noise_is_seeded_by_the_image_and_has_its_sigma():
    ims = faces()
    for im in ims:
        a = np.asarray(im).astype(np.float64)
        n1, n2 = edit("noise:4", im), edit("noise:4", im)
        assert n1.tobytes() == n2.tobytes()                                   # the same image, the same noise
        diff = n1 - a
        unclipped = (a > 20) & (a < 235)
        assert diff[unclipped].mean() == pytest.approx(0.0, abs=0.1)
        assert diff[unclipped].std() == pytest.approx(4.0, abs=0.15)
    residues = [edit("noise:4", im).astype(int) - np.asarray(im) for im in ims[:2]]
    assert (residues[0] != residues[1]).mean() > 0.5                          # another image, other noise


@pytest.mark.parametrize("kind", BACKDROPS)
def test_backdrop_paints_only_the_band(kind):
    for im in faces(2) + [faces(1)[0].resize((256, 256), Image.Resampling.LANCZOS)]:
        side = im.size[0]
        band = backdrop_band(side)
        assert band == round(20 * side / 128)
        a, b = np.asarray(im), edit(f"backdrop:{kind}", im)
        inside = np.zeros(a.shape[:2], bool)
        inside[:band], inside[:, :band], inside[:, side - band:] = True, True, True
        assert (b[~inside] == a[~inside]).all()                               # the face untouched
        if kind == "blurred":
            fill = np.asarray(im.filter(ImageFilter.GaussianBlur(radius=8 * side / 128)))
            assert (b[inside] == fill[inside]).all()
        else:
            assert (b[inside] == BACKDROP_COLOURS[kind]).all()


@pytest.mark.parametrize("spec, message", [
    ("noise:-1", "0-255"), ("noise:nan", "0-255"), ("hue:200", "-180 to 180"), ("saturation:-0.5", ">= 0"),
    ("brightness:0", "> 0"), ("contrast:inf", "> 0"), ("shift:2.5", "whole number"), ("shift:33", "-32 to 32"),
    ("backdrop:pink", "grey, white, blue, blurred"), ("backdrop", "grey, white, blue, blurred"),
    ("grey:2", "no value"), ("sepia", "unknown corruption"), ("jpeg:500", "between 1 and 100"),
])
def test_bad_values_are_refused_in_one_line_saying_what_is_accepted(spec, message):
    with pytest.raises(ValueError, match=message) as e:
        parse_corruption(spec)
    assert "\n" not in str(e.value)


def test_names_and_tags_keep_the_existing_paths():
    """Results folders are named by the tag: the existing kinds keep their names."""
    assert [c.tag for c in parse_corruptions("jpeg:75,blur:1.0,gamma:1.2,flip,resize:0.5")] == [
        "jpeg75", "blur1", "gamma1.2", "flip", "resize0.5"]
    assert [str(c) for c in parse_corruptions(["grey", "backdrop:Blue", "shift:-2", "hue:-20"])] == [
        "grey", "backdrop:blue", "shift:-2", "hue:-20"]
    assert parse_corruption("backdrop:grey").tag == "backdropgrey"
