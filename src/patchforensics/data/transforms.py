"""Image transforms for training and evaluation, plus test-time corruptions.

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

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageFilter

LANCZOS = Image.Resampling.LANCZOS


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


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    """JPEG round trip at ``quality`` (PIL encoder, 4:2:0 subsampling)."""
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def gaussian_blur(im: Image.Image, sigma: float) -> Image.Image:
    return im if sigma <= 0 else im.filter(ImageFilter.GaussianBlur(radius=float(sigma)))


def gamma(im: Image.Image, g: float) -> Image.Image:
    """Apply ``out = in ** g`` on [0, 1] intensities."""
    lut = [min(255, int(round(255.0 * (i / 255.0) ** g))) for i in range(256)]
    return im.point(lut * 3)


def hflip(im: Image.Image) -> Image.Image:
    return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def greyscale(im: Image.Image) -> Image.Image:
    """ITU-R 601 luma (PIL's ``L``), kept as three equal RGB channels."""
    return im.convert("L").convert("RGB")


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


# ------------------------------------------------------------- corruptions
@dataclass(frozen=True)
class Corruption:
    """One test-time corruption, e.g. ``jpeg:75``, ``blur:1.0``, ``gamma:1.2``,
    ``flip``, ``resize:0.5`` (down-scale by the factor, then back to the input size)."""

    kind: str
    value: float | None = None

    @property
    def tag(self) -> str:
        if self.value is None:
            return self.kind
        v = int(self.value) if self.kind == "jpeg" else self.value
        return f"{self.kind}{v:g}" if isinstance(v, float) else f"{self.kind}{v}"

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.kind}:{self.value:g}"

    def apply(self, im: Image.Image) -> Image.Image:
        if self.kind == "jpeg":
            return jpeg(im, int(self.value))
        if self.kind == "blur":
            return gaussian_blur(im, self.value)
        if self.kind == "gamma":
            return gamma(im, self.value)
        if self.kind == "flip":
            return hflip(im)
        if self.kind == "grey":
            return greyscale(im)
        if self.kind == "resize":
            w, h = im.size
            small = im.resize((max(1, round(w * self.value)), max(1, round(h * self.value))), LANCZOS)
            return small.resize((w, h), LANCZOS)
        raise AssertionError(self.kind)


_CORRUPTION_RULES = {
    "jpeg": (lambda v: 1 <= v <= 100, "a quality between 1 and 100, e.g. jpeg:75"),
    "blur": (lambda v: v >= 0, "a Gaussian sigma >= 0 in pixels, e.g. blur:1.0"),
    "gamma": (lambda v: v > 0, "a gamma > 0, e.g. gamma:1.2"),
    "resize": (lambda v: 0 < v <= 4, "a scale factor in (0, 4], e.g. resize:0.5"),
    "flip": (None, "no value: flip"),
    "grey": (None, "no value: grey"),
}


def parse_corruption(spec: str) -> Corruption:
    """Parse ``name[:value]``; raises ``ValueError`` saying what is accepted."""
    name, _, raw = spec.strip().partition(":")
    name = name.lower()
    if name not in _CORRUPTION_RULES:
        raise ValueError(f"unknown corruption {spec!r}; use one of "
                         + ", ".join(h for _, h in _CORRUPTION_RULES.values()))
    check, hint = _CORRUPTION_RULES[name]
    if check is None:
        if raw:
            raise ValueError(f"corruption {spec!r} takes {hint}")
        return Corruption(name)
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"corruption {spec!r} needs {hint}") from None
    if not check(value):
        raise ValueError(f"corruption {spec!r} is out of range; it needs {hint}")
    return Corruption(name, value)


def parse_corruptions(specs) -> tuple[Corruption, ...]:
    """Parse a list of specs (each may itself be comma-separated)."""
    if not specs:
        return ()
    if isinstance(specs, str):
        specs = [specs]
    out = []
    for s in specs:
        out.extend(parse_corruption(p) for p in str(s).split(",") if p.strip())
    return tuple(out)


def corruption_tag(corruptions) -> str:
    """Path-safe tag of a corruption list, e.g. ``jpeg75_blur1`` ('' if none)."""
    return "_".join(c.tag for c in corruptions)


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
    grey_prob: float = 0.0       # greyscale with this probability


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
        # a screener cannot stop a fake being turned grey; no draw at 0 keeps older runs' streams
        if cfg.grey_prob > 0 and rng.random() < cfg.grey_prob:
            im = greyscale(im)
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
