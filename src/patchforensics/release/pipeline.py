"""``release``: make the bundled detector, from training to model card, in one resumable command.

    patchforensics release [--out release] [--device cpu|cuda] [--install src/patchforensics/bundled]

Steps, each skipped when its output is already there (a killed run is resumed by
running the same command again):

1. **train** every candidate recipe (:data:`~patchforensics.release.recipe.CANDIDATES`) to the
   end of its cosine schedule on the full training split: reals ``ffhq`` + ``celebahq``, fakes
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
   (:mod:`~patchforensics.release.card_metrics`), the validation curve, the
   provenance (:mod:`~patchforensics.release.provenance`) into ``MODEL_CARD.md``
   (:mod:`~patchforensics.release.card`), with the everyday edits' evasion table
   (:mod:`~patchforensics.release.evasion`); ``--install DIR`` copies the detector there.

``--card-only --previous DIR`` trains and chooses nothing: the release installed in ``DIR`` gets
the card measurements its ``card_metrics.json`` lacks (the evasion table) and its card rendered again.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core import fileio
from ..core.config import ConfigError, require
from ..core.imageio import list_images, load_rgb
from ..data.dataset import FAKE, REAL, default_data_root, split_samples
from ..data.transforms import parse_corruptions
from ..evaluation.calibrate import DEFAULT_TARGET_FPRS, calibrate, choose_thresholds
from ..models.card import ModelCard, fpr_name
from ..models.checkpoint import BUNDLED_WEIGHTS, RESUME_FILE
from ..scoring.engine import Engine
from ..scoring.runtime import FastPath
from ..scoring.onnx_backend import export_onnx
from ..training.summary import read_train_summary
from ..training.train import TrainConfig, resume_differences, train
from . import card_metrics as tables
from .backdrop import backdrop_ok, backdrop_shift
from .card import INSTALLED, render_card, render_installed
from .evasion import evasion_metrics
from .provenance import provenance, release_summary, weights_digest
from .recipe import (CANDIDATES, FAKE_SETS, GREY_KEPT, HELD_OUT_SOURCE, PREVIOUS, REAL_SETS, SELECTION_FPR,
                     Candidate)


@dataclass
class ReleaseConfig:
    """Options of ``patchforensics release``.

    ``epochs`` / ``max_per_class`` shorten every run (smoke tests, a GPU trial);
    ``cross_source`` trains the winner's recipe once more without :data:`HELD_OUT_SOURCE`;
    ``stop_after="train"`` ends after the training runs and the choice (on a GPU machine,
    without mediapipe: the rest then runs on the CPU from the same output folder);
    ``wild``: a folder of unaligned portraits for the false-alarm rows (default
    ``<data root>/../raw/wild-portraits`` when it exists); ``install``: copy the winner
    and its card there (e.g. ``src/patchforensics/bundled``); ``previous``: an installed
    release (e.g. that folder) measured beside the candidates: when the choice falls on it, it
    stays and nothing is installed; ``card_only``: only add the evasion table to the card of the
    release in ``previous`` (kept in ``<out>/evasion.json``) and render it again there (an
    evasion table it already holds is replaced only with ``force``).
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
    force: bool = False               # replace an existing --install folder
    stop_after: str = "card"          # card: every step | train: the training runs and the choice only
    previous: str | None = None       # an installed release the candidates must beat on validation
    card_only: bool = False           # measure and render the card of the release in `previous` only

    def validate(self) -> None:
        require(self.stop_after in ("card", "train"), "stop_after", "must be card or train")
        if self.install and Path(self.install).exists() and not self.force:
            raise fileio.OutputExistsError(f"{self.install} exists; pass --force to replace it with the release")
        known = [c.name for c in CANDIDATES]
        require(bool(self.candidates) and all(c in known for c in self.candidates), "candidates",
                f"choose among {', '.join(known)}")
        require(self.epochs is None or self.epochs > 0, "epochs", "must be > 0")
        require(self.previous is None or all((Path(self.previous) / f).is_file() for f in
                                             (f"{BUNDLED_WEIGHTS}.safetensors", "config.yaml", "release.json")),
                "previous", f"{self.previous} is not an installed release ({BUNDLED_WEIGHTS}.safetensors, "
                "config.yaml, release.json); pass one that --install wrote, e.g. src/patchforensics/bundled")
        if self.card_only:
            self._validate_card_only()
        require(self.bf16 in ("on", "off"), "bf16",
                "pin the precision (on or off) so that the run resumes with the same numerics anywhere")
        root = default_data_root(self.data_root)
        missing = [d for d in REAL_SETS + FAKE_SETS if not (root / d).is_dir()]
        require(not missing, "data_root", f"{root} lacks {', '.join(missing)} (the shared faces v2.1)")

    def _validate_card_only(self) -> None:
        metrics = Path(self.previous or "") / "card_metrics.json"
        require(self.previous is not None and self.install is None and metrics.is_file(), "card_only",
                "needs --previous DIR, an installed release with its card_metrics.json, and no --install")
        if "evasion" in json.loads(metrics.read_text()) and not self.force:
            raise fileio.OutputExistsError(f"{metrics} holds an evasion table already; pass --force to replace it")

    @property
    def root(self) -> Path:
        return default_data_root(self.data_root)

    def train_config(self, cand: Candidate, fakes: Sequence[str] = FAKE_SETS, tag: str = "") -> TrainConfig:
        return TrainConfig(real=[str(self.root / d) for d in REAL_SETS], fake=[str(self.root / d) for d in fakes],
                           model=cand.model, fine_size=cand.fine_size, max_epochs=self.epochs or cand.max_epochs,
                           balance_sources=cand.balance_sources, grey_prob=cand.grey_prob,
                           name=f"release_{cand.name}{tag}", seed=self.seed, bf16=self.bf16, device=self.device,
                           max_per_class=self.max_per_class, checkpoints_dir=str(Path(self.out) / "checkpoints"),
                           runs_dir=str(Path(self.out) / "runs"))


