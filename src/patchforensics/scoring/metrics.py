"""Aggregating patch logits into image scores, and the detection metrics.

Conventions follow the seed: logits channel 0 = fake, 1 = real; every score is
``P(real)`` and the metrics treat *real as the positive class* (so AP is the
seed's ``average_precision_score(labels, P(real))``).

Aggregations of a ``(N, 2, H, W)`` logit map into one score per image:

- ``vote``: fraction of patches whose argmax is real;
- ``before_softmax``: softmax of the spatially averaged logits;
- ``after_softmax``: average of the per-patch softmax probabilities.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn import metrics as skm

AGGREGATIONS = ("vote", "before_softmax", "after_softmax")


def aggregate(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(N, 2, H, W)`` logits -> ``{aggregation: (N,) P(real)}``."""
    logits = logits.float()
    n = logits.shape[0]
    votes = (logits[:, 1] > logits[:, 0]).float().reshape(n, -1).mean(dim=1)
    before = torch.softmax(logits.mean(dim=(2, 3)), dim=1)[:, 1]
    after = torch.softmax(logits, dim=1)[:, 1].mean(dim=(1, 2))
    return {"vote": votes, "before_softmax": before, "after_softmax": after}


def patch_probs(logits: torch.Tensor) -> torch.Tensor:
    """``(N, 2, H, W)`` logits -> ``(N, H, W)`` per-patch P(real)."""
    return torch.softmax(logits.float(), dim=1)[:, 1]


def binary_metrics(p_real: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict:
    """AP, accuracy at ``threshold``, ROC-AUC, per-class accuracy and n.

    ``p_real``: ``(N,)`` scores in [0, 1]; ``labels``: ``(N,)`` with 1 = real, 0 = fake.
    A score equal to the threshold counts as fake (the seed's argmax of [1-p, p]).
    """
    p_real, labels = np.asarray(p_real, dtype=np.float64), np.asarray(labels).astype(int)
    pred = (p_real > threshold).astype(int)
    both = len(np.unique(labels)) == 2
    out = {
        "ap": float(skm.average_precision_score(labels, p_real)) if both else float("nan"),
        "acc": float(np.mean(pred == labels)),
        "roc_auc": float(skm.roc_auc_score(labels, p_real)) if both else float("nan"),
        "real_acc": float(np.mean(pred[labels == 1] == 1)) if np.any(labels == 1) else float("nan"),
        "fake_acc": float(np.mean(pred[labels == 0] == 0)) if np.any(labels == 0) else float("nan"),
        "n": int(len(labels)),
    }
    return out


class PatchHistogram:
    """Streaming per-patch metrics in constant memory.

    Patches are counted per class in fixed bins of the logit difference
    ``d = logit_real - logit_fake`` (P(real) = sigmoid(d), so the ranking is the
    same); ``bin_width`` 0.01 over ``[-clip, clip]`` plus two overflow bins, with
    a bin edge at 0 so accuracy at P = 0.5 is exact. AP and ROC-AUC are exact
    for scores rounded to their bin; :meth:`metrics` also reports
    ``ap_error_bound``, the largest change in AP that re-ordering patches
    *inside* bins could cause (derived from the counts, so it is a true bound).
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
            out.update(ap=float("nan"), roc_auc=float("nan"), ap_error_bound=float("nan"))
            return out
        # walk bins from the highest score down (thresholds at each bin)
        tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
        p_b, n_b = pos[::-1], neg[::-1]
        keep = (p_b + n_b) > 0
        precision = tp / np.maximum(tp + fp, 1)
        out["ap"] = float(np.sum(p_b[keep] / P * precision[keep]))
        # ROC-AUC with ties counted as one half
        fp_before = fp - n_b
        out["roc_auc"] = float(np.sum(p_b * (N - fp_before - n_b + 0.5 * n_b)) / (P * N))
        tp0, fp0 = tp - p_b, fp - n_b
        # inside a bin the precision seen by its positives lies between "all its
        # negatives ranked first" (lo) and "all its positives ranked first" (hi)
        hi = (tp0 + p_b) / np.maximum(tp0 + p_b + fp0, 1)
        lo = (tp0 + 1) / (tp0 + fp0 + n_b + 1)
        err = np.sum(p_b / P * (hi - lo))
        out["ap_error_bound"] = float(err)
        return out
