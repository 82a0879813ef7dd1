"""``demo``: the main job end to end on the faces data, on a CPU.

Trains ``xception_block2`` on FFHQ reals vs StyleGAN2 (thispersondoesnotexist)
fakes at 128 px with ``train``'s default recipe (docs/recipe.md); fits a GMM
generator on the FFHQ training reals and samples another fake set from it;
evaluates the model on the ``faces128`` suite (the training generator, the
unseen StyleGAN1 and generated.photos, and CelebA-HQ reals for false alarms)
plus the ``gmm`` row;
prints the table; then explains the model (heatmap galleries, top patches,
face regions) in one HTML report. Everything goes under ``--out`` (default
``demo_out/``): ``checkpoints/``, ``runs/`` (TensorBoard), ``gmm/``,
``results/`` (with ``report.html``) and ``demo_summary.json``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .core import fileio
from .data.dataset import default_data_root
from .data.gmm import make_gmm_fakes
from .explain.chain import explain_checkpoint
from .evaluation.suite import SuiteDataset, load_suite, run_suite
from .training.train import TrainConfig, train

DEMO_REAL, DEMO_FAKE = "ffhq", "tpdne-stylegan2"


@dataclass
class DemoConfig:
    """Options of ``patchforensics demo``: ``data`` (faces folder, see
    :func:`default_data_root`), ``out`` (output folder), ``epochs`` of training
    (24 of ``train``'s 30 by default, so that the whole demo takes under 10 minutes
    on a 2-core AVX2 CPU)."""

    data: str | None = None
    out: str = "demo_out"
    epochs: int = 24
    model: str = "xception_block2"
    force: bool = False
    num_workers: int = 0


def demo_train_config(data: Path, out: Path, cfg: DemoConfig) -> TrainConfig:
    """``train``'s default recipe (docs/recipe.md) for ``cfg.epochs`` epochs (the cosine
    schedule ends there), no early stopping, so that the run time is predictable."""
    return TrainConfig(real=[str(data / DEMO_REAL)], fake=[str(data / DEMO_FAKE)], model=cfg.model,
                       name="demo_{model}", patience=0, checkpoints_dir=str(out / "checkpoints"),
                       runs_dir=str(out / "runs"), num_workers=cfg.num_workers, max_epochs=cfg.epochs)


def run_demo(cfg: DemoConfig, progress: bool = True, log=print) -> dict:
    """Run the demo; returns the summary also written to ``<out>/demo_summary.json``."""
    data = default_data_root(cfg.data)
    out = Path(cfg.out)
    suite = load_suite("faces128", data)   # checks the folders before training starts
    fileio.ensure_new_output(out, cfg.force)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    train_cfg = demo_train_config(data, out, cfg)
    log(f"[1/4] training {cfg.model} on {DEMO_REAL} vs {DEMO_FAKE} ({train_cfg.max_epochs} epochs, data {data})")
    t = time.perf_counter()
    result = train(train_cfg, force=cfg.force, progress=progress)
    timings["train_s"] = time.perf_counter() - t

    log("[2/4] fitting a GMM generator on the real training faces and sampling a fake test set")
    t = time.perf_counter()
    gmm_dir = make_gmm_fakes(data / DEMO_REAL / "train", out / "gmm", n_train=0, n_val=0, n_test=100,
                             progress=progress, force=cfg.force)
    suite.datasets.append(SuiteDataset("gmm", str(data / DEMO_REAL), str(gmm_dir)))
    timings["gmm_s"] = time.perf_counter() - t

    log(f"[3/4] evaluating on the faces128 suite ({', '.join(d.name for d in suite.datasets)})")
    t = time.perf_counter()
    results_dir = out / "results"
    table = run_suite(result.checkpoint_dir, suite, results_dir=str(results_dir), force=True, progress=progress)
    timings["suite_s"] = time.perf_counter() - t

    log("[4/4] explaining: heatmaps, most predictive patches, face regions, report")
    t = time.perf_counter()
    report = explain_checkpoint(result.checkpoint_dir, data / DEMO_REAL, data / DEMO_FAKE, DEMO_FAKE,
                                results_dir=str(results_dir), progress=progress, force=True)
    timings["explain_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - start

    summary = {"data": str(data), "checkpoint": str(result.checkpoint_dir), "best_epoch": result.best_epoch,
               "best_val_metric": result.best_metric, "timings": timings,
               "table_markdown": str(table.markdown_path), "report": str(report), "rows": table.rows}
    fileio.write_json(out / "demo_summary.json", summary)
    log(table.markdown())
    log(f"report: {report}")
    log(f"total time {timings['total_s'] / 60:.1f} min on {os.cpu_count()} CPU cores "
        f"(train {timings['train_s'] / 60:.1f} min); everything is under {out}/")
    return summary