def _log(line: str) -> None:
    print(f"[release] {line}", flush=True)


def train_to_end(cfg: TrainConfig, progress: bool) -> Path:
    """Train ``cfg``; a finished run of the same options is kept, a killed one resumed (``train``
    refuses other options). A finished run of other options (a smoke run's 1 epoch …) is refused."""
    ckpt = Path(cfg.checkpoints_dir) / cfg.experiment_name()
    status = read_train_summary(ckpt).get("status")
    if status == "finished":
        stored = ModelCard.read(ckpt)
        # the data by folder name: a run trained on a GPU machine saw the same sets under another root
        changed = [line for line in resume_differences(cfg, cfg.experiment_name(), ckpt, stored.runtime)
                   if not line.startswith(("real:", "fake:"))]
        if [[Path(f).name for f in fs] for fs in stored.training_folders] != [[Path(f).name for f in fs]
                                                                            for fs in (cfg.real, cfg.fake)]:
            changed.append(f"training sets: {stored.training_folders} -> {cfg.real}, {cfg.fake}")
        if changed:
            raise ConfigError(f"{ckpt} holds a finished run of other options; give another --out (or remove "
                              "it):\n  " + "\n  ".join(changed))
        _log(f"{ckpt.name}: finished earlier, kept")
        return ckpt
    resume = (ckpt / RESUME_FILE).is_file()
    _log(f"{ckpt.name}: {'resuming' if resume else 'training'} ({cfg.model}, {cfg.fine_size}-px crops, "
         f"{cfg.max_epochs} epochs, bf16 {cfg.bf16})")
    train(cfg, resume=resume, progress=progress)
    return ckpt


