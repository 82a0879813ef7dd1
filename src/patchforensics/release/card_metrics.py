"""The numbers of a detector's model card, computed through ``detect`` (what a screener gets).

    python -m patchforensics.release.card_metrics [--model DIR] [--data ../shared/data/faces128]

prints the card's metric tables (the blocks between ``<!-- card-... -->`` markers
that :func:`parse` reads back; ``tests/screening/test_detect_bundled.py`` recomputes them):

- **decisions**: per test folder, the share flagged fake at the default threshold
  (``fpr3pct``) and the strict one (``fpr1pct``), with 95% Wilson intervals:
  false alarms on the real folders, recall on the fake ones;
- **ranking**: per fake test folder against the FFHQ test reals, AP (fakes positive),
  seed AP (reals positive, the paper's convention) and ROC-AUC; CelebA-HQ test reals
  against the StyleGAN2 test fakes as a false-alarm row;
- **wild**: false alarms on unaligned portraits (``raw/wild-portraits``: found,
  aligned and scored as ``detect`` does; the largest face of each photo), overall
  and by age band (file names end in ``A<age>``);
- **backdrop**: real test faces with a plain band painted on top, left and right
  (:mod:`~patchforensics.release.backdrop`): the flagged share and mean p(fake)
  against the unchanged faces;
- **evasion** (:mod:`~patchforensics.release.evasion`, measured and kept by the release apart from
  these): per everyday edit, recall on the fake test folders and false alarms on the real ones.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.dataset import FAKE, REAL, collect_samples, default_data_root
from ..models.card import STRICT_THRESHOLD
from ..scoring.engine import Engine
from ..scoring.metrics import binary_metrics, rate
from ..screening.detect import DetectConfig, detect
from .backdrop import backdrop_faces, backdrop_shift
from .recipe import FAKE_SETS, REAL_SETS

FALSE_ALARM_ROW = ("celebahq-vs-tpdne-stylegan2", "celebahq", "tpdne-stylegan2")
AGE_BANDS = ((0, 19), (20, 39), (40, 59), (60, 200))


def thresholds(engine: Engine) -> dict[str, dict[str, Any]]:
    """The default and strict decision thresholds of the engine's card, as p(fake) cuts."""
    card = engine.card
    default = card.default_cut()
    if default is None or STRICT_THRESHOLD not in card.thresholds:
        raise ValueError(f"{card.name} lacks calibrated thresholds (a default and {STRICT_THRESHOLD}); run "
                         "'patchforensics calibrate' first")
    return {"default": {"name": default[0], "p_fake": default[1]},
            "strict": {"name": STRICT_THRESHOLD, "p_fake": card.p_fake_threshold(STRICT_THRESHOLD)}}


def _p_fake_of_folders(engine: Engine, faces: Path, folders: Sequence[str]) -> dict[str, np.ndarray]:
    """p(fake) of every test image of each folder, through ``detect`` on aligned faces."""
    out = {}
    for folder in folders:
        result = detect(DetectConfig(paths=[str(faces / folder / "test")], faces="aligned"), progress=False,
                        engine=engine)
        if result.skipped or not result.faces:
            raise ValueError(f"{faces / folder / 'test'}: unreadable or no test images ({result.skipped})")
        out[folder] = np.array([face.p_fake for _, face in result.faces])
    return out


def age_of(path: str) -> int | None:
    """The age in an All-Age-Faces file name (``00032A02.jpg`` -> 2), else None."""
    match = re.search(r"A(\d+)$", Path(path).stem)
    return int(match.group(1)) if match else None


