"""The bundled detector reproduces the numbers on its model card, through ``detect``."""
from __future__ import annotations

import re

import numpy as np
import pytest

from patchforensics.models.checkpoint import BUNDLED_DIR
from patchforensics.scoring.engine import Engine
from patchforensics.screening.detect import DetectConfig, detect
from patchforensics.scoring.metrics import binary_metrics

COLUMNS = ("n", "ap", "roc_auc", "acc", "acc@eer", "acc@fpr1pct", "real_acc@eer", "fake_acc@eer")


def card_rows() -> dict[str, dict[str, float]]:
    """The metrics table of MODEL_CARD.md (between the card-metrics markers)."""
    text = (BUNDLED_DIR / "MODEL_CARD.md").read_text()
    block = re.search(r"<!-- card-metrics -->(.*?)<!-- /card-metrics -->", text, re.S).group(1)
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(COLUMNS) + 1 and re.fullmatch(r"[\d.]+", cells[1]):
            rows[cells[0]] = dict(zip(COLUMNS, map(float, cells[1:])))
    return rows


@pytest.mark.slow
def test_detect_reproduces_the_model_card(faces):
    rows = card_rows()
    assert set(rows) == {"tpdne-stylegan2", "generated-photos"}
    engine = Engine.load()     # the bundled detector
    folders = [faces / d / "test" for d in ("ffhq", "tpdne-stylegan2", "generated-photos")]
    result = detect(DetectConfig(paths=[str(f) for f in folders]), progress=False, engine=engine)
    assert not result.skipped and result.threshold_name == "eer"
    by_set = {f.parent.name: [d for d in result.detections if d.path.startswith(str(f) + "/")] for f in folders}
    reals = by_set["ffhq"]
    for name, expected in rows.items():
        dets = reals + by_set[name]
        labels = np.array([1] * len(reals) + [0] * len(by_set[name]))
        p_real = np.array([1.0 - d.p_fake for d in dets])
        # accuracy at the calibrated threshold, from detect's own verdicts
        called_real = np.array([d.verdict == "real" for d in dets])
        got = {"n": len(dets), "acc@eer": np.mean(called_real == labels),
               "real_acc@eer": np.mean(called_real[labels == 1]), "fake_acc@eer": np.mean(~called_real[labels == 0])}
        m = binary_metrics(p_real, labels)
        # the card's AP column was measured with the seed's convention (real positive)
        got.update(ap=m["ap_real_positive"], roc_auc=m["roc_auc"], acc=m["acc"],
                   **{"acc@fpr1pct": binary_metrics(p_real, labels, engine.card.thresholds["fpr1pct"])["acc"]})
        for key in COLUMNS:
            assert got[key] == pytest.approx(expected[key], abs=6e-5), (name, key)
