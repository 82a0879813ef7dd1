"""How a patch classifier is adapted: which weights move, on what, and how far.

A method names the trainable part of a :class:`~patchforensics.models.nets.PatchClassifier`:

- ``head``: the 1x1 classifier only (``2 x C + 2`` weights): a linear probe of the
  frozen patch features;
- ``block``: the last backbone block and the head;
- ``full``: the whole network.

Everything below the trainable part is frozen, so its output is computed once per
image and view (:func:`cache_inputs`) and training runs on those tensors only: the
cost of an adaptation is the forward pass of the frozen part once, plus the trainable
part's steps. The whole model stays in eval mode (BatchNorm uses the base's running
statistics: tens of images cannot estimate them). ``l2sp`` pulls the trainable weights
toward the starting ones (L2-SP, Li et al. 2018), which keeps a few samples from
dragging the decision far from what the base learnt.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..data.dataset import sample_seed
from ..data.transforms import gaussian_blur, hflip, jpeg, to_tensor

METHODS = ("head", "block", "full")
#: the augmented views each training image is cached in (the originals always)
VIEWS = ("plain", "flip", "degrade")


@dataclass(frozen=True)
class Recipe:
    """How one adaptation trains (shared by every method).

    ``steps`` optimisation steps of ``batch_size`` cached items, drawn per step as
    half reals, ``new_share`` of the other half new fakes and the rest replayed old
    fakes (when there are none, all fakes are new); ``l2sp`` weighs
    ``sum((w - w0)^2)`` over the trainable weights; ``views`` are the cached
    augmentations (:data:`VIEWS`).
    """

    method: str = "head"
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    l2sp: float = 1e-2
    new_share: float = 0.5
    views: tuple[str, ...] = ("plain", "flip")

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r}: use one of {', '.join(METHODS)}")
        unknown = sorted(set(self.views) - set(VIEWS))
        if unknown or "plain" not in self.views:
            raise ValueError(f"views {self.views}: use 'plain' plus any of {', '.join(VIEWS[1:])}")
        if self.steps < 1 or self.batch_size < 4 or not 0 < self.new_share <= 1 or self.l2sp < 0:
            raise ValueError("steps >= 1, batch_size >= 4, 0 < new_share <= 1 and l2sp >= 0 are required")


def split_model(model: nn.Module, method: str) -> tuple[nn.Module, nn.Module]:
    """``(frozen, trainable)`` parts of a patch classifier, ``model == trainable(frozen(x))``.

    The parts share the model's modules (training ``trainable`` trains ``model``)."""
    features, head = getattr(model, "features", None), getattr(model, "head", None)
    if not isinstance(features, nn.Sequential) or not isinstance(head, nn.Conv2d):
        raise ValueError("adapt needs a patch model (a truncated backbone plus a 1x1 head); "
                         f"{type(model).__name__} is not one")
    if method == "head":
        return features, head
    if method == "block":
        return features[:-1], nn.Sequential(features[-1], head)
    if method == "full":
        return nn.Identity(), model
    raise ValueError(f"method {method!r}: use one of {', '.join(METHODS)}")


def view_image(im: Image.Image, view: str, rng: np.random.Generator) -> Image.Image:
    """One cached augmentation of a model-input image: ``flip`` mirrors it; ``degrade``
    re-compresses it as JPEG (quality 60-95) after a light blur (sigma 0-1 px), the
    everyday damage a sample collected from the web has had."""
    if view == "flip":
        return hflip(im)
    if view == "degrade":
        return jpeg(gaussian_blur(im, float(rng.uniform(0.0, 1.0))), int(rng.integers(60, 96)))
    return im


