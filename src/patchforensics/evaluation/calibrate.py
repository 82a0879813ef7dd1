"""Calibrated decision thresholds, chosen on the validation split.

A detector can rank images well (high AP) and still be right only half the
time at P = 0.5, because nothing in training pins *where* between the classes
its scores fall. So after training we pick thresholds on held-out images:

- ``eer`` (equal error rate): the threshold at which the fraction of real
  images called fake equals the fraction of fake images called real;
- ``fpr<T>pct`` (``fpr3pct``, ``fpr1pct`` by default): the threshold that flags
  as many fakes as possible while calling **at most T% of the validation real
  images fake** — the false-positive rate of a screening tool whose "positive"
  is *fake*. It bounds that error on the validation set only; with ``n``
  validation reals the bound moves in steps of ``1/n`` (50 reals -> 2%, so a
  1% target allows no real to be flagged).

By default both ``fpr3pct`` and ``fpr1pct`` are chosen. ``fpr3pct`` is the screener's
default decision (:meth:`~patchforensics.models.card.ModelCard.default_threshold`):
with the 138 validation reals of the shared faces, a 3% bound on validation leaves
room for the test rate to stay under 5% (the validation estimate itself is uncertain by
about ±3 points at 95%); ``fpr1pct`` is the strict one. ``eer`` is kept for comparisons
with the paper (it flags about a fifth of real photos: no screening threshold).

Thresholds are on the ``after_softmax`` score ``P(real)`` (the mean of the
per-patch softmax), like every score in the package: an image is called real
when ``P(real) > t`` and fake otherwise, i.e. fake when ``p(fake) = 1 - P(real)
>= 1 - t``. They are stored in the checkpoint's card (``config.yaml``, under
``thresholds:``, through :class:`~patchforensics.models.card.ModelCard`; ``test``
then reports ``acc@<name>``, ``detect`` and ``visualize`` decide with them), with
the details in ``calibration.json`` beside it.

Stored thresholds are replaced only with ``force``; the replaced ones (and their
report) are kept in ``calibration.json`` under ``previous``, and thresholds this
run does not choose (``fpr1pct`` when calibrating ``--target-fpr 0.1``) stay. A
threshold that flags no image or every image, or scores whose AP is near chance,
get a warning, printed and recorded under ``warnings``. The test split is refused
unless asked for explicitly: thresholds chosen on the test images make the test
numbers measured on them optimistic.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core import fileio
from ..core.config import require
from ..data.dataset import FAKE, REAL, Sample, collect_samples, split_samples
from ..models.card import EER, SCREENING_FPR, STRICT_FPR, ModelCard, fpr_name
from ..scoring.engine import Engine
from ..scoring.runtime import FastPath
from ..scoring.metrics import Predictions, binary_metrics

CALIBRATION_FILE = "calibration.json"
AGGREGATION = "after_softmax"
#: the false-alarm targets calibrated by default: the screening default and a strict one
DEFAULT_TARGET_FPRS = (SCREENING_FPR, STRICT_FPR)
#: warn when the AP (fakes positive) is less than this above chance (the fraction of fakes)
AP_MARGIN = 0.05


def _error_rates(p_real: np.ndarray, labels: np.ndarray, thresholds: np.ndarray):
    """Per threshold: (fraction of reals called fake, fraction of fakes called real)."""
    real, fake = np.sort(p_real[labels == REAL]), np.sort(p_real[labels == FAKE])
    # a score equal to the threshold is called fake (as metrics.binary_metrics)
    real_err = np.searchsorted(real, thresholds, side="right") / len(real)
    fake_err = 1.0 - np.searchsorted(fake, thresholds, side="right") / len(fake)
    return real_err, fake_err


def _candidates(p_real: np.ndarray) -> np.ndarray:
    """One threshold per distinct split of the scores, each as far as possible from
    the data: the midpoints between neighbouring distinct scores, plus one below
    every score (nothing called fake: 0, or just under 0 if a score is exactly 0)
    and 1 (everything called fake)."""
    u = np.unique(p_real)
    lowest = min(0.0, float(np.nextafter(u[0], -np.inf)))
    return np.unique(np.concatenate([[lowest], (u[:-1] + u[1:]) / 2.0, [1.0]]))


def _check(p_real, labels, need_fakes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    p_real, labels = np.asarray(p_real, dtype=np.float64), np.asarray(labels).astype(int)
    if p_real.shape != labels.shape or p_real.ndim != 1:
        raise ValueError(f"scores {p_real.shape} and labels {labels.shape} must be equal-length vectors")
    if not (np.any(labels == REAL) and (np.any(labels == FAKE) or not need_fakes)):
        raise ValueError("calibration needs both real and fake images "
                         f"(got {np.sum(labels == REAL)} real, {np.sum(labels == FAKE)} fake)")
    return p_real, labels


def equal_error_threshold(p_real, labels) -> float:
    """P(real) threshold where real and fake error rates are closest (then lowest in sum).

    ``p_real``: ``(N,)`` scores in [0, 1]; ``labels``: ``(N,)``, 1 = real, 0 = fake.
    """
    p_real, labels = _check(p_real, labels)
    cands = _candidates(p_real)
    real_err, fake_err = _error_rates(p_real, labels, cands)
    best = np.lexsort((real_err + fake_err, np.abs(real_err - fake_err)))[0]
    return float(cands[best])


def fpr_threshold(p_real, labels, target_fpr: float = 0.01) -> float:
    """Largest P(real) threshold calling at most ``target_fpr`` of the reals fake.

    The largest such threshold calls the most fakes fake. Only the reals decide it, so
    ``labels`` may hold no fake. Raises ``ValueError`` for a target outside ``[0, 1)``.
    """
    if not 0 <= target_fpr < 1:
        raise ValueError(f"target false-positive rate must be in [0, 1), got {target_fpr}")
    p_real, labels = _check(p_real, labels, need_fakes=False)
    cands = _candidates(p_real)
    real_err = np.searchsorted(np.sort(p_real[labels == REAL]), cands, side="right") / np.sum(labels == REAL)
    ok = real_err <= target_fpr + 1e-12   # the lowest candidate calls no image fake, so ok.any()
    return float(cands[ok].max())


@dataclass
class Calibration:
    """Chosen thresholds (``P(real)``) and their errors on the calibration images."""

    thresholds: dict[str, float]
    report: dict

    def describe(self) -> str:
        lines = [f"calibrated on {self.report['n_real']} real + {self.report['n_fake']} fake "
                 f"{self.report['partition']} images ({AGGREGATION} score, AP {self.report['ap']:.6f})"]
        for name, r in self.report["thresholds"].items():
            lines.append(f"  {name:<10} P(real) <= {r['p_real']:.6f}  (p(fake) >= {r['p_fake']:.6f}) -> fake;  "
                         f"reals called fake {r['real_error']:.2%}, fakes called real {r['fake_error']:.2%}")
        for name, t in self.report.get("kept", {}).items():
            lines.append(f"  {name:<10} P(real) <= {t:.6f}  kept from an earlier calibration")
        return "\n".join(lines)


def choose_thresholds(p_real, labels, target_fprs: Sequence[float] = DEFAULT_TARGET_FPRS,
                      partition: str = "val") -> Calibration:
    """The equal-error threshold and one per false-positive-rate target for ``(N,)`` scores and labels."""
    p_real, labels = _check(p_real, labels)
    thresholds = {EER: equal_error_threshold(p_real, labels)}
    thresholds.update({fpr_name(t): fpr_threshold(p_real, labels, t) for t in target_fprs})
    names = list(thresholds)
    real_err, fake_err = _error_rates(p_real, labels, np.array([thresholds[n] for n in names]))
    n_real, n_fake = int(np.sum(labels == REAL)), int(np.sum(labels == FAKE))
    ap, chance = binary_metrics(p_real, labels)["ap"], n_fake / len(labels)
    report = {
        "aggregation": AGGREGATION, "partition": partition, "target_fprs": [float(t) for t in target_fprs],
        "n_real": n_real, "n_fake": n_fake, "ap": ap, "ap_chance": chance,
        "rule": "fake when P(real) <= p_real, i.e. when p(fake) >= p_fake",
        "thresholds": {n: {"p_real": thresholds[n], "p_fake": 1.0 - thresholds[n],
                           "real_error": float(real_err[i]), "fake_error": float(fake_err[i])}
                       for i, n in enumerate(names)},
    }
    report["warnings"] = degeneracy_warnings(p_real, report)
    return Calibration(thresholds, report)


def degeneracy_warnings(p_real: np.ndarray, report: dict) -> list[str]:
    """What makes these thresholds useless: one that flags no image or every image,
    and scores that rank fakes hardly better than chance (AP within :data:`AP_MARGIN`)."""
    out = []
    for name, r in report["thresholds"].items():
        flagged = int(np.sum(p_real <= r["p_real"]))
        if flagged in (0, len(p_real)):
            what = "no image" if flagged == 0 else "every image"
            out.append(f"threshold {name} flags {what} as fake on the {len(p_real)} calibration images "
                       "(the scores do not separate the classes there); do not screen with it")
    if report["ap"] < report["ap_chance"] + AP_MARGIN:
        out.append(f"AP {report['ap']:.6f} is near chance ({report['ap_chance']:.6f}, the fraction of fakes): "
                   "the model hardly ranks these fakes above these reals, so no threshold will be useful")
    return out


def refuse_replacing(card: ModelCard, ckpt_dir: str | os.PathLike, names, force: bool) -> None:
    """Raise :class:`~patchforensics.core.fileio.OutputExistsError` when the card already
    holds a threshold of one of ``names`` and ``force`` is off."""
    clash = sorted(set(names) & set(card.thresholds))
    if clash and not force:
        raise fileio.OutputExistsError(
            f"{Path(ckpt_dir) / 'config.yaml'} already holds thresholds {', '.join(clash)}; pass --force to "
            f"replace them (the old ones are kept in {CALIBRATION_FILE} under 'previous')")


def store_calibration(ckpt_dir: str | os.PathLike, calibration: Calibration, force: bool = False) -> None:
    """Write the thresholds into the checkpoint's card (``config.yaml``) and the report
    to ``calibration.json`` (both atomically; the card's other keys are kept).

    Replacing stored thresholds needs ``force``; the card's thresholds and the report
    they came from are then appended to the new report's ``previous`` list (oldest
    first), and stored thresholds of other names are kept (listed under ``kept``).
    """
    ckpt_dir = Path(ckpt_dir)
    card = ModelCard.read(ckpt_dir)
    refuse_replacing(card, ckpt_dir, calibration.thresholds, force)
    report = dict(calibration.report)
    if card.thresholds:
        path = ckpt_dir / CALIBRATION_FILE
        old = json.loads(path.read_text()) if path.is_file() else {}
        previous = old.pop("previous", [])
        previous.append({"replaced": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "thresholds": dict(card.thresholds), "report": old or None})
        report["kept"] = {k: v for k, v in card.thresholds.items() if k not in calibration.thresholds}
        report["previous"] = previous
    calibration.report = report
    fileio.write_json(ckpt_dir / CALIBRATION_FILE, report)
    card.with_thresholds({**card.thresholds, **calibration.thresholds}).write(ckpt_dir)


def validation_false_alarm_rate(ckpt_dir: str | os.PathLike, card: ModelCard, name: str) -> float | None:
    """The share of validation reals the stored threshold ``name`` calls fake (its
    ``real_error`` in ``ckpt_dir``'s ``calibration.json``); ``None`` when that file,
    that threshold or a report of the card's current value of it is not there."""
    path = Path(ckpt_dir) / CALIBRATION_FILE
    if name not in card.thresholds or not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text())["thresholds"][name]
        if abs(float(entry["p_real"]) - card.thresholds[name]) > 1e-9:   # a report of another threshold
            return None
        return float(entry["real_error"])
    except (ValueError, KeyError, TypeError):
        return None


