"""Evasion by everyday edits: how far does an edit a photo meets on its way (re-compression,
resizing, greyscale, a painted backdrop …) move a detector's verdicts?

For the unedited images (``none``) and each edit of the ``--corrupt`` grammar
(:mod:`~patchforensics.data.corruptions`, default list
:data:`~patchforensics.data.corruptions.EVERYDAY_EDITS`), per test set: the share flagged fake at
the threshold (recall for a fake set, false alarms for a real one), the share of verdicts the edit
flips against the same image unedited (toward real for fakes: an evasion; toward fake for reals: a
false alarm it caused), and the mean change of p(fake), each with a 95% percentile bootstrap
interval over the set's images. The resamples are drawn once per set and reused for every edit, so
the edits are compared on the same draws.

Edits are applied as ``test --corrupt`` applies them: after the model's evaluation geometry
(:func:`~patchforensics.data.transforms.eval_image`), on the pixels the model sees.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data.corruptions import Corruption, parse_corruption
from ..data.transforms import eval_image, to_tensor
from ..scoring.engine import Engine
from ..scoring.metrics import image_p_fake, resampled_mean_interval

#: bootstrap resamples per set: the interval bounds of a share over 20-300 images move by about
#: a point between resampling seeds at this count, well under the intervals' width
EVASION_RESAMPLES = 500
#: the condition every edit is compared with
UNEDITED = "none"


def edited_p_fake(engine: Engine, images: Sequence[Image.Image], corruption: Corruption | None,
                  batch_size: int = 64) -> np.ndarray:
    """``(N,)`` float64 p(fake) (``1 -`` the after-softmax P(real), as every page shows it) of
    ``images`` through the engine's evaluation geometry, then ``corruption`` (``None``: unedited)."""
    tcfg, edits = engine.card.transform(), (corruption,) if corruption is not None else ()
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.stack([to_tensor(eval_image(im, tcfg, edits)) for im in images[start:start + batch_size]])
        out.append(image_p_fake(engine.logits(batch)))
    return np.concatenate(out) if out else np.zeros(0)


def _interval(values: np.ndarray, idx: np.ndarray) -> list[float]:
    return list(resampled_mean_interval(values, idx))


def _row(edit: str, name: str, cls: str, p: np.ndarray, base: np.ndarray, threshold: float,
         idx: np.ndarray) -> dict[str, Any]:
    flagged, was = p >= threshold, base >= threshold
    flipped = (was & ~flagged) if cls == "fake" else (~was & flagged)
    change = p - base
    return {"edit": edit, "set": name, "class": cls, "measure": "recall" if cls == "fake" else "false_alarms",
            "n": int(len(p)), "flagged": int(flagged.sum()), "flagged_share": float(flagged.mean()),
            "flagged_ci": _interval(flagged, idx), "flipped": int(flipped.sum()),
            "flipped_share": float(flipped.mean()), "flipped_ci": _interval(flipped, idx),
            "mean_p_fake": float(p.mean()), "mean_change": float(change.mean()),
            "mean_change_ci": _interval(change, idx)}


def evasion_table(engine: Engine, reals: dict[str, list[Image.Image]], fakes: dict[str, list[Image.Image]],
                  edits: Sequence[str], threshold: float, *, resamples: int = EVASION_RESAMPLES, seed: int = 0,
                  batch_size: int = 64, progress: bool = False) -> list[dict[str, Any]]:
    """One row per condition (``none``, then each of ``edits`` in order) and test set (reals,
    then fakes, in the dicts' order).

    ``reals`` / ``fakes``: set name -> RGB images; ``edits``: corruption specs (``grey``,
    ``jpeg:75`` …; ``none`` is always the first condition, and listed again it is ignored);
    ``threshold``: the cut on p(fake), fake when ``p(fake) >= threshold``. A row holds ``edit``,
    ``set``, ``class`` (real | fake), ``measure`` (``recall`` for fakes, ``false_alarms`` for
    reals: what ``flagged_share`` is), ``n``; ``flagged`` (count) and ``flagged_share`` with
    ``flagged_ci``; ``flipped`` and ``flipped_share`` (of all ``n``: verdicts the edit turned
    toward real for fakes, toward fake for reals, against the unedited image) with
    ``flipped_ci``; ``mean_p_fake``; ``mean_change`` of p(fake) against the unedited image with
    ``mean_change_ci``. Intervals: 95% percentile bootstrap, ``resamples`` draws seeded by
    ``seed``. Raises ``ValueError`` on a bad spec, an empty set or a threshold outside [0, 1],
    before any scoring.
    """
    corruptions = [parse_corruption(e) for e in edits if e.strip().lower() != UNEDITED]
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is not a p(fake) cut; give one in [0, 1]")
    sets = [(name, "real", list(ims)) for name, ims in reals.items()] + \
        [(name, "fake", list(ims)) for name, ims in fakes.items()]
    if not sets:
        raise ValueError("no test sets: give at least one set of real or fake images")
    empty = [name for name, _, ims in sets if not ims]
    if empty:
        raise ValueError(f"test set(s) {', '.join(empty)} hold no images; give each set at least one")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1; got {resamples}")
    conditions: list[tuple[str, Corruption | None]] = [(UNEDITED, None)] + [(str(c), c) for c in corruptions]
    rows = []
    with tqdm(total=len(sets) * len(conditions), desc="evasion", unit="edit", disable=not progress) as bar:
        for name, cls, images in sets:
            idx = np.random.default_rng(seed).integers(0, len(images), (resamples, len(images)))
            base = edited_p_fake(engine, images, None, batch_size)
            for label, corruption in conditions:
                p = base if corruption is None else edited_p_fake(engine, images, corruption, batch_size)
                rows.append(_row(label, name, cls, p, base, threshold, idx))
                bar.update()
    return rows