@torch.inference_mode()
def cache_inputs(frozen: nn.Module, images: Sequence[Image.Image], views: Sequence[str], seed: int,
                 batch_size: int = 32) -> torch.Tensor:
    """The frozen part's outputs for every ``(view, image)``: ``(len(views) * N, C, h, w)``
    float32, view-major (rows ``v * N + i``); ``images`` are model-input squares."""
    out = []
    for v, view in enumerate(views):
        batch: list[torch.Tensor] = []
        for i, im in enumerate(images):
            batch.append(to_tensor(view_image(im, view, sample_seed(seed, v, i))))
            if len(batch) == batch_size or i == len(images) - 1:
                out.append(frozen(torch.stack(batch)).float())
                batch = []
    return torch.cat(out) if out else torch.zeros(0)


@dataclass
class Pools:
    """Cached inputs of the three groups a batch is drawn from, each ``(M, C, h, w)``."""

    real: torch.Tensor
    new_fake: torch.Tensor
    old_fake: torch.Tensor | None = None


def _draw(pools: Pools, recipe: Recipe, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    n_real = recipe.batch_size // 2
    n_fake = recipe.batch_size - n_real
    has_old = pools.old_fake is not None and len(pools.old_fake)
    n_new = max(1, round(n_fake * recipe.new_share)) if has_old else n_fake
    parts = [(pools.real, n_real, 1), (pools.new_fake, n_new, 0)]
    if has_old and n_fake > n_new:
        parts.append((pools.old_fake, n_fake - n_new, 0))
    xs, ys = [], []
    for pool, n, label in parts:
        idx = torch.from_numpy(rng.integers(0, len(pool), n))
        xs.append(pool[idx])
        ys.append(torch.full((n,), label, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def train_trainable(trainable: nn.Module, pools: Pools, recipe: Recipe, seed: int,
                    autocast_ctx=None, progress=None) -> list[float]:
    """Train ``trainable`` in place on batches drawn from ``pools``; the per-step losses.

    The loss is the seed's per-patch cross-entropy (every patch of an image carries the
    image's label; class 0 = fake, 1 = real) plus ``l2sp * sum((w - w0)^2)``."""
    recipe.validate()
    start = [p.detach().clone() for p in trainable.parameters()]
    params = [p for p in trainable.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=recipe.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.steps)
    rng = sample_seed(seed, 7919)
    losses = []
    trainable.eval()
    for _ in range(recipe.steps):
        x, y = _draw(pools, recipe, rng)
        with autocast_ctx() if autocast_ctx else torch.autocast("cpu", enabled=False):
            logits = trainable(x)
        target = y[:, None, None].expand(-1, logits.shape[2], logits.shape[3])
        loss = F.cross_entropy(logits.float(), target)
        if recipe.l2sp:
            loss = loss + recipe.l2sp * sum(((p - p0) ** 2).sum() for p, p0 in zip(params, start))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress is not None:
            progress.update(1)
    for p in params:
        p.requires_grad_(False)
    return losses


def adapted_copy(model: nn.Module) -> nn.Module:
    """A frozen, eval-mode copy of ``model`` to adapt (the caller's model is left as it was)."""
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def fit(model: nn.Module, recipe: Recipe, real: Sequence[Image.Image], new_fake: Sequence[Image.Image],
        old_fake: Sequence[Image.Image] = (), seed: int = 0, autocast_ctx=None,
        progress=None) -> tuple[nn.Module, list[float]]:
    """An adapted copy of ``model`` and its per-step losses.

    ``real``, ``new_fake`` and ``old_fake`` (replay) are model-input squares
    (``eval_image`` of the card); each is cached in ``recipe.views``."""
    recipe.validate()
    model = adapted_copy(model)
    frozen, trainable = split_model(model, recipe.method)
    pools = Pools(real=cache_inputs(frozen, real, recipe.views, seed),
                  new_fake=cache_inputs(frozen, new_fake, recipe.views, seed + 1),
                  old_fake=cache_inputs(frozen, old_fake, recipe.views, seed + 2) if old_fake else None)
    losses = train_trainable(trainable, pools, recipe, seed, autocast_ctx, progress)
    return model.eval(), losses