def calibrate_predictions(preds: Predictions, target_fprs: Sequence[float] = DEFAULT_TARGET_FPRS,
                          partition: str = "val") -> Calibration:
    return choose_thresholds(preds.scores[AGGREGATION], preds.labels, target_fprs, partition)


# ------------------------------------------------------------------ API
@dataclass
class CalibrateConfig:
    """Options of ``patchforensics calibrate``.

    Without ``real``/``fake`` the checkpoint's own training folders are used,
    with the validation split that ``train`` held out.
    """

    checkpoint: str
    which_epoch: str = "bestval"
    real: list[str] = field(default_factory=list)
    fake: list[str] = field(default_factory=list)
    partition: str = "val"
    target_fprs: tuple[float, ...] = DEFAULT_TARGET_FPRS
    batch_size: int = 64
    num_workers: int = 0
    device: str = "auto"
    backend: str = "auto"               # auto | torch | onnx, as everywhere
    force: bool = False                 # replace stored thresholds (the old ones go to 'previous')
    allow_test_split: bool = False      # calibrate on a 'test' partition all the same

    def validate(self) -> None:
        require(bool(self.target_fprs) and all(0 <= t < 1 for t in self.target_fprs), "target_fpr",
                "is a fraction in [0, 1), e.g. 0.01 for 1%")
        require(self.partition != "test" or self.allow_test_split, "partition",
                "refusing to calibrate on the test split: thresholds chosen on the test images make every "
                "number later measured on them optimistic; use val (or other held-out images), or pass "
                "--allow-test-split if that is really what you want")
        require(bool(self.real) == bool(self.fake), "real",
                "give both --real and --fake, or neither to use the checkpoint's validation split")
        require(self.batch_size > 0, "batch_size", "must be > 0")
        FastPath(backend=self.backend).validate()


