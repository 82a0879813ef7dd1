"""Aggregating patch logits into image scores, and the detection metrics.

Logits follow the seed: channel 0 = fake, 1 = real, and the aggregations below
compute the seed's ``P(real)`` (``scores.csv`` and every page show ``p(fake) =
1 - P(real)`` instead). The metrics treat *fake as the positive class*, as a
screening tool does: ``ap`` is ``average_precision_score(labels == fake,
p(fake))``. The seed's AP, with real as the positive class and ``P(real)`` as the
score, is kept as ``ap_real_positive`` for comparison with the paper's code.
Accuracy and ROC-AUC do not depend on the choice.

Aggregations of a ``(N, 2, H, W)`` logit map into one score per image:

- ``vote``: fraction of patches whose argmax is real;
- ``before_softmax``: softmax of the spatially averaged logits;
- ``after_softmax``: average of the per-patch softmax probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..core.imageio import SkipLog

AGGREGATIONS = ("vote", "before_softmax", "after_softmax")


def aggregate(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(N, 2, H, W)`` logits -> ``{aggregation: (N,) P(real)}``."""
    logits = logits.float()
    n = logits.shape[0]
    votes = (logits[:, 1] > logits[:, 0]).float().reshape(n, -1).mean(dim=1)
    before = torch.softmax(logits.mean(dim=(2, 3)), dim=1)[:, 1]
    after = torch.softmax(logits, dim=1)[:, 1].mean(dim=(1, 2))
    return {"vote": votes, "before_softmax": before, "after_softmax": after}


def image_p_fake(logits: torch.Tensor, aggregation: str = "after_softmax") -> np.ndarray:
    """``(N, 2, H, W)`` logits -> ``(N,)`` float64 p(fake) of each image (1 - its aggregated
    P(real)), as every page and table shows it."""
    return 1.0 - aggregate(logits)[aggregation].double().numpy()


