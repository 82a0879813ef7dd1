"""``test``: score a checkpoint on a real/fake dataset and write its metrics.

Results go to ``results/<name>/<partition>/epoch_<which>/<dataset>[_<corruptions>]/``:
``metrics.json`` (per aggregation and per patch: AP with fake as the positive
class, the seed's real-positive AP as ``ap_real_positive``, accuracy at 0.5,
ROC-AUC, real/fake accuracy, n), ``scores.csv`` (one row per image, p(fake) per
aggregation) and ``pr_curve.png``. Images are scored by the
:class:`~patchforensics.scoring.engine.Engine`.
Memory stays flat in the dataset size: per image only three scores are kept,
and per-patch metrics come from a streaming histogram.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core import fileio, ranks
from ..core.config import ConfigError, require
from ..core.imageio import NoUsableImagesError
from ..data.dataset import collect_samples
from ..data.transforms import Corruption, corruption_tag, parse_corruptions
from ..scoring import distributed
from ..scoring.engine import Engine
from ..scoring.runtime import FastPath
from ..scoring.metrics import AGGREGATIONS, Predictions


# ------------------------------------------------------------------ test
@dataclass
class TestConfig:
    """Options of ``patchforensics test``."""

    checkpoint: str
    real: list[str]
    fake: list[str]
    dataset_name: str
    which_epoch: str = "bestval"
    partition: str = "test"
    corrupt: list[str] = field(default_factory=list)
    results_dir: str = "results"
    batch_size: int = 64
    num_workers: int = 0
    device: str = "auto"
    force: bool = False
    # fast paths (docs/performance.md): each on where it helps, each can be turned off
    channels_last: bool = True
    bf16: str = "auto"                  # auto (native bf16 hardware only) | on | off
    fold_bn: bool = True
    backend: str = "auto"               # auto | torch | onnx (ONNX Runtime, CPU)
    threads: int = 0                    # intra-op threads per process; 0 = one per core

    def validate(self) -> None:
        require(bool(self.dataset_name) and "/" not in self.dataset_name, "dataset_name",
                "give a short name without '/', e.g. --dataset-name ffhq_vs_stylegan2")
        require(self.batch_size > 0, "batch_size", "must be > 0")
        try:
            parse_corruptions(self.corrupt)
        except ValueError as e:
            raise ConfigError(f"corrupt: {e}") from None
        self.fast_path().validate()

    def fast_path(self) -> FastPath:
        return FastPath(channels_last=self.channels_last, bf16=self.bf16, fold_bn=self.fold_bn,
                        backend=self.backend, cache_mb=0, threads=self.threads)


def results_dir_for(results_root: str | os.PathLike, name: str, partition: str, which: str,
                    dataset_name: str, corruptions: Sequence[Corruption] = ()) -> Path:
    tag = corruption_tag(corruptions)
    leaf = dataset_name + (f"_{tag}" if tag else "")
    return Path(results_root) / name / partition / f"epoch_{which}" / leaf


#: what the numbers in ``scores.csv`` and ``metrics.json`` mean; part of the cache key, so
#: results written under another convention are recomputed, not reused
SCORE_CONVENTION = "p_fake; ap = fake positive; ap_real_positive = seed"


#: what an engine ran with that scores depend on (bf16 vs fp32 moved a validation AP from 0.53
#: to 0.77); part of the cache key, so results of another precision/backend/device are recomputed
RUNTIME_KEYS = ("precision", "backend", "device", "cpu")


def same_runtime(key: dict, engine: Engine) -> bool:
    """Whether results stored under ``key`` were computed as ``engine`` would compute them."""
    return all(key.get(k) == engine.runtime[k] for k in RUNTIME_KEYS)


def run_test(cfg: TestConfig, engine: Engine | None = None, progress: bool = True) -> tuple[dict, Path]:
    """Evaluate one (real, fake) dataset; returns ``(metrics, results_folder)``.

    Skips the work (and returns the stored metrics) when ``metrics.json`` already
    exists for the same weights file and inputs, unless ``cfg.force``. Under
    ``torchrun`` each process scores a shard of the images and every process
    returns the metrics of the whole set; only rank 0 writes files. ``engine``
    replaces the one ``cfg`` would open (its backend then decides).
    """
    cfg.validate()
    with ranks.session(cfg.device) as ctx:
        return _run_test(cfg, ctx, engine, progress)


def _run_test(cfg: TestConfig, ctx: ranks.DistContext, engine: Engine | None,
              progress: bool) -> tuple[dict, Path]:
    corruptions = parse_corruptions(cfg.corrupt)
    samples = collect_samples(cfg.real, cfg.fake, split=cfg.partition)  # fails early on bad folders
    if engine is None:
        engine = Engine.load(cfg.checkpoint, cfg.which_epoch, cfg.fast_path(), ctx.device, ctx.local_world_size)
    card = engine.card
    out_dir = results_dir_for(cfg.results_dir, card.name, cfg.partition, cfg.which_epoch,
                              cfg.dataset_name, corruptions)
    runtime = engine.runtime
    key = {"weights_sha256": fileio.file_sha256(engine.weights_file), "real": [str(r) for r in cfg.real],
           "fake": [str(f) for f in cfg.fake], "corruptions": [str(c) for c in corruptions],
           "thresholds": dict(card.thresholds), "convention": SCORE_CONVENTION,
           **{k: runtime[k] for k in RUNTIME_KEYS}}
    metrics_file = out_dir / "metrics.json"
    if metrics_file.is_file() and not cfg.force:
        old = json.loads(metrics_file.read_text())
        if old.get("key") == key:
            if ctx.is_main:
                print(f"reusing the results in {metrics_file} (same weights, data and options, "
                      f"{runtime['precision']} on {runtime['backend']}); --force recomputes them", file=sys.stderr)
            return old, out_dir
    positions = distributed.shard(range(len(samples)), ctx)
    preds = engine.predict([samples[i] for i in positions], corruptions, cfg.batch_size, cfg.num_workers,
                           progress and ctx.is_main, desc=f"test {cfg.dataset_name}")
    preds = distributed.gather_predictions(preds, positions, samples, ctx)
    if len(np.unique(preds.labels)) < 2:
        first = "; ".join(f"{p}: {r}" for p, r in preds.skipped.skipped[:3])
        raise NoUsableImagesError(f"no usable images left in one class ({len(preds.skipped)} skipped, "
                                  f"e.g. {first})")
    result = {
        "name": card.name, "dataset": cfg.dataset_name, "partition": cfg.partition,
        "which_epoch": cfg.which_epoch, "corruptions": [str(c) for c in corruptions],
        "weights_epoch": engine.meta.get("epoch"), "backend": engine.backend, "runtime": runtime, "key": key,
        "convention": {"score": "p(fake) = 1 - P(real)", "ap": "fake images positive, ranked by p(fake)",
                       "ap_real_positive": "the seed's AP: real images positive, ranked by P(real)"},
        "metrics": preds.metrics(card.thresholds),
        "skipped": preds.skipped.as_list(),
    }
    if not ctx.is_main:
        return result, out_dir
    write_scores_csv(out_dir / "scores.csv", preds)
    plot_pr_curves(out_dir / "pr_curve.png", preds, title=f"{card.name} on {cfg.dataset_name}")
    fileio.write_json(metrics_file, result)
    return result, out_dir


SCORE_COLUMNS = tuple(f"p_fake_{a}" for a in AGGREGATIONS)


def write_scores_csv(path: Path, preds: Predictions) -> None:
    """One row per image: path, label (1 = real, 0 = fake) and p(fake) per aggregation."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "label", *SCORE_COLUMNS])
    p_fake = {a: preds.p_fake(a) for a in AGGREGATIONS}
    for i, p in enumerate(preds.paths):
        w.writerow([p, int(preds.labels[i]), *(f"{p_fake[a][i]:.6f}" for a in AGGREGATIONS)])
    fileio.write_text(path, buf.getvalue())


def read_scores_csv(path: str | os.PathLike) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]] | None:
    """``(paths, labels, {aggregation: p(fake)})`` of a ``scores.csv``, or ``None`` for one
    written under an older convention (other columns)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not set(SCORE_COLUMNS) <= set(reader.fieldnames or ()):
            return None
        rows = list(reader)
    labels = np.array([int(r["label"]) for r in rows])
    return ([r["path"] for r in rows], labels,
            {a: np.array([float(r[c]) for r in rows]) for a, c in zip(AGGREGATIONS, SCORE_COLUMNS)})


def plot_pr_curves(path: Path, preds: Predictions, title: str = "") -> None:
    """Precision-recall curves of finding the fakes by p(fake), one per aggregation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = plt.subplots(figsize=(4.5, 4))
    is_fake = preds.labels == 0
    for agg in AGGREGATIONS:
        p, r, _ = precision_recall_curve(is_fake, preds.p_fake(agg))
        ap = average_precision_score(is_fake, preds.p_fake(agg))
        ax.plot(r, p, label=f"{agg} (AP {ap:.3f})")
    ax.set(xlabel="recall (fake)", ylabel="precision (fake)", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.title.set_fontsize(9)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fileio.save_figure(fig, path, dpi=100)
    plt.close(fig)
