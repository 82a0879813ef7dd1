"""The leave-one-generator-out measurement of ``adapt`` (docs/adapt.md), as a keyed grid.

For each fold a base is trained without one generator (:data:`FOLDS`: StyleGAN2's two
sources count as one generator), then adapted to it from ``N`` samples drawn from its
*train* split (its val split is never used inside a run). Each adapted model and the
base are scored on every shared val and test split; one row per cell x split x set goes
to ``cells.csv`` under the cell's key (fold, method, N, draw, recipe and the base
weights' digest), so a rerun skips what is there and two machines' tables merge.
Choices are made on the ``val`` rows only; ``test`` rows are reported once.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..core import fileio
from ..core.imageio import list_images
from ..core.provenance import code_commit
from ..data.dataset import data_release, sample_seed
from ..experiments.results_tables import append_keyed_csv, read_csv
from ..models.checkpoint import BUNDLED_DIR, load_model
from ..scoring.engine import Engine
from ..scoring.runtime import FastPath, cpu_kind
from ..training.config import TrainConfig
from ..training.summary import read_train_summary
from ..training.train import train
from . import measure
from .config import AdaptConfig
from .pipeline import adapt

FOLDS = {"stylegan2": ("tpdne-stylegan2", "stylegan2-nvidia"), "stylegan1": ("stylegan1",),
         "generated-photos": ("generated-photos",)}
REALS = ("ffhq", "celebahq")
FAKES = ("tpdne-stylegan2", "stylegan2-nvidia", "stylegan1", "generated-photos")
SIZES = (10, 25, 50, 100, 200)
SPLITS = ("val", "test")
COLUMNS = ("key", "fold", "method", "n", "draw", "split", "set", "class", "relation", "images",
           "flagged_before", "flagged_before_lo", "flagged_before_hi", "flagged_after", "flagged_after_lo",
           "flagged_after_hi", "diff", "diff_lo", "diff_hi", "ap_before", "ap_after", "ap_diff_lo", "ap_diff_hi",
           "cut_before", "cut_after", "estimate", "estimate_lo", "estimate_hi", "seconds", "recipe", "base",
           "base_weights", "cpu", "data_version", "commit")
IDENTITY = ("key", "split", "set")


@dataclass
class BenchConfig:
    """What to run: folds x methods x sizes x draws, bases trained with ``base_epochs`` of the
    release recipe; ``recipes`` maps a method to its :class:`AdaptConfig` overrides."""

    data: str
    out: str = "experiments/adapt"
    results: str = "docs/adapt"
    folds: tuple[str, ...] = tuple(FOLDS)
    methods: tuple[str, ...] = ("head",)
    sizes: tuple[int, ...] = SIZES
    draws: int = 2
    base_epochs: int = 15
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop_after_minutes: float | None = None


def base_config(cfg: BenchConfig, fold: str) -> TrainConfig:
    """The release recipe (xception_block3, 96-px crops, cosine, balanced) without ``fold``."""
    data = Path(cfg.data)
    return TrainConfig(real=[str(data / r) for r in REALS],
                       fake=[str(data / f) for f in FAKES if f not in FOLDS[fold]],
                       model="xception_block3", fine_size=96, max_epochs=cfg.base_epochs,
                       checkpoints_dir=str(Path(cfg.out) / "checkpoints"), runs_dir=str(Path(cfg.out) / "runs"),
                       name=f"base_no-{fold}")


def train_base(cfg: BenchConfig, fold: str, progress: bool) -> Path:
    tcfg = base_config(cfg, fold)
    ckpt = Path(tcfg.checkpoints_dir) / tcfg.experiment_name()
    if read_train_summary(ckpt).get("status") != "finished":
        train(tcfg, resume=(ckpt / "resume.safetensors").is_file(), progress=progress)
    return ckpt


def draw_samples(data: Path, fold: str, n: int, draw: int) -> list[str]:
    """``n`` files of the fold's generator, seeded by ``(n, draw)``, from its train split only."""
    pool = [str(p) for src in FOLDS[fold] for p in list_images(data / src / "train")]
    if n > len(pool):
        return []
    idx = sample_seed(1000 + draw, n, len(pool)).choice(len(pool), n, replace=False)
    return [pool[i] for i in sorted(idx)]


