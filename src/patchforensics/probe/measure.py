"""Scoring edited faces and summarising how p(fake) moved: mean change, bootstrap interval, flips.

p(fake) is the detector's: 1 - the mean over patches of the softmax's real probability
(``after_softmax``), as ``detect`` scores an aligned face. Every batch the engine sees has the
same shape (a short last batch is padded), so an image scores the same wherever it falls,
and the ``identity`` intervention's change is exactly zero.
"""
from __future__ import annotations

from typing import Hashable, Iterable, Iterator

import numpy as np
from PIL import Image

from ..models.card import ModelCard
from ..scoring.engine import Engine
from ..scoring.metrics import image_p_fake, resampled_mean_interval

#: resamples of the bootstrap interval of a mean change (over images)
RESAMPLES = 1000
LEVEL = 0.95
#: the threshold of a model without calibrated thresholds
FALLBACK_THRESHOLD = 0.5


def decision_threshold(card: ModelCard) -> dict:
    """``{name, p_fake, source}``: the model's default calibrated threshold (``fpr3pct``, else
    ``eer``), or p(fake) >= 0.5 for an uncalibrated model; ``source`` says which, in words."""
    cut = card.default_cut()
    if cut:
        return {"name": cut[0], "p_fake": float(cut[1]),
                "source": f"the model's calibrated threshold {cut[0]} (p(fake) >= {cut[1]:.4f})"}
    return {"name": f"p_fake>={FALLBACK_THRESHOLD:g}", "p_fake": FALLBACK_THRESHOLD,
            "source": f"p(fake) >= {FALLBACK_THRESHOLD:g}: the model has no calibrated threshold "
                      "(run 'patchforensics calibrate')"}


def score_stream(engine: Engine, items: Iterable[tuple[Hashable, np.ndarray]], batch_size: int,
                 on_batch=None) -> Iterator[tuple[Hashable, float]]:
    """``(key, image (S, S, 3) uint8)`` -> ``(key, p(fake))``, scored in batches of exactly
    ``batch_size`` (the last one padded with copies of its last image); ``on_batch(k)`` after each
    batch of ``k`` real images (a progress bar)."""
    keys: list[Hashable] = []
    images: list[Image.Image] = []

    def flush() -> Iterator[tuple[Hashable, float]]:
        k = len(images)
        _, logits = engine.score_images(images + [images[-1]] * (batch_size - k))
        p_fake = image_p_fake(logits)
        if on_batch:
            on_batch(k)
        yield from zip(keys, p_fake[:k].tolist())
        keys.clear()
        images.clear()

    for key, image in items:
        keys.append(key)
        images.append(Image.fromarray(image))
        if len(images) == batch_size:
            yield from flush()
    if images:
        yield from flush()


def mean_interval(values: np.ndarray, resamples: int = RESAMPLES, seed: int = 0,
                  level: float = LEVEL) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of ``values`` and its percentile bootstrap interval over them
    (``resamples`` draws with replacement, ``seed``); NaNs for no values."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return float("nan"), float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(values), (resamples, len(values)))
    return (float(values.mean()), *resampled_mean_interval(values, idx, level))


def summarise(before: np.ndarray, after: np.ndarray, threshold: float, resamples: int = RESAMPLES,
              seed: int = 0) -> dict:
    """How p(fake) moved on the images measured: ``before``, ``after`` ``(n,)`` p(fake) of the
    same images. ``mean_change`` (after - before) with its interval ``lo``, ``hi``;
    ``flipped``: share of verdicts (fake when p(fake) >= ``threshold``) that changed;
    ``flagged_before`` / ``_after``: share called fake; ``mean_p_before`` / ``_after``."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    mean, lo, hi = mean_interval(after - before, resamples, seed)
    n = len(before)

    def share(flags: np.ndarray) -> float:
        return float(flags.mean()) if n else float("nan")

    return {"n": n, "mean_change": mean, "lo": lo, "hi": hi,
            "flipped": share((before >= threshold) != (after >= threshold)),
            "flagged_before": share(before >= threshold), "flagged_after": share(after >= threshold),
            "mean_p_before": float(before.mean()) if n else float("nan"),
            "mean_p_after": float(after.mean()) if n else float("nan")}
