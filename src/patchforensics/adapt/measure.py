"""The numbers an adaptation reports: cut points on validation reals, rates with Wilson
intervals, and forgetting as paired differences on the base's own test sets."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.imageio import list_images
from ..data.dataset import FAKE, REAL, Sample
from ..evaluation.calibrate import fpr_threshold
from ..scoring.metrics import average_precision_rows, binary_metrics, rate

BOOTSTRAP = 2000          # paired resamples for the forgetting intervals


def fpr_cut(p_fake_reals: np.ndarray, target_fpr: float) -> float:
    """The p(fake) cut (fake when ``p >= cut``) flagging at most ``target_fpr`` of these
    reals: :func:`~patchforensics.evaluation.calibrate.fpr_threshold`'s rule, so the
    shipped thresholds and the estimates agree."""
    p_real = 1.0 - np.asarray(p_fake_reals, dtype=np.float64)
    return 1.0 - fpr_threshold(p_real, np.full(len(p_real), REAL), target_fpr)


def ap(p_fake_reals: np.ndarray, p_fake_fakes: np.ndarray) -> float:
    """AP with fakes as the positive class, ranked by p(fake)."""
    scores = np.r_[p_fake_reals, p_fake_fakes]
    labels = np.r_[np.full(len(p_fake_reals), REAL), np.full(len(p_fake_fakes), FAKE)]
    return float(binary_metrics(1.0 - scores, labels)["ap"])


@dataclass
class TestSet:
    """One of the base's test splits: a folder's ``test`` images and their class."""

    name: str
    label: int
    paths: list[str]

    def samples(self) -> list[Sample]:
        return [Sample(p, self.label) for p in self.paths]


def test_sets(real: Sequence[str], fake: Sequence[str], split: str = "test") -> list[TestSet]:
    """The ``split`` of every folder that has one (forgetting is measured on ``test``)."""
    out = []
    for folders, label in ((real, REAL), (fake, FAKE)):
        for f in folders:
            if (Path(f) / split).is_dir():
                out.append(TestSet(Path(f).name, label, [str(p) for p in list_images(Path(f) / split)]))
    return out


def paired_ci(before: np.ndarray, after: np.ndarray, stat, seed: int = 0) -> list[float]:
    """95% percentile interval of ``stat(after[idx]) - stat(before[idx])`` over paired
    bootstrap resamples ``idx`` of the same images."""
    rng = np.random.default_rng(seed)
    n = len(before)
    diffs = [stat(after[idx]) - stat(before[idx]) for idx in (rng.integers(0, n, n) for _ in range(BOOTSTRAP))]
    return [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]


def paired_ap_ci(reals: tuple[np.ndarray, np.ndarray], fakes: tuple[np.ndarray, np.ndarray],
                 seed: int = 0) -> list[float]:
    """95% interval of AP(after) - AP(before) (fakes positive, ranked by p(fake)) over paired
    bootstrap resamples: the same reals and fakes drawn for both models."""
    rng = np.random.default_rng(seed)
    ri = rng.integers(0, len(reals[0]), (BOOTSTRAP, len(reals[0])))
    fi = rng.integers(0, len(fakes[0]), (BOOTSTRAP, len(fakes[0])))
    positive = np.concatenate([np.zeros(ri.shape, bool), np.ones(fi.shape, bool)], axis=1)
    aps = [average_precision_rows(np.concatenate([r[ri], f[fi]], axis=1), positive) for r, f in zip(reals, fakes)]
    diffs = aps[1] - aps[0]
    return [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]


def forgetting(sets: Sequence[TestSet], before: dict[str, np.ndarray], after: dict[str, np.ndarray],
               cut_before: float, cut_after: float) -> list[dict[str, Any]]:
    """One row per test set: flagged share (recall of fakes, false alarms of reals) before
    and after at each model's default cut, the paired difference with its interval, and for
    fakes AP against all the test reals before and after."""
    reals_b = np.concatenate([before[s.name] for s in sets if s.label == REAL] or [np.zeros(0)])
    reals_a = np.concatenate([after[s.name] for s in sets if s.label == REAL] or [np.zeros(0)])
    rows = []
    for s in sets:
        b, a = before[s.name], after[s.name]
        fb, fa = b >= cut_before, a >= cut_after
        row = {"set": s.name, "class": "fake" if s.label == FAKE else "real", "n": int(len(b)),
               "before": rate(fb), "after": rate(fa), "diff": float(fa.mean() - fb.mean()),
               "diff_ci": paired_ci(fb.astype(float), fa.astype(float), np.mean)}
        if s.label == FAKE and len(reals_b):
            row["ap_before"], row["ap_after"] = ap(reals_b, b), ap(reals_a, a)
            row["ap_diff_ci"] = paired_ap_ci((reals_b, reals_a), (b, a))
        rows.append(row)
    return rows