def wild_false_alarms(engine: Engine, folder: Path, cuts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """False alarms on unaligned real portraits: each photo's largest face, found and aligned by ``detect``."""
    result = detect(DetectConfig(paths=[str(folder)], faces="find"), progress=False, engine=engine)
    scored = [(im.path, im.faces[0].p_fake) for im in result.images if im.faces]
    p_fake = np.array([p for _, p in scored])
    ages = np.array([age_of(path) if age_of(path) is not None else -1 for path, _ in scored])
    out: dict[str, Any] = {"photos": len(result.images), "no_face": len(result.no_face),
                           "skipped": len(result.skipped), "faces": len(result.faces)}
    for which, cut in cuts.items():
        out[which] = rate(p_fake >= cut["p_fake"])
    out["by_age"] = {}
    for lo, hi in AGE_BANDS:
        band = (ages >= lo) & (ages <= hi)
        label = f"{lo}-{hi}" if hi < 200 else f"{lo}+"
        out["by_age"][label] = {which: rate(p_fake[band] >= cut["p_fake"]) for which, cut in cuts.items()}
    return out


def card_metrics(faces: str | Path, model: str | None = None, wild: str | Path | None = None,
                 which: str | None = None, engine: Engine | None = None) -> dict[str, Any]:
    """Every table of the card for ``model`` (a checkpoint folder, default the bundled detector)
    on the test split of ``faces``; ``wild``: unaligned portraits (default
    ``<faces>/../raw/wild-portraits`` when present)."""
    faces = Path(faces)
    engine = engine or Engine.load(model, which)
    cuts = thresholds(engine)
    p_fake = _p_fake_of_folders(engine, faces, REAL_SETS + FAKE_SETS)
    decisions = {}
    for folder in REAL_SETS + FAKE_SETS:
        decisions[folder] = {"kind": "real" if folder in REAL_SETS else "fake",
                             **{which_: rate(p_fake[folder] >= cut["p_fake"]) for which_, cut in cuts.items()}}
    ranking = {}
    for name, real, fake in [(f, "ffhq", f) for f in FAKE_SETS] + [FALSE_ALARM_ROW]:
        scores = np.concatenate([p_fake[real], p_fake[fake]])
        labels = np.array([REAL] * len(p_fake[real]) + [FAKE] * len(p_fake[fake]))
        m = binary_metrics(1.0 - scores, labels)
        ranking[name] = {"n": int(len(labels)), "ap": m["ap"], "ap_real_positive": m["ap_real_positive"],
                         "roc_auc": m["roc_auc"]}
    out: dict[str, Any] = {"model": engine.card.name, "thresholds": cuts, "decisions": decisions,
                           "ranking": ranking}
    wild = Path(wild) if wild else faces.parent / "raw" / "wild-portraits"
    if wild.is_dir():
        out["wild"] = wild_false_alarms(engine, wild, cuts)
    out["backdrop"] = backdrop_shift(engine, backdrop_faces(faces), cuts["default"]["p_fake"])
    return out


def cross_source_metrics(held_out_ckpt: str | Path, full_ckpt: str | Path, faces: str | Path,
                         source: str, other: str = "tpdne-stylegan2") -> dict[str, Any]:
    """ROC-AUC and AP of a model trained without fake folder ``source`` against the FFHQ test reals,
    on ``source`` and on ``other`` (the same generator from the source it did see), beside the
    model trained with it."""
    faces = Path(faces)
    out = {}
    for label, ckpt in (("without", held_out_ckpt), ("with", full_ckpt)):
        engine = Engine.load(ckpt, "bestval")
        out[label] = {"checkpoint": Path(ckpt).name}
        for fake in (other, source):
            preds = engine.predict(collect_samples([faces / "ffhq"], [faces / fake], split="test"), progress=False)
            m = binary_metrics(preds.scores["after_softmax"], preds.labels)
            out[label][fake] = {"roc_auc": m["roc_auc"], "ap": m["ap"], "n": m["n"]}
    return out


# ------------------------------------------------------------------ markdown
def _pct(r: dict[str, Any]) -> str:
    if not r["n"]:
        return "– (0/0)"
    return f"{r['rate']:.1%} [{r['ci'][0]:.1%}, {r['ci'][1]:.1%}] ({r['k']}/{r['n']})"


def markdown(metrics: dict[str, Any]) -> str:
    """The card's tables, each between the markers that :func:`parse` reads back."""
    cuts = metrics["thresholds"]
    head = (f"| test folder | class | flagged at `{cuts['default']['name']}` (default, p(fake) ≥ "
            f"{cuts['default']['p_fake']:.4f}) | flagged at `{cuts['strict']['name']}` (strict, p(fake) ≥ "
            f"{cuts['strict']['p_fake']:.4f}) |")
    lines = ["<!-- card-decisions -->", head, "|---|---|---|---|"]
    for folder, d in metrics["decisions"].items():
        what = "false alarms" if d["kind"] == "real" else "caught"
        lines.append(f"| {folder} | {d['kind']}: {what} | {_pct(d['default'])} | {_pct(d['strict'])} |")
    lines += ["<!-- /card-decisions -->", "", "<!-- card-ranking -->",
              "| test set (reals vs fakes) | n | AP | seed AP | ROC-AUC |", "|---|---|---|---|---|"]
    for name, r in metrics["ranking"].items():
        label = name if name.startswith("celebahq") else f"ffhq vs {name}"
        lines.append(f"| {label} | {r['n']} | {r['ap']:.4f} | {r['ap_real_positive']:.4f} | {r['roc_auc']:.4f} |")
    lines.append("<!-- /card-ranking -->")
    if "wild" in metrics:
        w = metrics["wild"]
        lines += ["", "<!-- card-wild -->", "| wild portraits (real) | faces scored | false alarms at default | "
                  "false alarms at strict |", "|---|---|---|---|",
                  f"| all | {w['default']['n']} | {_pct(w['default'])} | {_pct(w['strict'])} |"]
        for band, r in w["by_age"].items():
            lines.append(f"| age {band} | {r['default']['n']} | {_pct(r['default'])} | {_pct(r['strict'])} |")
        lines.append("<!-- /card-wild -->")
    b = metrics["backdrop"]
    lines += ["", "<!-- card-backdrop -->", "| FFHQ test reals | flagged at default | mean p(fake) |", "|---|---|---|"]
    lines += [f"| {kind} | {r['flagged']:.1%} | {r['mean_p_fake']:.4f} |" for kind, r in b.items()]
    lines.append("<!-- /card-backdrop -->")
    return "\n".join(lines)


def parse(card_text: str) -> dict[str, dict[str, Any]]:
    """The tables :func:`markdown` wrote, read back: ``{table: {row: [cells]}}`` with the
    cells as written (counts ``k/n`` and numbers for the test to compare)."""
    out = {}
    for table in ("decisions", "ranking", "wild", "backdrop", "evasion"):
        block = re.search(rf"<!-- card-{table} -->(.*?)<!-- /card-{table} -->", card_text, re.S)
        if not block:
            continue
        rows = {}
        for line in block.group(1).strip().splitlines()[2:]:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
        out[table] = rows
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description="print a detector's model-card tables")
    ap.add_argument("--model", default=None, help="checkpoint folder (default: the bundled detector)")
    ap.add_argument("--data", default=None, help="faces folder (default ../shared/data/faces128)")
    args = ap.parse_args()
    print(markdown(card_metrics(default_data_root(args.data), args.model)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
