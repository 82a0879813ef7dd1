"""Image transforms for training and evaluation; test-time corruptions are in :mod:`.corruptions`.

Plain PIL + NumPy (no torchvision). Random transforms take an explicit
``numpy.random.Generator`` so a sample's augmentation depends only on
``(seed, epoch, index)``: runs are reproducible and ``--resume`` sees the same
batches as an uninterrupted run.

Geometry follows the seed: resize the shorter side to ``load_size`` with
Lanczos, then crop ``fine_size`` for training; patch models are evaluated on
the whole ``load_size`` image (the centre crop keeps every patch), full-image
models on the ``fine_size`` centre crop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image

# the corruptions (test-time edits) live in their own module; their importers reach them here too
from .corruptions import (LANCZOS, Corruption, corruption_tag, gaussian_blur, hflip, jpeg,  # noqa: F401
                          parse_corruption, parse_corruptions)


def resize_shorter(im: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` px (Lanczos), keeping the aspect ratio."""
    w, h = im.size
    if min(w, h) == size:
        return im
    if w <= h:
        return im.resize((size, max(1, round(h * size / w))), LANCZOS)
    return im.resize((max(1, round(w * size / h)), size), LANCZOS)


def center_crop(im: Image.Image, size: int) -> Image.Image:
    w, h = im.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    return im.crop((left, top, left + size, top + size))


def random_crop(im: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    w, h = im.size
    left, top = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
    return im.crop((left, top, left + size, top + size))


def random_resized_crop(im: Image.Image, size: int, rng: np.random.Generator,
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> Image.Image:
    """Crop a random area fraction/aspect, resize to ``size`` (Inception-style)."""
    w, h = im.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return im.crop((left, top, left + cw, top + ch)).resize((size, size), LANCZOS)
    return center_crop(resize_shorter(im, size), size)


def color_jitter(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Random brightness/contrast (±20%) and gamma (0.8–1.2), as the seed's colour augment."""
    a = np.asarray(im, dtype=np.float32) / 255.0
    a = a * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
    mean = a.mean()
    a = (a - mean) * rng.uniform(0.8, 1.2) + mean
    a = np.clip(a, 0.0, 1.0) ** rng.uniform(0.8, 1.2)
    return Image.fromarray(np.uint8(np.clip(a * 255.0 + 0.5, 0, 255)))


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB -> float32 ``(3, H, W)`` in ``[-1, 1]`` (the seed's 0.5/0.5 normalisation)."""
    a = np.asarray(im, dtype=np.uint8)
    t = torch.from_numpy(a.copy()).permute(2, 0, 1).float()
    return t.div_(127.5).sub_(1.0)


def to_image(t: torch.Tensor) -> Image.Image:
    """Inverse of :func:`to_tensor` for one ``(3, H, W)`` tensor."""
    a = ((t.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5 + 0.5).byte()
    return Image.fromarray(a.permute(1, 2, 0).numpy())


# -------------------------------------------------------------- pipelines
@dataclass(frozen=True)
class TransformConfig:
    """What every pipeline needs to know about image geometry and augmentation."""

    load_size: int = 128
    fine_size: int = 128
    flip: bool = True
    random_crop: bool = False
    random_resized_crop: bool = False
    color_jitter: bool = False
    cnn_aug_prob: float = 0.0    # CNNDetection blur+JPEG, each with this probability
    patch_model: bool = True


def train_transform(cfg: TransformConfig) -> Callable[[Image.Image, np.random.Generator], torch.Tensor]:
    """Training pipeline: ``(PIL image, rng) -> (3, fine, fine)`` tensor."""

    def apply(im: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        if cfg.random_resized_crop:
            im = random_resized_crop(im, cfg.fine_size, rng)
        else:
            im = resize_shorter(im, cfg.load_size)
            im = random_crop(im, cfg.fine_size, rng) if cfg.random_crop else center_crop(im, cfg.fine_size)
        if cfg.cnn_aug_prob > 0:
            # CNNDetection (Wang et al. 2020): blur sigma~U(0,3), JPEG quality~U{30..100}
            if rng.random() < cfg.cnn_aug_prob:
                im = gaussian_blur(im, rng.uniform(0.0, 3.0))
            if rng.random() < cfg.cnn_aug_prob:
                im = jpeg(im, int(rng.integers(30, 101)))
        if cfg.color_jitter:
            im = color_jitter(im, rng)
        if cfg.flip and rng.random() < 0.5:
            im = hflip(im)
        return to_tensor(im)

    return apply


def eval_image(im: Image.Image, cfg: TransformConfig, corruptions=()) -> Image.Image:
    """Evaluation geometry + corruptions, as a PIL image (used for overlays too)."""
    im = resize_shorter(im, cfg.load_size)
    im = center_crop(im, cfg.load_size if cfg.patch_model else cfg.fine_size)
    for c in corruptions:
        im = c.apply(im)
    return im


def eval_transform(cfg: TransformConfig, corruptions=()) -> Callable[[Image.Image], torch.Tensor]:
    """Deterministic evaluation pipeline: ``PIL image -> (3, S, S)`` tensor."""
    corruptions = tuple(corruptions)
    return lambda im: to_tensor(eval_image(im, cfg, corruptions))
