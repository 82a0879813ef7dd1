"""Aggregations and metrics against scikit-learn on hand-made examples."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from patchforensics.models.card import ModelCard
from patchforensics.scoring.metrics import PatchHistogram, aggregate, binary_metrics


def test_aggregations_on_a_hand_made_map():
    # one image, 2x2 patches: logit difference real-fake = +2, +2, -1, -3
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = torch.tensor([[2.0, 2.0], [-1.0, -3.0]])
    agg = aggregate(logits)
    assert agg["vote"].item() == pytest.approx(0.5)
    assert agg["before_softmax"].item() == pytest.approx(1 / (1 + np.exp(0.0)))  # mean diff = 0
    sig = 1 / (1 + np.exp(-np.array([2.0, 2.0, -1.0, -3.0])))
    assert agg["after_softmax"].item() == pytest.approx(sig.mean(), rel=1e-6)
    assert ModelCard.p_fake(logits)[0].numpy() == pytest.approx(1 - sig.reshape(2, 2), abs=1e-6)


def test_binary_metrics_agree_with_sklearn():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p_real = np.array([0.9, 0.6, 0.4, 0.45, 0.2, 0.7, 0.1, 0.5])
    m = binary_metrics(p_real, labels)
    # ap: fakes are the positives, ranked by p(fake); the seed's AP (reals positive) is kept beside it
    assert m["ap"] == pytest.approx(skm.average_precision_score(labels == 0, 1 - p_real))
    assert m["ap_real_positive"] == pytest.approx(skm.average_precision_score(labels, p_real))
    assert m["ap"] != pytest.approx(m["ap_real_positive"])      # the two conventions differ here
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, p_real))
    # 0.5 exactly counts as fake (argmax of [1-p, p] picks fake on a tie)
    pred = np.array([1, 1, 0, 0, 0, 1, 0, 0])
    assert m["acc"] == pytest.approx(skm.accuracy_score(labels, pred))
    assert m["real_acc"] == pytest.approx(2 / 4)
    assert m["fake_acc"] == pytest.approx(3 / 4)
    assert m["n"] == 8


def test_patch_histogram_matches_exact_metrics_within_its_bound():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    diff = rng.normal(size=(200, 5, 5)) + 1.5 * labels[:, None, None]
    logits = torch.zeros(200, 2, 5, 5)
    logits[:, 1] = torch.from_numpy(diff).float()
    hist = PatchHistogram()
    for i in range(0, 200, 37):  # streaming in uneven batches
        hist.update(logits[i:i + 37], torch.from_numpy(labels[i:i + 37]))
    m = hist.metrics()
    flat_labels = np.repeat(labels, 25)
    flat = logits[:, 1].reshape(-1).numpy()  # float32, as the model would give
    exact_ap = skm.average_precision_score(flat_labels == 0, -flat)          # fakes positive
    exact_ap_real = skm.average_precision_score(flat_labels, flat)           # the seed's convention
    assert m["n"] == 5000
    assert abs(m["ap"] - exact_ap) <= m["ap_error_bound"] + 1e-12
    assert abs(m["ap_real_positive"] - exact_ap_real) <= m["ap_real_positive_error_bound"] + 1e-12
    assert m["ap_error_bound"] < 0.01 and m["ap_real_positive_error_bound"] < 0.01
    assert abs(m["ap"] - exact_ap_real) > 0.01          # so the check above tells the conventions apart
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(flat_labels, flat), abs=1e-3)
    assert m["acc"] == pytest.approx(np.mean((flat > 0) == flat_labels))


def test_patch_histogram_merge_equals_single_pass():
    rng = np.random.default_rng(1)
    logits = torch.randn(10, 2, 3, 3)
    labels = torch.from_numpy(rng.integers(0, 2, 10))
    whole, a, b = PatchHistogram(), PatchHistogram(), PatchHistogram()
    whole.update(logits, labels)
    a.update(logits[:4], labels[:4])
    b.update(logits[4:], labels[4:])
    a.merge(b)
    assert np.array_equal(whole.counts, a.counts)


def test_row_wise_ap_and_auc_equal_sklearn_with_ties():
    """The vectorised AP / ROC-AUC behind the bootstrap intervals score ties as scikit-learn does
    (scores rounded to one or two decimals make many ties)."""
    from patchforensics.scoring.metrics import average_precision_rows, roc_auc_rows

    rng = np.random.default_rng(3)
    scores, labels = [], []
    for _ in range(100):
        n = 40
        y = rng.random(n) < 0.3
        y[:2] = [True, False]
        scores.append(np.round(rng.random(n) * 0.6 + 0.4 * y, rng.integers(1, 3)))
        labels.append(y)
    scores, labels = np.array(scores), np.array(labels)
    ap, auc = average_precision_rows(scores, labels), roc_auc_rows(scores, labels)
    for s, y, a, u in zip(scores, labels, ap, auc):
        assert a == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
        assert u == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


def test_bootstrap_interval_narrows_with_more_test_images_and_is_reproducible():
    from patchforensics.scoring.metrics import bootstrap_ci

    rng = np.random.default_rng(0)

    def scored(n_fake, n_real):
        s = np.concatenate([rng.normal(1.0, 1.0, n_fake), rng.normal(0.0, 1.0, n_real)])
        return s, np.r_[np.ones(n_fake, bool), np.zeros(n_real, bool)]

    small, large = scored(53, 196), scored(530, 1960)
    ci_small, ci_large = bootstrap_ci(*small), bootstrap_ci(*large)
    for metric in ("ap", "roc_auc"):
        lo, hi = ci_small[metric]
        assert 0 <= lo < hi <= 1
        width_large = ci_large[metric][1] - ci_large[metric][0]
        assert width_large < 0.5 * (hi - lo)            # ~1/sqrt(10) of the width
    point = skm.roc_auc_score(small[1], small[0])
    assert ci_small["roc_auc"][0] < point < ci_small["roc_auc"][1]
    assert bootstrap_ci(*small) == ci_small             # the same resamples every time
    assert all(np.isnan(v) for v in bootstrap_ci(np.ones(3), np.ones(3, bool))["ap"])
