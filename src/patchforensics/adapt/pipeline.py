"""``adapt``: a detector taught a new generator from a few of its samples.

The flow of :func:`adapt`: read the fakes as model-input faces, refuse leaks, draw
the replay data, cache the frozen part's outputs once, estimate recall by k-fold on
the fakes (each fold's model scored only on the fold it never saw), train the shipped
model on all of them, choose its thresholds on validation reals, measure what it
forgot on the base's test sets, and write a checkpoint folder with its ONNX file and
card. Numbers: :mod:`.measure`; the card: :mod:`.card`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..core.config import ConfigError
from ..core.imageio import load_rgb
from ..data.transforms import eval_image
from ..models.card import SCREENING_FPR, STRICT_FPR, fpr_name
from ..models.checkpoint import BUNDLED_DIR, BUNDLED_WEIGHTS, load_model
from ..scoring.runtime import FastPath, autocast, use_bf16
from . import data as adapt_data
from .config import FEW_THRESHOLD_REALS, MIN_FAKES, MIN_THRESHOLD_REALS, AdaptConfig
from .inputs import FaceReader, expand
from .data import Inputs
from .measure import fpr_cut
from .methods import Pools, adapted_copy, cache_inputs, split_model, train_trainable
from .writer import write_adapted

REPO_ROOT = Path(__file__).resolve().parents[3]
FPR_TARGETS = ((fpr_name(SCREENING_FPR), SCREENING_FPR), (fpr_name(STRICT_FPR), STRICT_FPR))


def open_base(cfg: AdaptConfig):
    """The starting model: ``cfg.model`` or the bundled detector."""
    source = Path(cfg.model) if cfg.model else BUNDLED_DIR
    which = cfg.which_epoch or ("bestval" if cfg.model else BUNDLED_WEIGHTS)
    return load_model(source, which), source


def _squares(paths, tcfg, progress: bool, desc: str) -> list[Image.Image]:
    return [eval_image(load_rgb(p), tcfg) for p in tqdm(paths, desc=desc, disable=not progress, leave=False)]


def gather(cfg: AdaptConfig, card, progress: bool) -> Inputs:
    """Read and check every image the adaptation needs; refuse what cannot work."""
    tcfg = card.transform()
    paths = [str(p) for p in expand(cfg.fake)]
    reader = FaceReader(tcfg, cfg.faces, cfg.align_style)
    with tqdm(total=len(paths), desc="read fakes", disable=not progress, leave=False) as bar:
        fakes = reader.read(paths, bar)
    reader.close()
    if len(fakes) < MIN_FAKES:
        raise ConfigError(f"fake: only {len(fakes)} usable fake faces in {', '.join(cfg.fake)} "
                          f"({len(fakes.no_face)} without a face, {len(fakes.skipped)} unreadable); "
                          f"adapt needs at least {MIN_FAKES}")
    replay = adapt_data.find_replay(card, cfg.replay, cfg.replay_root, [REPO_ROOT, BUNDLED_DIR])
    notes = [replay.note] if replay.note else []
    sets = adapt_data.replay_sets(replay, cfg.replay_per_class, cfg.seed)
    user_real = [str(p) for p in expand(cfg.real)] if cfg.real else []
    _refuse_leaks(fakes.paths, user_real + (adapt_data.training_images(replay) if replay.available else []))
    if user_real:
        threshold_paths = user_real
        train_real_paths = sets.train_real
        if not train_real_paths:       # no replay: half the user's reals train, the other half choose
            order = np.random.default_rng(cfg.seed).permutation(len(user_real))
            train_real_paths = [user_real[i] for i in sorted(order[: len(order) // 2])]
            threshold_paths = [user_real[i] for i in sorted(order[len(order) // 2:])]
            notes.append(f"{len(train_real_paths)} of your {len(user_real)} reals train, "
                         f"{len(threshold_paths)} choose the thresholds")
    elif sets.val_real:
        threshold_paths, train_real_paths = sets.val_real, sets.train_real
    else:
        raise ConfigError("real: the base's training reals are not found here, so there are no reals to "
                          "train with or to choose the thresholds on; pass --real DIR (your own real photos, "
                          f"at least {MIN_THRESHOLD_REALS}) or --replay DIR")
    if len(threshold_paths) < MIN_THRESHOLD_REALS:
        raise ConfigError(f"real: {len(threshold_paths)} reals cannot carry a 3% threshold (one false alarm is "
                          f"{1 / max(1, len(threshold_paths)):.0%}); give at least {MIN_THRESHOLD_REALS}, "
                          f"better {FEW_THRESHOLD_REALS}+")
    if len(threshold_paths) < FEW_THRESHOLD_REALS:
        notes.append(f"the thresholds rest on {len(threshold_paths)} reals only: their false-alarm rate is "
                     "uncertain (the card gives its 95% interval)")
    return Inputs(fakes, _squares(train_real_paths, tcfg, progress, "read reals"),
                  _squares(sets.train_fake, tcfg, progress, "read replay"),
                  _squares(threshold_paths, tcfg, progress, "read threshold reals"), threshold_paths,
                  sets.val_fake, notes, replay)


def _refuse_leaks(fakes: list[str], others: list[str]) -> None:
    pairs = adapt_data.leaks(fakes, others)
    if pairs:
        shown = "; ".join(f"{a} = {b}" for a, b in pairs[:3])
        raise ConfigError(f"fake: {len(pairs)} fake file(s) are byte-identical to reals or to the base's "
                          f"training images ({shown}{' ...' if len(pairs) > 3 else ''}); remove them")


@dataclass
class Cache:
    """The frozen part's outputs: views of the training groups, ``plain`` view of the rest."""

    real: torch.Tensor
    old_fake: torch.Tensor | None
    new_fake: torch.Tensor          # (views * N, ...), view-major
    new_plain: torch.Tensor         # (N, ...)
    threshold_real: torch.Tensor    # (R, ...)
    n_views: int

    def new_rows(self, idx: list[int]) -> torch.Tensor:
        n = len(self.new_plain)
        return self.new_fake[[v * n + i for v in range(self.n_views) for i in idx]]


