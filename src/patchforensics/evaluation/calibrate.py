"""Calibrated decision thresholds, chosen on the validation split.

A detector can rank images well (high AP) and still be right only half the
time at P = 0.5, because nothing in training pins *where* between the classes
its scores fall. So after training we pick thresholds on held-out images:

- ``eer`` (equal error rate): the threshold at which the fraction of real
  images called fake equals the fraction of fake images called real;
- ``fpr<T>pct`` (e.g. ``fpr1pct`` for a 1% target): the threshold that flags
  as many fakes as possible while calling **at most T% of the validation real
  images fake** — the false-positive rate of a screening tool whose "positive"
  is *fake*. It bounds that error on the validation set only; with ``n``
  validation reals the bound moves in steps of ``1/n`` (50 reals -> 2%, so a
  1% target allows no real to be flagged).

Thresholds are on the ``after_softmax`` score ``P(real)`` (the mean of the
per-patch softmax), like every score in the package: an image is called real
when ``P(real) > t`` and fake otherwise, i.e. fake when ``p(fake) = 1 - P(real)
>= 1 - t``. They are stored in the checkpoint's card (``config.yaml``, under
``thresholds:``, through :class:`~patchforensics.models.card.ModelCard`; ``test``
then reports ``acc@<name>``, ``detect`` and ``visualize`` decide with them), with
the details in ``calibration.json`` beside it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core import fileio
from ..core.config import require
from ..data.dataset import FAKE, REAL, Sample, collect_samples, split_samples
from ..models.card import ModelCard
from ..scoring.engine import Engine
from ..scoring.fastpath import FastPath
from ..scoring.metrics import Predictions

CALIBRATION_FILE = "calibration.json"
AGGREGATION = "after_softmax"
EER = "eer"


def fpr_name(target_fpr: float) -> str:
    """Threshold name for a false-positive-rate target, e.g. ``0.01 -> 'fpr1pct'``."""
    return f"fpr{target_fpr * 100:g}pct"


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


def _check(p_real, labels) -> tuple[np.ndarray, np.ndarray]:
    p_real, labels = np.asarray(p_real, dtype=np.float64), np.asarray(labels).astype(int)
    if p_real.shape != labels.shape or p_real.ndim != 1:
        raise ValueError(f"scores {p_real.shape} and labels {labels.shape} must be equal-length vectors")
    if not (np.any(labels == REAL) and np.any(labels == FAKE)):
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

    The largest such threshold calls the most fakes fake. Raises ``ValueError``
    for a target outside ``[0, 1)``.
    """
    if not 0 <= target_fpr < 1:
        raise ValueError(f"target false-positive rate must be in [0, 1), got {target_fpr}")
    p_real, labels = _check(p_real, labels)
    cands = _candidates(p_real)
    real_err, _ = _error_rates(p_real, labels, cands)
    ok = real_err <= target_fpr + 1e-12   # the lowest candidate calls no image fake, so ok.any()
    return float(cands[ok].max())


@dataclass
class Calibration:
    """Chosen thresholds (``P(real)``) and their errors on the calibration images."""

    thresholds: dict[str, float]
    report: dict

    def describe(self) -> str:
        lines = [f"calibrated on {self.report['n_real']} real + {self.report['n_fake']} fake "
                 f"{self.report['partition']} images ({AGGREGATION} score)"]
        for name, r in self.report["thresholds"].items():
            lines.append(f"  {name:<10} P(real) <= {r['p_real']:.4f}  (p(fake) >= {r['p_fake']:.4f}) -> fake;  "
                         f"reals called fake {r['real_error']:.1%}, fakes called real {r['fake_error']:.1%}")
        return "\n".join(lines)


def choose_thresholds(p_real, labels, target_fpr: float = 0.01, partition: str = "val") -> Calibration:
    """The equal-error and target-FPR thresholds for ``(N,)`` scores and labels."""
    p_real, labels = _check(p_real, labels)
    thresholds = {EER: equal_error_threshold(p_real, labels),
                  fpr_name(target_fpr): fpr_threshold(p_real, labels, target_fpr)}
    names = list(thresholds)
    real_err, fake_err = _error_rates(p_real, labels, np.array([thresholds[n] for n in names]))
    report = {
        "aggregation": AGGREGATION, "partition": partition, "target_fpr": target_fpr,
        "n_real": int(np.sum(labels == REAL)), "n_fake": int(np.sum(labels == FAKE)),
        "rule": "fake when P(real) <= p_real, i.e. when p(fake) >= p_fake",
        "thresholds": {n: {"p_real": thresholds[n], "p_fake": 1.0 - thresholds[n],
                           "real_error": float(real_err[i]), "fake_error": float(fake_err[i])}
                       for i, n in enumerate(names)},
    }
    return Calibration(thresholds, report)


def store_calibration(ckpt_dir: str | os.PathLike, calibration: Calibration) -> None:
    """Write the thresholds into the checkpoint's card (``config.yaml``) and the report
    to ``calibration.json`` (both atomically; the card's other keys are kept)."""
    ckpt_dir = Path(ckpt_dir)
    card = ModelCard.read(ckpt_dir)
    fileio.write_json(ckpt_dir / CALIBRATION_FILE, calibration.report)
    card.with_thresholds(calibration.thresholds).write(ckpt_dir)


def calibrate_predictions(preds: Predictions, target_fpr: float = 0.01, partition: str = "val") -> Calibration:
    return choose_thresholds(preds.scores[AGGREGATION], preds.labels, target_fpr, partition)


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
    target_fpr: float = 0.01
    batch_size: int = 64
    num_workers: int = 0
    device: str = "auto"
    backend: str = "auto"               # auto | torch | onnx, as everywhere

    def validate(self) -> None:
        require(0 <= self.target_fpr < 1, "target_fpr", "is a fraction in [0, 1), e.g. 0.01 for 1%")
        require(bool(self.real) == bool(self.fake), "real",
                "give both --real and --fake, or neither to use the checkpoint's validation split")
        require(self.batch_size > 0, "batch_size", "must be > 0")
        FastPath(backend=self.backend).validate()


def run_calibration(cfg: CalibrateConfig, progress: bool = True) -> Calibration:
    """Score the calibration images with the checkpoint, choose and store thresholds."""
    cfg.validate()
    card = ModelCard.read(cfg.checkpoint)
    if cfg.real:
        samples, partition = collect_samples(cfg.real, cfg.fake, split=cfg.partition), cfg.partition
    else:
        samples = split_samples(*card.training_folders)[1]
        partition = "val"
    engine = Engine.load(cfg.checkpoint, cfg.which_epoch, FastPath(backend=cfg.backend, cache_mb=0), cfg.device)
    return calibrate(cfg.checkpoint, engine, samples, cfg.target_fpr, partition, cfg.batch_size,
                     cfg.num_workers, progress)


def calibrate(ckpt_dir: str | os.PathLike, engine: Engine, samples: Sequence[Sample], target_fpr: float = 0.01,
              partition: str = "val", batch_size: int = 64, num_workers: int = 0,
              progress: bool = True) -> Calibration:
    """Score ``samples`` with ``engine`` (the checkpoint's weights to calibrate), choose
    the thresholds and store them in ``ckpt_dir``."""
    preds = engine.predict(samples, batch_size=batch_size, num_workers=num_workers, progress=progress,
                           desc="calibrate")
    calibration = calibrate_predictions(preds, target_fpr, partition)
    calibration.report["skipped"] = preds.skipped.as_list()
    store_calibration(ckpt_dir, calibration)
    return calibration