def binary_metrics(p_real: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict:
    """AP (fake positive), the seed's AP (real positive), accuracy at ``threshold``,
    ROC-AUC, per-class accuracy and n.

    ``p_real``: ``(N,)`` scores in [0, 1]; ``labels``: ``(N,)`` with 1 = real, 0 = fake.
    A score equal to the threshold counts as fake (the seed's argmax of [1-p, p]).
    """
    # scikit-learn (and the scipy it pulls in) only when metrics are computed: ``detect`` and
    # ``serve`` import this module and need none, and the import cost 1-2 s of their start-up
    from sklearn import metrics as skm

    p_real, labels = np.asarray(p_real, dtype=np.float64), np.asarray(labels).astype(int)
    pred = (p_real > threshold).astype(int)
    both = len(np.unique(labels)) == 2
    out = {
        "ap": float(skm.average_precision_score(labels == 0, 1.0 - p_real)) if both else float("nan"),
        "ap_real_positive": float(skm.average_precision_score(labels, p_real)) if both else float("nan"),
        "acc": float(np.mean(pred == labels)),
        "roc_auc": float(skm.roc_auc_score(labels, p_real)) if both else float("nan"),
        "real_acc": float(np.mean(pred[labels == 1] == 1)) if np.any(labels == 1) else float("nan"),
        "fake_acc": float(np.mean(pred[labels == 0] == 0)) if np.any(labels == 0) else float("nan"),
        "n": int(len(labels)),
    }
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``k / n`` (sound for small ``n`` and 0 or n hits)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p, z2 = k / n, z * z
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def rate(flags: np.ndarray) -> dict[str, Any]:
    """``{k, n, rate, ci}`` of a boolean vector."""
    k, n = int(np.sum(flags)), int(len(flags))
    return {"k": k, "n": n, "rate": k / n if n else float("nan"), "ci": list(wilson(k, n))}


#: resamples of :func:`bootstrap_ci`: on a test set of 53 fakes and 196 reals the interval is
#: 0.1-0.2 wide and its bounds move by up to ~0.015 between resampling seeds at this count
BOOTSTRAP_RESAMPLES = 2000


def resampled_mean_interval(values: np.ndarray, idx: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` ``(N,)`` over ``idx`` ``(R, N)``:
    R resamples of its indices (drawn once and shared when several quantities are paired)."""
    means = np.asarray(values, dtype=np.float64)[idx].mean(axis=1)
    tail = (1.0 - level) / 2
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(lo), float(hi)


def bootstrap_ci(p_fake: np.ndarray, is_fake: np.ndarray, level: float = 0.95,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of AP (fakes positive) and ROC-AUC over the test images.

    Stratified: each resample draws the fakes and the reals separately, with replacement and
    at their own counts, so every resample keeps the test set's class balance (and AP its
    baseline). Deterministic in ``seed``. Ties are scored as scikit-learn scores them (AP
    steps at distinct scores, ROC-AUC counts a tie as one half), so without resampling the
    two functions below give ``binary_metrics``' numbers exactly.
    """
    p_fake, is_fake = np.asarray(p_fake, dtype=np.float64), np.asarray(is_fake, dtype=bool)
    pos, neg = p_fake[is_fake], p_fake[~is_fake]
    if not len(pos) or not len(neg):
        nan = (float("nan"), float("nan"))
        return {"ap": nan, "roc_auc": nan}
    rng = np.random.default_rng(seed)
    scores = np.concatenate([pos[rng.integers(0, len(pos), (resamples, len(pos)))],
                             neg[rng.integers(0, len(neg), (resamples, len(neg)))]], axis=1)
    labels = np.zeros(scores.shape, dtype=bool)
    labels[:, :len(pos)] = True
    tail = (1.0 - level) / 2
    out = {}
    for name, values in (("ap", average_precision_rows(scores, labels)), ("roc_auc", roc_auc_rows(scores, labels))):
        lo, hi = np.quantile(values, [tail, 1.0 - tail])
        out[name] = (float(lo), float(hi))
    return out


# Row-wise versions of scikit-learn's scorers: they take one vector per call, and 2,000 calls
# per test set and aggregation made a findings table take minutes; these score every resample at once.
def average_precision_rows(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AP of each row of ``scores`` ``(R, N)`` against ``positive`` ``(R, N)``, with ties as
    scikit-learn's ``average_precision_score``: each positive counts the precision at the
    lowest score of its tie group."""
    order = np.argsort(-scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    y = np.take_along_axis(positive, order, axis=1)
    tp = np.cumsum(y, axis=1)
    precision = tp / np.arange(1, s.shape[1] + 1)
    # index of the last member of each item's tie group: ends are where the next score differs
    last = s.shape[1] - 1
    is_end = np.ones(s.shape, dtype=bool)
    is_end[:, :-1] = s[:, :-1] != s[:, 1:]
    end_index = np.where(is_end, np.arange(s.shape[1]), last)
    end_index = np.minimum.accumulate(end_index[:, ::-1], axis=1)[:, ::-1]
    at_end = np.take_along_axis(precision, end_index, axis=1)
    return (at_end * y).sum(axis=1) / np.maximum(y.sum(axis=1), 1)


def roc_auc_rows(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row (Mann-Whitney U with average ranks: a tie counts one half)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)
    n_pos = positive.sum(axis=1)
    n_neg = positive.shape[1] - n_pos
    return ((ranks * positive).sum(axis=1) - n_pos * (n_pos + 1) / 2) / np.maximum(n_pos * n_neg, 1)


class PatchHistogram:
    """Streaming per-patch metrics in constant memory.

    Patches are counted per class in fixed bins of the logit difference
    ``d = logit_real - logit_fake`` (P(real) = sigmoid(d), so the ranking is the
    same); ``bin_width`` 0.01 over ``[-clip, clip]`` plus two overflow bins, with
    a bin edge at 0 so accuracy at P = 0.5 is exact. AP and ROC-AUC are exact
    for scores rounded to their bin; :meth:`metrics` also reports
    ``ap_error_bound`` (and ``ap_real_positive_error_bound``), the largest change
    in AP that re-ordering patches *inside* bins could cause (derived from the
    counts, so it is a true bound).
    """

    def __init__(self, clip: float = 30.0, bin_width: float = 0.01):
        self.clip, self.bin_width = clip, bin_width
        self.n_inner = int(round(2 * clip / bin_width))
        self.counts = np.zeros((2, self.n_inner + 2), dtype=np.int64)  # [fake, real]

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: logits ``(N, 2, H, W)``, labels ``(N,)``."""
        d = (logits[:, 1] - logits[:, 0]).float()
        idx = torch.floor((d + self.clip) / self.bin_width).long() + 1
        idx = idx.clamp_(0, self.n_inner + 1).reshape(d.shape[0], -1)
        for c in (0, 1):
            sel = idx[labels == c]
            if sel.numel():
                self.counts[c] += torch.bincount(sel.reshape(-1), minlength=self.n_inner + 2).numpy()

    def merge(self, other: "PatchHistogram") -> None:
        self.counts += other.counts

    def metrics(self) -> dict:
        neg, pos = self.counts[0].astype(np.float64), self.counts[1].astype(np.float64)
        P, N = pos.sum(), neg.sum()
        zero_bin = self.n_inner // 2 + 1   # first bin with d >= 0
        pred_real = np.arange(len(pos)) >= zero_bin
        # d == 0 exactly is P(real) = 0.5 which counts as fake; it falls in zero_bin,
        # a measure-zero case for float logits that we accept.
        out = {
            "acc": float((pos[pred_real].sum() + neg[~pred_real].sum()) / max(P + N, 1)),
            "real_acc": float(pos[pred_real].sum() / P) if P else float("nan"),
            "fake_acc": float(neg[~pred_real].sum() / N) if N else float("nan"),
            "n": int(P + N),
        }
        if P == 0 or N == 0:
            out.update(ap=float("nan"), ap_error_bound=float("nan"), ap_real_positive=float("nan"),
                       ap_real_positive_error_bound=float("nan"), roc_auc=float("nan"))
            return out
        # fakes rank by p(fake): bins from the lowest d up; reals by P(real): from the highest down
        out["ap"], out["ap_error_bound"] = _binned_ap(neg, pos)
        out["ap_real_positive"], out["ap_real_positive_error_bound"] = _binned_ap(pos[::-1], neg[::-1])
        # ROC-AUC with ties counted as one half (the same for either positive class)
        p_b, n_b = pos[::-1], neg[::-1]
        fp_before = np.cumsum(n_b) - n_b
        out["roc_auc"] = float(np.sum(p_b * (N - fp_before - n_b + 0.5 * n_b)) / (P * N))
        return out


def _binned_ap(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """AP of per-bin counts ordered from the highest score down, and the largest change
    that re-ordering items *inside* bins could cause (a true bound, from the counts)."""
    P = pos.sum()
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    keep = (pos + neg) > 0
    precision = tp / np.maximum(tp + fp, 1)
    ap = float(np.sum(pos[keep] / P * precision[keep]))
    tp0, fp0 = tp - pos, fp - neg
    # inside a bin the precision seen by its positives lies between "all its
    # negatives ranked first" (lo) and "all its positives ranked first" (hi)
    hi = (tp0 + pos) / np.maximum(tp0 + pos + fp0, 1)
    lo = (tp0 + 1) / (tp0 + fp0 + neg + 1)
    return ap, float(np.sum(pos / P * (hi - lo)))


# ------------------------------------------------------- per-dataset scores
@dataclass
class Predictions:
    """Per-image scores (P(real) per aggregation, see :meth:`p_fake`) and streaming patch counts."""

    paths: list[str]
    labels: np.ndarray                      # (N,) 1 = real, 0 = fake
    scores: dict[str, np.ndarray]           # aggregation -> (N,) P(real)
    patches: PatchHistogram
    skipped: SkipLog = field(default_factory=SkipLog)
    index: np.ndarray | None = None          # (N,) position of each image in the input samples

    def p_fake(self, aggregation: str) -> np.ndarray:
        """``(N,)`` p(fake) = 1 - P(real) of ``aggregation``: the score people read."""
        return 1.0 - np.asarray(self.scores[aggregation], dtype=np.float64)

    def metrics(self, thresholds: dict[str, float] | None = None) -> dict:
        out = {agg: binary_metrics(self.scores[agg], self.labels) for agg in AGGREGATIONS}
        out["patch"] = self.patches.metrics()
        for tname, t in (thresholds or {}).items():
            m = binary_metrics(self.scores["after_softmax"], self.labels, threshold=t)
            out["after_softmax"][f"acc@{tname}"] = m["acc"]
            out["after_softmax"][f"real_acc@{tname}"] = m["real_acc"]
            out["after_softmax"][f"fake_acc@{tname}"] = m["fake_acc"]
        return out


class ScoreAccumulator:
    """Turns a stream of logit batches into :class:`Predictions` in bounded memory.

    Per image it keeps three float scores, its label, index and path; patch maps
    are folded into a :class:`PatchHistogram` batch by
    batch and dropped, so memory grows by ~100 bytes per image, not by its map.
    """

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.labels: list[np.ndarray] = []
        self.index: list[np.ndarray] = []
        self.scores: dict[str, list[np.ndarray]] = {a: [] for a in AGGREGATIONS}
        self.patches, self.skipped = PatchHistogram(), SkipLog()

    def add(self, logits: torch.Tensor, labels: torch.Tensor, paths: Sequence[str],
            index: torch.Tensor) -> None:
        """One batch: logits ``(B, 2, H', W')``, labels/index ``(B,)``."""
        logits = logits.float().cpu()
        # copies, not views: a small array that keeps its batch's torch storage alive
        # fragments the heap, and peak memory then creeps up with the number of batches
        for agg, v in aggregate(logits).items():
            self.scores[agg].append(v.numpy().copy())
        self.patches.update(logits, labels)
        self.labels.append(labels.numpy().copy())
        self.index.append(index.numpy().copy())
        self.paths.extend(paths)

    def result(self) -> Predictions:
        cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0))
        return Predictions(self.paths, cat(self.labels).astype(int),
                           {a: cat(v) for a, v in self.scores.items()}, self.patches, self.skipped,
                           cat(self.index).astype(np.int64))