def build_cache(frozen, inputs: Inputs, views, seed: int) -> Cache:
    new = cache_inputs(frozen, inputs.fakes.images, views, seed + 1)
    return Cache(real=cache_inputs(frozen, inputs.train_real, views, seed),
                 old_fake=cache_inputs(frozen, inputs.old_fake, views, seed + 2) if inputs.old_fake else None,
                 new_fake=new, new_plain=new[: len(inputs.fakes)],
                 threshold_real=cache_inputs(frozen, inputs.threshold_real, ("plain",), seed + 3),
                 n_views=len(views))


@torch.inference_mode()
def p_fake(trainable, cached: torch.Tensor, batch: int = 256) -> np.ndarray:
    """``after_softmax`` p(fake) of cached frozen outputs through ``trainable``: ``(M,)``."""
    out = [1 - torch.softmax(trainable(cached[i:i + batch]).float(), 1)[:, 1].mean((1, 2))
           for i in range(0, len(cached), batch)]
    return torch.cat(out).numpy() if out else np.zeros(0)


def make_autocast(cfg: AdaptConfig) -> Callable | None:
    fast = FastPath(bf16=cfg.bf16)
    device = torch.device("cpu")
    return (lambda: autocast(fast, device)) if use_bf16(cfg.bf16, device) else None


def estimate(cfg: AdaptConfig, base_model, cache: Cache, bar=None) -> dict[str, Any]:
    """k-fold: each fold's model trains on the other folds' fakes, and its held fold is scored
    at the threshold the fold's model gets on the threshold reals. Pooled held-back scores."""
    n = len(cache.new_plain)
    scores, cuts = np.zeros(n), []
    for k, held in enumerate(adapt_data.folds(n, cfg.folds, cfg.seed)):
        keep = sorted(set(range(n)) - set(held))
        model = adapted_copy(base_model)
        _, trainable = split_model(model, cfg.method)
        pools = Pools(cache.real, cache.new_rows(keep), cache.old_fake)
        train_trainable(trainable, pools, cfg.recipe(), cfg.seed + 100 * (k + 1), make_autocast(cfg), bar)
        reals = p_fake(trainable, cache.threshold_real)
        scores[held] = p_fake(trainable, cache.new_plain[held])
        cut = {name: fpr_cut(reals, fpr) for name, fpr in FPR_TARGETS}
        cuts.append({**cut, **{name + "_held": [bool(x >= c) for x in scores[held]] for name, c in cut.items()}})
    return {"folds": len(cuts), "held_scores": scores.tolist(), "cuts": cuts}


def adapt(cfg: AdaptConfig, progress: bool = True) -> dict[str, Any]:
    """Run one adaptation (see the module docstring); the card's numbers as a dict."""
    t0 = time.time()
    cfg.validate()
    base, source = open_base(cfg)
    if not base.card.patch:
        raise ConfigError(f"model: {source} is a full-image model; adapt works on patch models")
    inputs = gather(cfg, base.card, progress)
    for note in inputs.notes:
        print(note, flush=True)
    frozen, _ = split_model(adapted_copy(base.model), cfg.method)
    cache = build_cache(frozen, inputs, cfg.recipe().views, cfg.seed)
    runs = 1 + (len(adapt_data.folds(len(inputs.fakes), cfg.folds, cfg.seed)) if cfg.estimate else 0)
    with tqdm(total=runs * cfg.steps, desc="adapt", unit="step", disable=not progress, leave=False) as bar:
        est = estimate(cfg, base.model, cache, bar) if cfg.estimate else None
        model = adapted_copy(base.model)
        _, trainable = split_model(model, cfg.method)
        pools = Pools(cache.real, cache.new_fake, cache.old_fake)
        losses = train_trainable(trainable, pools, cfg.recipe(), cfg.seed, make_autocast(cfg), bar)
    return write_adapted(cfg, base, source, model, inputs, est, losses, t0, progress)