def run_calibration(cfg: CalibrateConfig, progress: bool = True) -> Calibration:
    """Score the calibration images with the checkpoint, choose and store thresholds."""
    cfg.validate()
    card = ModelCard.read(cfg.checkpoint)
    refuse_replacing(card, cfg.checkpoint, (EER, *map(fpr_name, cfg.target_fprs)), cfg.force)   # before any scoring
    if cfg.real:
        samples, partition = collect_samples(cfg.real, cfg.fake, split=cfg.partition), cfg.partition
    else:
        samples = split_samples(*card.training_folders)[1]
        partition = "val"
    engine = Engine.load(cfg.checkpoint, cfg.which_epoch, FastPath(backend=cfg.backend, cache_mb=0), cfg.device)
    return calibrate(cfg.checkpoint, engine, samples, cfg.target_fprs, partition, cfg.batch_size,
                     cfg.num_workers, progress, cfg.force)


def calibrate(ckpt_dir: str | os.PathLike, engine: Engine, samples: Sequence[Sample],
              target_fprs: Sequence[float] = DEFAULT_TARGET_FPRS,
              partition: str = "val", batch_size: int = 64, num_workers: int = 0,
              progress: bool = True, force: bool = False) -> Calibration:
    """Score ``samples`` with ``engine`` (the checkpoint's weights to calibrate), choose
    the thresholds and store them in ``ckpt_dir`` (see :func:`store_calibration` for ``force``)."""
    preds = engine.predict(samples, batch_size=batch_size, num_workers=num_workers, progress=progress,
                           desc="calibrate")
    calibration = calibrate_predictions(preds, target_fprs, partition)
    calibration.report["skipped"] = preds.skipped.as_list()
    store_calibration(ckpt_dir, calibration, force)
    return calibration
