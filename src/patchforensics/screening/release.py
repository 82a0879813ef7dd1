"""``release``: make the bundled detector, from training to model card, in one resumable command.

    patchforensics release [--out release] [--device cpu|cuda] [--install src/patchforensics/bundled]

Steps, each skipped when its output is already there (a killed run is resumed by
running the same command again):

1. **train** every candidate recipe (:data:`CANDIDATES`) to the end of its cosine
   schedule on the full training split: reals ``ffhq`` + ``celebahq``, fakes
   ``tpdne-stylegan2``, ``stylegan2-nvidia``, ``stylegan1``, ``generated-photos``.
   The precision is pinned (``bf16``, default ``on``) so that a run resumes with the
   same numerics on either CPU kind or a GPU.
2. **choose** on the validation split only: for each candidate, the threshold that
   flags at most 3% of the validation reals, and the fraction of each generator's
   validation fakes it catches; the best mean over the generators wins.
3. **calibrate** the winner (``eer``, ``fpr3pct`` = the default, ``fpr1pct`` = strict)
   and **export** it to ONNX.
4. **cross-source** (once): the winner's recipe trained without ``stylegan2-nvidia``,
   tested on it: does the detector know StyleGAN2, or one website's files?
5. **card**: the test-split metrics with 95% intervals
   (:mod:`~patchforensics.screening.card_metrics`), the validation curve, the
   provenance (data version, git commit, CPU/GPU, precision, wall time) into
   ``MODEL_CARD.md``; ``--install DIR`` copies the detector there.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core import fileio
from ..core.config import ConfigError, require
from ..core.provenance import code_commit
from ..data.dataset import FAKE, REAL, data_release, default_data_root, split_samples
from ..evaluation.calibrate import DEFAULT_TARGET_FPRS, calibrate, choose_thresholds, fpr_name
from ..models.checkpoint import RESUME_FILE
from ..scoring.engine import Engine
from ..scoring.fastpath import FastPath, cpu_kind
from ..training.train import TrainConfig, train

REAL_SETS = ("ffhq", "celebahq")
FAKE_SETS = ("tpdne-stylegan2", "stylegan2-nvidia", "stylegan1", "generated-photos")
#: the second source of a generator the others also cover: left out once to measure transfer
HELD_OUT_SOURCE = "stylegan2-nvidia"
SELECTION_FPR = DEFAULT_TARGET_FPRS[0]


@dataclass(frozen=True)
class Candidate:
    """One recipe: a registered model, the random-crop side it trains on (px) and its length."""

    name: str
    model: str
    fine_size: int
    max_epochs: int


#: the recipes compared (docs/recipe.md): a 91-px field on 96-px crops, which keeps some face in
#: every crop, and the earlier 43-px field on 64-px crops, each long enough to converge
CANDIDATES = (Candidate("xb3_crop96", "xception_block3", 96, 50),
              Candidate("xb2_crop64", "xception_block2", 64, 60))


@dataclass
class ReleaseConfig:
    """Options of ``patchforensics release``.

    ``epochs`` / ``max_per_class`` shorten every run (smoke tests, a GPU trial);
    ``cross_source`` trains the winner's recipe once more without :data:`HELD_OUT_SOURCE`;
    ``wild``: a folder of unaligned portraits for the false-alarm rows (default
    ``<data root>/../raw/wild-portraits`` when it exists); ``install``: copy the winner
    and its card there (e.g. ``src/patchforensics/bundled``).
    """

    data_root: str | None = None
    out: str = "release"
    candidates: list[str] = field(default_factory=lambda: [c.name for c in CANDIDATES])
    epochs: int | None = None
    max_per_class: int | None = None
    device: str = "auto"
    bf16: str = "on"
    seed: int = 0
    cross_source: bool = True
    wild: str | None = None
    install: str | None = None

    def validate(self) -> None:
        known = [c.name for c in CANDIDATES]
        require(bool(self.candidates) and all(c in known for c in self.candidates), "candidates",
                f"choose among {', '.join(known)}")
        require(self.epochs is None or self.epochs > 0, "epochs", "must be > 0")
        require(self.bf16 in ("on", "off"), "bf16",
                "pin the precision (on or off) so that the run resumes with the same numerics anywhere")
        root = default_data_root(self.data_root)
        missing = [d for d in REAL_SETS + FAKE_SETS if not (root / d).is_dir()]
        require(not missing, "data_root", f"{root} lacks {', '.join(missing)} (the shared faces v2.1)")

    @property
    def root(self) -> Path:
        return default_data_root(self.data_root)

    def train_config(self, cand: Candidate, fakes: Sequence[str] = FAKE_SETS, tag: str = "") -> TrainConfig:
        return TrainConfig(real=[str(self.root / d) for d in REAL_SETS], fake=[str(self.root / d) for d in fakes],
                           model=cand.model, fine_size=cand.fine_size, max_epochs=self.epochs or cand.max_epochs,
                           name=f"release_{cand.name}{tag}", seed=self.seed, bf16=self.bf16, device=self.device,
                           max_per_class=self.max_per_class, checkpoints_dir=str(Path(self.out) / "checkpoints"),
                           runs_dir=str(Path(self.out) / "runs"))


def _log(line: str) -> None:
    print(f"[release] {line}", flush=True)


def train_to_end(cfg: TrainConfig, progress: bool) -> Path:
    """Train ``cfg``; a finished run is kept, a killed one resumed."""
    ckpt = Path(cfg.checkpoints_dir) / cfg.experiment_name()
    status = _summary(ckpt).get("status")
    if status == "finished":
        _log(f"{ckpt.name}: finished earlier, kept")
        return ckpt
    resume = (ckpt / RESUME_FILE).is_file()
    _log(f"{ckpt.name}: {'resuming' if resume else 'training'} ({cfg.model}, {cfg.fine_size}-px crops, "
         f"{cfg.max_epochs} epochs, bf16 {cfg.bf16})")
    train(cfg, resume=resume, progress=progress)
    return ckpt


def _summary(ckpt: Path) -> dict[str, Any]:
    try:
        return json.loads((ckpt / "train_summary.json").read_text())
    except (OSError, ValueError):
        return {}


def validation_choice(ckpt: Path, root: Path, device: str, progress: bool) -> dict[str, Any]:
    """The selection metric of one candidate on the validation split: at the threshold that
    flags at most :data:`SELECTION_FPR` of the validation reals, the fraction of each
    generator's validation fakes caught, and their mean (``mean_recall``)."""
    _, val = split_samples([str(root / d) for d in REAL_SETS], [str(root / d) for d in FAKE_SETS])
    engine = Engine.load(ckpt, "bestval", FastPath(cache_mb=0), device)
    preds = engine.predict(val, progress=progress, desc=f"val {ckpt.name}")
    p_real = preds.scores["after_softmax"]
    cut = choose_thresholds(p_real, preds.labels, (SELECTION_FPR,)).thresholds[fpr_name(SELECTION_FPR)]
    source = np.array([Path(p).parent.parent.name for p in preds.paths])
    recall = {g: float(np.mean(p_real[(source == g) & (preds.labels == FAKE)] <= cut)) for g in FAKE_SETS}
    reals = preds.labels == REAL
    return {"checkpoint": ckpt.name, "epoch": _summary(ckpt).get("best_epoch"),
            "threshold_p_fake": 1.0 - cut, "false_alarms": float(np.mean(p_real[reals] <= cut)),
            "recall": recall, "mean_recall": float(np.mean(list(recall.values()))),
            "val_ap": float(preds.metrics()["after_softmax"]["ap"])}


