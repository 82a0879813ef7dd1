"""The metrics table of a detector's model card, computed through ``detect``.

    python -m patchforensics.screening.card_metrics [--model DIR] [--data ../shared/data/faces128]

prints the ``<!-- card-metrics -->`` block of ``bundled/MODEL_CARD.md``: one row
per fake test set against the FFHQ test reals, and a false-alarm row with the
CelebA-HQ test reals (never among the FFHQ reals of the other rows) against the
StyleGAN2 test fakes. AP treats fakes as the positive class (ranked by p(fake)),
seed AP reals (ranked by P(real), the paper's convention); the accuracies at ``eer``/``fpr1pct`` apply
``detect``'s rule (fake when p(fake) >= the card's cut) to ``detect``'s scores.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..data.dataset import default_data_root
from ..scoring.engine import Engine
from ..scoring.metrics import binary_metrics

COLUMNS = ("n", "ap", "ap_real_positive", "roc_auc", "acc", "acc@eer", "acc@fpr1pct", "real_acc@eer", "fake_acc@eer")
ROWS = (("tpdne-stylegan2", "ffhq", "tpdne-stylegan2"), ("stylegan1", "ffhq", "stylegan1"),
        ("generated-photos", "ffhq", "generated-photos"),
        ("celebahq-vs-tpdne-stylegan2", "celebahq", "tpdne-stylegan2"))


def card_metrics(faces: str | Path, model: str | None = None,
                 engine: Engine | None = None) -> dict[str, dict[str, float]]:
    """``{row name: {column: value}}`` for :data:`ROWS` on the test split of ``faces``
    (``model``: a checkpoint folder, default the bundled detector)."""
    from .detect import DetectConfig, detect

    faces = Path(faces)
    engine = engine or Engine.load(model)
    folders = sorted({faces / d / "test" for _, real, fake in ROWS for d in (real, fake)})
    # one scoring pass: the thresholds differ only in the cut applied to p(fake)
    result = detect(DetectConfig(paths=[str(f) for f in folders], model=model, faces="aligned"), progress=False,
                    engine=engine)
    if result.skipped:
        raise ValueError(f"unreadable test images: {result.skipped}")
    p_fake = {f: np.array([face.p_fake for im, face in result.faces if im.path.startswith(str(f) + "/")])
              for f in folders}
    out = {}
    for name, real, fake in ROWS:
        scores = np.concatenate([p_fake[faces / real / "test"], p_fake[faces / fake / "test"]])
        labels = np.array([1] * len(p_fake[faces / real / "test"]) + [0] * len(p_fake[faces / fake / "test"]))
        m = binary_metrics(1.0 - scores, labels)
        row = dict(n=len(labels), ap=m["ap"], ap_real_positive=m["ap_real_positive"], roc_auc=m["roc_auc"],
                   acc=m["acc"])
        for threshold in ("eer", "fpr1pct"):
            called_real = scores < engine.card.p_fake_threshold(threshold)   # detect's rule
            row[f"acc@{threshold}"] = float(np.mean(called_real == labels))
            if threshold == "eer":
                row["real_acc@eer"] = float(np.mean(called_real[labels == 1]))
                row["fake_acc@eer"] = float(np.mean(~called_real[labels == 0]))
        out[name] = {c: row[c] for c in COLUMNS}
    return out


def markdown(rows: dict[str, dict[str, float]]) -> str:
    """The card's table, between the markers that :func:`parse` reads back."""
    lines = ["<!-- card-metrics -->",
             "| test set (reals vs fakes) | n | AP | seed AP | ROC-AUC | acc@0.5 | acc@eer | acc@fpr1pct | "
             "real acc@eer | fake acc@eer |", "|" + "---|" * (len(COLUMNS) + 1)]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['n']} | " + " | ".join(f"{r[c]:.4f}" for c in COLUMNS[1:]) + " |")
    return "\n".join(lines + ["<!-- /card-metrics -->"])


def parse(card_text: str) -> dict[str, dict[str, float]]:
    """The table :func:`markdown` wrote, read back from a model card."""
    import re

    block = re.search(r"<!-- card-metrics -->(.*?)<!-- /card-metrics -->", card_text, re.S).group(1)
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(COLUMNS) + 1 and re.fullmatch(r"[\d.]+", cells[1]):
            rows[cells[0]] = dict(zip(COLUMNS, map(float, cells[1:])))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description="print a detector's model-card metrics table")
    ap.add_argument("--model", default=None, help="checkpoint folder (default: the bundled detector)")
    ap.add_argument("--data", default=None, help="faces folder (default ../shared/data/faces128)")
    args = ap.parse_args()
    print(markdown(card_metrics(default_data_root(args.data), args.model)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