def eval_sets(data: Path, split: str) -> list[measure.TestSet]:
    return measure.test_sets([str(data / r) for r in REALS], [str(data / f) for f in FAKES], split)


def scores_of(engine: Engine, sets: list[measure.TestSet]) -> dict[str, np.ndarray]:
    out = {}
    for s in sets:
        preds = engine.predict(s.samples(), progress=False)
        out[s.name] = 1.0 - preds.scores["after_softmax"]
    return out


def cell_key(fold: str, method: str, n: int, draw: int, recipe: dict[str, Any], base_weights: str) -> str:
    text = json.dumps([fold, method, n, draw, recipe, base_weights], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rows_for(meta: dict[str, Any], split: str, sets, before, after, cut_before, cut_after,
             new_sets: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for r in measure.forgetting(sets, before, after, cut_before, cut_after):
        relation = "real" if r["class"] == "real" else ("new" if r["set"] in new_sets else "old")
        rows.append({**meta, "split": split, "set": r["set"], "class": r["class"], "relation": relation,
                     "images": r["n"], "flagged_before": r["before"]["rate"], "flagged_before_lo": r["before"]["ci"][0],
                     "flagged_before_hi": r["before"]["ci"][1], "flagged_after": r["after"]["rate"],
                     "flagged_after_lo": r["after"]["ci"][0], "flagged_after_hi": r["after"]["ci"][1],
                     "diff": r["diff"], "diff_lo": r["diff_ci"][0], "diff_hi": r["diff_ci"][1],
                     "ap_before": r.get("ap_before"), "ap_after": r.get("ap_after"),
                     "ap_diff_lo": (r.get("ap_diff_ci") or [None])[0], "ap_diff_hi": (r.get("ap_diff_ci") or [None, None])[1],
                     "cut_before": cut_before, "cut_after": cut_after})
    return rows


@dataclass
class Fold:
    """A fold's base, opened once: its engine, weights digest and scores on every split."""

    name: str
    ckpt: Path
    engine: Engine
    weights: str
    cut: float
    sets: dict[str, list[measure.TestSet]]
    scores: dict[str, dict[str, np.ndarray]]


def open_fold(cfg: BenchConfig, fold: str, ckpt: Path) -> Fold:
    engine = Engine.load(ckpt, "bestval", FastPath(cache_mb=0), "cpu")
    weights = fileio.file_sha256(engine.weights_file)[:12]
    sets = {split: eval_sets(Path(cfg.data), split) for split in SPLITS}
    return Fold(fold, ckpt, engine, weights, engine.card.default_cut()[1], sets,
                {split: scores_of(engine, sets[split]) for split in SPLITS})


def run_cell(cfg: BenchConfig, fold: Fold, method: str, n: int, draw: int, progress: bool) -> list[dict]:
    recipe = cfg.recipes.get(method, {})
    key = cell_key(fold.name, method, n, draw, recipe, fold.weights)
    files = draw_samples(Path(cfg.data), fold.name, n, draw)
    if not files:
        return []
    out = Path(cfg.out) / "adapted" / f"{fold.name}_{method}_n{n}_d{draw}"
    acfg = replace(AdaptConfig(fake=files, out=str(out), model=str(fold.ckpt), name=fold.name, method=method,
                               seed=draw, force=True, forgetting=False), **recipe)
    t0 = time.time()
    numbers = adapt(acfg, progress=progress)
    seconds = time.time() - t0
    engine = Engine.load(out, "bestval", FastPath(cache_mb=0), "cpu")
    est = numbers["estimate"] or {}
    e = est.get("fpr3pct", {"rate": None, "ci": [None, None]})
    meta = {"key": key, "fold": fold.name, "method": method, "n": n, "draw": draw, "estimate": e["rate"],
            "estimate_lo": e["ci"][0], "estimate_hi": e["ci"][1], "seconds": round(seconds, 1),
            "recipe": json.dumps(recipe, sort_keys=True), "base": fold.ckpt.name, "base_weights": fold.weights,
            "cpu": cpu_kind(), "data_version": data_release(cfg.data), "commit": code_commit()}
    cut = engine.card.default_cut()[1]
    return [row for split in SPLITS
            for row in rows_for(meta, split, fold.sets[split], fold.scores[split],
                                scores_of(engine, fold.sets[split]), fold.cut, cut, FOLDS[fold.name])]


def reference_rows(cfg: BenchConfig, name: str, engine: Engine, weights: str) -> list[dict]:
    """A model that was not adapted (a fold's base, the bundled detector): its flagged shares
    at its own default cut, as rows whose 'before' and 'after' are the same model."""
    meta = {"key": cell_key(name, "reference", 0, 0, {}, weights), "fold": name, "method": "reference", "n": 0,
            "draw": 0, "base": name, "base_weights": weights, "cpu": cpu_kind(),
            "data_version": data_release(cfg.data), "commit": code_commit(), "recipe": "{}"}
    cut = engine.card.default_cut()[1]
    rows = []
    for split in SPLITS:
        sets = eval_sets(Path(cfg.data), split)
        scores = scores_of(engine, sets)
        rows += rows_for(meta, split, sets, scores, scores, cut, cut, FOLDS.get(name.replace("base_no-", ""), ()))
    return rows


def _have(table: Path) -> set[str]:
    return {r["key"] for r in read_csv(table)}


def run_benchmark(cfg: BenchConfig, progress: bool = True) -> dict[str, int]:
    """Train the missing bases, run the missing cells; rows appended as each cell finishes.
    Returns how many cells ran; stops starting cells after ``stop_after_minutes``."""
    t0 = time.time()
    table = Path(cfg.results) / "cells.csv"
    Path(cfg.results).mkdir(parents=True, exist_ok=True)
    have, ran = _have(table), 0
    bundled = load_model(BUNDLED_DIR, "weights")
    bundled_weights = fileio.file_sha256(bundled.weights_file)[:12]
    if cell_key("bundled", "reference", 0, 0, {}, bundled_weights) not in have:
        engine = Engine.load(None, None, FastPath(cache_mb=0), "cpu")
        append_keyed_csv(table, COLUMNS, IDENTITY, reference_rows(cfg, "bundled", engine, bundled_weights))
    for fold_name in cfg.folds:
        fold = open_fold(cfg, fold_name, train_base(cfg, fold_name, progress))
        if cell_key(fold.ckpt.name, "reference", 0, 0, {}, fold.weights) not in have:
            append_keyed_csv(table, COLUMNS, IDENTITY, reference_rows(cfg, fold.ckpt.name, fold.engine, fold.weights))
        for method in cfg.methods:
            for n in cfg.sizes:
                for draw in range(cfg.draws):
                    if cell_key(fold_name, method, n, draw, cfg.recipes.get(method, {}), fold.weights) in have:
                        continue
                    if cfg.stop_after_minutes is not None and time.time() - t0 > 60 * cfg.stop_after_minutes:
                        return {"cells": ran, "stopped": 1}
                    print(f"adapt-benchmark: {fold_name} {method} N={n} draw {draw}", flush=True)
                    ran += bool(append_keyed_csv(table, COLUMNS, IDENTITY,
                                                 run_cell(cfg, fold, method, n, draw, progress)))
    return {"cells": ran, "stopped": 0}


def config_json(cfg: BenchConfig) -> str:
    return json.dumps(asdict(cfg), sort_keys=True)