def provenance(root: Path, ckpts: Sequence[Path], device: str) -> dict[str, Any]:
    """Data version, git commit, where and in which precision the runs trained, their wall time."""
    runs = {}
    for ckpt in ckpts:
        summary = _summary(ckpt)
        config = fileio.read_yaml(ckpt / "config.yaml")
        runs[ckpt.name] = {"epochs": len(summary.get("history", [])), "best_epoch": summary.get("best_epoch"),
                           "train_minutes": round(sum(h["seconds"] for h in summary.get("history", [])) / 60, 1),
                           "runtime": config.get("runtime", {})}
    return {"data_version": data_release(root), "data_root": str(root), "commit": code_commit(),
            "cpu": cpu_kind(), "device": device, "runs": runs}


def run_release(cfg: ReleaseConfig, progress: bool = True) -> dict[str, Any]:
    """Every step of the module docstring; returns the summary written to ``<out>/release.json``."""
    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    chosen = [c for c in CANDIDATES if c.name in cfg.candidates]
    ckpts = {c.name: train_to_end(cfg.train_config(c), progress) for c in chosen}

    choice_file = out / "selection.json"
    selection = json.loads(choice_file.read_text()) if choice_file.is_file() else {}
    for name, ckpt in ckpts.items():
        if name not in selection:
            selection[name] = validation_choice(ckpt, cfg.root, cfg.device, progress)
            fileio.write_json(choice_file, selection)
        s = selection[name]
        _log(f"{name}: validation recall at {SELECTION_FPR:.0%} false alarms "
             + ", ".join(f"{g} {r:.3f}" for g, r in s["recall"].items()) + f"; mean {s['mean_recall']:.3f}")
    winner_name = max(ckpts, key=lambda n: (selection[n]["mean_recall"], selection[n]["val_ap"]))
    winner = ckpts[winner_name]
    _log(f"chosen on validation: {winner_name}")

    from .card_metrics import card_metrics, cross_source_metrics, write_card   # after the long part

    card = fileio.read_yaml(winner / "config.yaml")
    if not {fpr_name(t) for t in DEFAULT_TARGET_FPRS} <= set(card.get("thresholds") or {}):
        _, val = split_samples([str(cfg.root / d) for d in REAL_SETS], [str(cfg.root / d) for d in FAKE_SETS])
        calibrate(winner, Engine.load(winner, "bestval", FastPath(cache_mb=0), cfg.device), val,
                  progress=progress, force=True)
    onnx_path = out / "detector.onnx"
    if not onnx_path.is_file():
        from ..scoring.onnx_backend import export_onnx
        export_onnx(winner, onnx_path, which="bestval")

    cross = None
    if cfg.cross_source:
        spec = next(c for c in CANDIDATES if c.name == winner_name)
        held = train_to_end(cfg.train_config(spec, [f for f in FAKE_SETS if f != HELD_OUT_SOURCE],
                                             tag=f"_without_{HELD_OUT_SOURCE}"), progress)
        cross_file = out / "cross_source.json"
        if not cross_file.is_file():
            fileio.write_json(cross_file, cross_source_metrics(held, winner, cfg.root, HELD_OUT_SOURCE))
        cross = json.loads(cross_file.read_text())

    metrics_file = out / "card_metrics.json"
    if not metrics_file.is_file():
        fileio.write_json(metrics_file, card_metrics(cfg.root, str(winner), wild=cfg.wild,
                                                     which="bestval"))
    summary = {"winner": winner_name, "selection": selection, "cross_source": cross,
               "provenance": provenance(cfg.root, list(ckpts.values()), cfg.device),
               "release_minutes_this_call": round((time.perf_counter() - start) / 60, 1)}
    fileio.write_json(out / "release.json", summary)
    write_card(out / "MODEL_CARD.md", winner, json.loads(metrics_file.read_text()), summary)
    if cfg.install:
        install(winner, out, Path(cfg.install))
        _log(f"installed into {cfg.install}")
    return summary


#: what ``--install`` copies: the winner's bestval weights, its card and calibration, the metrics
INSTALLED = {"bestval.safetensors": "weights.safetensors", "config.yaml": "config.yaml",
             "calibration.json": "calibration.json"}


def install(winner: Path, out: Path, dest: Path) -> None:
    if not dest.is_dir():
        raise ConfigError(f"install: {dest} is not a folder")
    for src, name in INSTALLED.items():
        shutil.copyfile(winner / src, dest / f".{name}.tmp")
        (dest / f".{name}.tmp").replace(dest / name)
    for name in ("MODEL_CARD.md", "card_metrics.json", "release.json", "selection.json"):
        if (out / name).is_file():
            shutil.copyfile(out / name, dest / f".{name}.tmp")
            (dest / f".{name}.tmp").replace(dest / name)