def validation_choice(ckpt: Path, root: Path, device: str, progress: bool,
                      which: str = "bestval") -> dict[str, Any]:
    """The selection metric of one candidate on the validation split: at the threshold that
    flags at most :data:`SELECTION_FPR` of the validation reals, the fraction of each
    generator's validation fakes caught, and their mean (``mean_recall``)."""
    _, val = split_samples([str(root / d) for d in REAL_SETS], [str(root / d) for d in FAKE_SETS])
    engine = Engine.load(ckpt, which, FastPath(cache_mb=0), device)
    preds = engine.predict(val, progress=progress, desc=f"val {ckpt.name}")
    p_real = preds.scores["after_softmax"]
    cut = choose_thresholds(p_real, preds.labels, (SELECTION_FPR,)).thresholds[fpr_name(SELECTION_FPR)]
    source = np.array([Path(p).parent.parent.name for p in preds.paths])   # <set>/val/<file>
    missing = [g for g in FAKE_SETS if not np.any((source == g) & (preds.labels == FAKE))]
    if missing:
        raise ValueError(f"no validation fakes of {', '.join(missing)} under {root}: the choice needs each")
    recall = {g: float(np.mean(p_real[(source == g) & (preds.labels == FAKE)] <= cut)) for g in FAKE_SETS}
    count = {g: int(np.sum((source == g) & (preds.labels == FAKE))) for g in FAKE_SETS}
    # the mean recall's standard error (binomial per generator): "within its interval" is 1.96 of these
    recall_se = float(np.sqrt(sum(r * (1 - r) / count[g] for g, r in recall.items())) / len(recall))
    reals = preds.labels == REAL
    backdrop = backdrop_shift(engine, [load_rgb(p) for p in list_images(root / "ffhq" / "val")], 1.0 - cut)
    grey = _grey_recall(engine, val, cut, progress)
    return {"checkpoint": ckpt.name, "epoch": read_train_summary(ckpt).get("best_epoch"),
            "threshold_p_fake": 1.0 - cut, "false_alarms": float(np.mean(p_real[reals] <= cut)),
            "recall": recall, "mean_recall": float(np.mean(list(recall.values()))), "mean_recall_se": recall_se,
            "val_ap": float(preds.metrics()["after_softmax"]["ap"]),
            "backdrop": backdrop, "backdrop_ok": backdrop_ok(backdrop), "grey": grey}


def _grey_recall(engine: Engine, val: Sequence, cut: float, progress: bool) -> dict[str, Any]:
    """The validation fakes turned greyscale, at the colour threshold ``cut`` (on P(real)): the
    share of each generator's still caught and their mean. Greyscale is an edit a screener cannot
    prevent, so a detector it defeats is judged on it (issue [probe])."""
    fakes = [s for s in val if s.label == FAKE]
    preds = engine.predict(fakes, parse_corruptions(["grey"]), progress=progress, desc="val fakes in grey")
    source = np.array([Path(p).parent.parent.name for p in preds.paths])
    caught = preds.scores["after_softmax"] <= cut
    recall = {g: float(np.mean(caught[source == g])) for g in FAKE_SETS}
    return {"recall": recall, "mean_recall": float(np.mean(list(recall.values())))}


def choose(ckpts: dict[str, Path], cfg: ReleaseConfig, progress: bool) -> tuple[dict[str, Any], str]:
    """``(selection, winner)``: each candidate's :func:`validation_choice`, kept in
    ``<out>/selection.json`` for the weights it measured, and the name of the one chosen."""
    choice_file = Path(cfg.out) / "selection.json"
    selection = json.loads(choice_file.read_text()) if choice_file.is_file() else {}
    # the previous release first: a tie keeps it (a candidate must beat it to replace it)
    rivals = {PREVIOUS: Path(cfg.previous), **ckpts} if cfg.previous else ckpts
    for name, ckpt in rivals.items():
        which = BUNDLED_WEIGHTS if name == PREVIOUS else "bestval"
        digest = weights_digest(ckpt, which)
        if selection.get(name, {}).get("weights") != digest:     # measured on other weights
            selection[name] = {**validation_choice(ckpt, cfg.root, cfg.device, progress, which), "weights": digest}
            fileio.write_json(choice_file, selection)
        s = selection[name]
        _log(f"{name}: validation recall at {SELECTION_FPR:.0%} false alarms "
             + ", ".join(f"{g} {r:.3f}" for g, r in s["recall"].items()) + f"; mean {s['mean_recall']:.3f}; "
             f"backdrops {'pass' if s['backdrop_ok'] else 'fail'} on the validation reals"
             + (f"; greyscaled fakes caught {s['grey']['mean_recall']:.3f}" if "grey" in s else ""))
    return selection, pick_winner({n: selection[n] for n in rivals})


