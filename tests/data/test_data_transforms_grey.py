"""Greyscale augmentation: it greys exactly the drawn share and leaves runs without it unchanged."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from patchforensics.core.imageio import list_images, load_rgb
from patchforensics.data.transforms import TransformConfig, train_transform

FACES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "faces128"


def _image():
    return load_rgb(list_images(FACES / "ffhq" / "train")[0])


def test_grey_prob_zero_draws_nothing_and_one_greys_every_image():
    im = _image()
    plain = train_transform(TransformConfig(flip=True, color_jitter=True))
    zero = train_transform(TransformConfig(flip=True, color_jitter=True, grey_prob=0.0))
    for seed in range(5):      # the same random stream as before the option existed
        assert torch.equal(plain(im, np.random.default_rng(seed)), zero(im, np.random.default_rng(seed)))
    always = train_transform(TransformConfig(flip=False, grey_prob=1.0))(im, np.random.default_rng(0))
    assert torch.equal(always[0], always[1]) and torch.equal(always[1], always[2])
    assert not torch.equal(plain(im, np.random.default_rng(0))[0], plain(im, np.random.default_rng(0))[1])


def test_grey_prob_greys_about_its_share():
    im = _image()
    t = train_transform(TransformConfig(flip=False, grey_prob=0.2))
    rng = np.random.default_rng(1)
    greyed = sum(bool(torch.equal(x[0], x[1])) for x in (t(im, rng) for _ in range(400)))
    assert 50 <= greyed <= 110, greyed       # 80 expected; binomial sd 8