def pick_winner(selection: dict[str, dict[str, Any]]) -> str:
    """The candidate chosen from their :func:`validation_choice` results (``name -> result``);
    of equals, the first."""
    # a plain backdrop must not move a real face's score: a candidate that fails it on validation
    # loses to one that passes, whatever its recall
    winner = max(selection, key=lambda n: (selection[n]["backdrop_ok"], selection[n]["mean_recall"],
                                           selection[n]["val_ap"]))
    # greyscale is an edit a screener cannot prevent: a candidate it does not defeat replaces one it
    # does when that costs no more recall than the other's 95% interval (and no backdrop pass)
    if not grey_ok(selection[winner]):
        best = selection[winner]
        floor = best["mean_recall"] - 1.96 * best.get("mean_recall_se", 0.0)
        kept = [n for n, s in selection.items() if grey_ok(s) and s["mean_recall"] >= floor
                and s["backdrop_ok"] >= best["backdrop_ok"]]
        if kept:
            winner = max(kept, key=lambda n: (selection[n]["mean_recall"], selection[n]["val_ap"]))
    return winner


def grey_ok(choice: dict[str, Any]) -> bool:
    """Greyscale keeps at least :data:`GREY_KEPT` of the candidate's validation recall."""
    return "grey" in choice and choice["grey"]["mean_recall"] >= GREY_KEPT * choice["mean_recall"]


def run_release(cfg: ReleaseConfig, progress: bool = True) -> dict[str, Any]:
    """Every step of the module docstring; returns the summary written to ``<out>/release.json``."""
    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if cfg.card_only:
        return complete_card(cfg, progress)
    chosen = [c for c in CANDIDATES if c.name in cfg.candidates]
    ckpts = {c.name: train_to_end(cfg.train_config(c), progress) for c in chosen}

    selection, winner_name = choose(ckpts, cfg, progress)
    if winner_name == PREVIOUS:
        _log(f"chosen on validation: the previous release in {cfg.previous}; it stays, nothing is installed")
        return {"winner": PREVIOUS, "selection": selection}
    winner = ckpts[winner_name]
    _log(f"chosen on validation: {winner_name}")
    held = None
    if cfg.cross_source:
        spec = next(c for c in CANDIDATES if c.name == winner_name)
        held = train_to_end(cfg.train_config(spec, [f for f in FAKE_SETS if f != HELD_OUT_SOURCE],
                                             tag=f"_without_{HELD_OUT_SOURCE}"), progress)
    if cfg.stop_after == "train":
        _log("training done (--stop-after train); run the command again without it to finish")
        return {"winner": winner_name, "selection": selection}

    card = fileio.read_yaml(winner / "config.yaml")
    if not {fpr_name(t) for t in DEFAULT_TARGET_FPRS} <= set(card.get("thresholds") or {}):
        _, val = split_samples([str(cfg.root / d) for d in REAL_SETS], [str(cfg.root / d) for d in FAKE_SETS])
        calibrate(winner, Engine.load(winner, "bestval", FastPath(cache_mb=0), cfg.device), val,
                  progress=progress, force=True)
    # each measurement is kept only for the weights it measured (a rerun may choose another winner)
    weights = {"winner": weights_digest(winner)}
    onnx_path = out / f"{winner.name}-{weights['winner']}.onnx"
    if not onnx_path.is_file():
        export_onnx(winner, onnx_path, which="bestval")
    cross = None
    if held is not None:
        weights["held_out"] = weights_digest(held)
        cross = _measured(out / "cross_source.json", weights,
                          lambda: tables.cross_source_metrics(held, winner, cfg.root, HELD_OUT_SOURCE))
    metrics = _measured(out / "card_metrics.json", {"winner": weights["winner"]},
                        lambda: tables.card_metrics(cfg.root, str(winner), wild=cfg.wild, which="bestval"))
    metrics = _with_evasion(metrics, out / "card_metrics.json", winner, "bestval", cfg, "patchforensics release",
                            progress)
    summary = release_summary(winner_name, weights, onnx_path, selection, cross,
                              provenance(cfg.root, list(ckpts.values()), cfg.device),
                              (time.perf_counter() - start) / 60)
    fileio.write_json(out / "release.json", summary)
    fileio.write_text(out / "MODEL_CARD.md", render_card(winner, metrics, summary))
    if cfg.install:
        install(winner, out, Path(cfg.install), cfg.force)
        _log(f"installed into {cfg.install}")
    return summary


def _with_evasion(metrics: dict[str, Any], metrics_file: Path, ckpt: Path, which: str, cfg: ReleaseConfig,
                  command: str, progress: bool) -> dict[str, Any]:
    """``metrics`` with the evasion table of ``ckpt``'s ``which`` weights under ``evasion``, measured
    once per weights (``<out>/evasion.json``) and written into ``metrics_file`` when it lacked it."""
    found = _measured(Path(cfg.out) / "evasion.json", {"winner": weights_digest(ckpt, which)},
                      lambda: evasion_metrics(cfg.root, Engine.load(ckpt, which, FastPath(cache_mb=0), cfg.device),
                                              command, progress=progress))
    if metrics.get("evasion") != found:
        metrics = {**metrics, "evasion": found}
        fileio.write_json(metrics_file, metrics)
    return metrics


def complete_card(cfg: ReleaseConfig, progress: bool) -> dict[str, Any]:
    """``--card-only``: the release installed in ``cfg.previous`` gets the evasion table in its
    ``card_metrics.json`` and its ``MODEL_CARD.md`` rendered again; returns its ``release.json``."""
    folder = Path(cfg.previous)
    metrics = json.loads((folder / "card_metrics.json").read_text())
    command = f"patchforensics release --card-only --previous {cfg.previous}"
    metrics = _with_evasion({k: v for k, v in metrics.items() if k != "evasion"}, folder / "card_metrics.json",
                            folder, BUNDLED_WEIGHTS, cfg, command, progress)
    fileio.write_text(folder / "MODEL_CARD.md", render_installed(folder, metrics))
    _log(f"{folder}: evasion table added to card_metrics.json, MODEL_CARD.md rendered again")
    return json.loads((folder / "release.json").read_text())


def _measured(path: Path, weights: dict[str, str], measure) -> dict[str, Any]:
    """The JSON at ``path`` when it was measured on ``weights``, else ``measure()`` written there."""
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("weights") == weights:
            return stored
    result = {**measure(), "weights": weights}
    fileio.write_json(path, result)
    return result


def install(winner: Path, out: Path, dest: Path, force: bool) -> None:
    """Replace folder ``dest`` as a whole (built beside it, swapped in complete: weights, thresholds
    and card always travel together) with the winner and its card; an existing one needs ``force``."""
    with fileio.atomic_dir(dest, force=force) as tmp:
        for src, name in INSTALLED.items():
            shutil.copyfile(winner / src, tmp / name)
        # training folders relative to where the command ran (the repository: ../shared/data/…),
        # not this machine's absolute paths, so that `calibrate` finds them in any checkout
        card = ModelCard.read(tmp)
        folders = {k: [os.path.relpath(f) for f in card.options.get(k) or []] for k in ("real", "fake")}
        replace(card, options={**card.options, **folders}).write(tmp)
        for name in ("MODEL_CARD.md", "card_metrics.json", "release.json", "selection.json"):
            if (out / name).is_file():
                shutil.copyfile(out / name, tmp / name)
        # the ONNX file Engine.load runs in place of the weights: opening the detector exports nothing
        export_onnx(tmp, tmp / f"{BUNDLED_WEIGHTS}.onnx", which=BUNDLED_WEIGHTS)
