"""``test``: score a checkpoint on a real/fake dataset and write its metrics.

Results go to ``results/<name>/<partition>/epoch_<which>/<dataset>[_<corruptions>]/``:
``metrics.json`` (per aggregation and per patch: AP, accuracy at 0.5, ROC-AUC,
real/fake accuracy, n), ``scores.csv`` (one row per image) and ``pr_curve.png``.
Memory stays flat in the dataset size: per image only three scores are kept,
and per-patch metrics come from a streaming histogram.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..scoring import distributed
from ..core import fileio
from ..models.checkpoint import LoadedModel, load_model
from ..core.config import ConfigError, require
from ..data.dataset import ImageDataset, Sample, collate, collect_samples
from ..scoring.fastpath import FastPath, configure_runtime, prepare_inference
from ..core.imageio import NoUsableImagesError, SkipLog
from ..scoring.metrics import AGGREGATIONS, PatchHistogram, aggregate, binary_metrics
from ..data.transforms import Corruption, TransformConfig, corruption_tag, eval_transform, parse_corruptions


@dataclass
class Predictions:
    """Per-image scores (P(real) per aggregation) and streaming patch counts."""

    paths: list[str]
    labels: np.ndarray                      # (N,) 1 = real, 0 = fake
    scores: dict[str, np.ndarray]           # aggregation -> (N,) P(real)
    patches: PatchHistogram
    skipped: SkipLog = field(default_factory=SkipLog)
    index: np.ndarray | None = None          # (N,) position of each image in the input samples

    def metrics(self, thresholds: dict[str, float] | None = None) -> dict:
        out = {agg: binary_metrics(self.scores[agg], self.labels) for agg in AGGREGATIONS}
        out["patch"] = self.patches.metrics()
        for tname, t in (thresholds or {}).items():
            m = binary_metrics(self.scores["after_softmax"], self.labels, threshold=t)
            out["after_softmax"][f"acc@{tname}"] = m["acc"]
            out["after_softmax"][f"real_acc@{tname}"] = m["real_acc"]
            out["after_softmax"][f"fake_acc@{tname}"] = m["fake_acc"]
        return out


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_loader(dataset, batch_size: int, num_workers: int, sampler=None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=num_workers, collate_fn=collate,
                      persistent_workers=False, pin_memory=torch.cuda.is_available())


class ScoreAccumulator:
    """Turns a stream of logit batches into :class:`Predictions` in bounded memory.

    Per image it keeps three float scores, its label, index and path; patch maps
    are folded into a :class:`~patchforensics.metrics.PatchHistogram` batch by
    batch and dropped, so memory grows by ~100 bytes per image, not by its map.
    """

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.labels: list[np.ndarray] = []
        self.index: list[np.ndarray] = []
        self.scores: dict[str, list[np.ndarray]] = {a: [] for a in AGGREGATIONS}
        self.patches, self.skipped = PatchHistogram(), SkipLog()

    def add(self, logits: torch.Tensor, labels: torch.Tensor, paths: Sequence[str],
            index: torch.Tensor) -> None:
        """One batch: logits ``(B, 2, H', W')``, labels/index ``(B,)``."""
        logits = logits.float().cpu()
        # copies, not views: a small array that keeps its batch's torch storage alive
        # fragments the heap, and peak memory then creeps up with the number of batches
        for agg, v in aggregate(logits).items():
            self.scores[agg].append(v.numpy().copy())
        self.patches.update(logits, labels)
        self.labels.append(labels.numpy().copy())
        self.index.append(index.numpy().copy())
        self.paths.extend(paths)

    def add_errors(self, errors: Sequence[tuple[str, str]]) -> None:
        self.skipped.skipped.extend(errors)

    def result(self) -> Predictions:
        cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0))
        return Predictions(self.paths, cat(self.labels).astype(int),
                           {a: cat(v) for a, v in self.scores.items()}, self.patches, self.skipped,
                           cat(self.index).astype(np.int64))


def predict(model: torch.nn.Module, samples: Sequence[Sample], tcfg: TransformConfig,
            corruptions: Sequence[Corruption] = (), batch_size: int = 64, num_workers: int = 0,
            device: str | torch.device = "cpu", progress: bool = True, desc: str = "predict",
            fast: FastPath | None = None, dataset: ImageDataset | None = None) -> Predictions:
    """Run ``model`` over ``samples``; unreadable files are skipped and listed.

    ``fast`` picks the inference path (default: every fast path that helps on
    ``device``; :meth:`FastPath.reference` for plain eager fp32). ``dataset``
    replaces the default one over ``samples`` (e.g. a decoded-image cache).
    ``model`` itself is left unchanged.
    """
    device = torch.device(device)
    side = tcfg.load_size if tcfg.patch_model else tcfg.fine_size
    runner = prepare_inference(model, fast or FastPath(), device, side)
    if dataset is None:
        dataset = ImageDataset(samples, eval_transform(tcfg, corruptions))
    loader = make_loader(dataset, batch_size, num_workers)
    acc = ScoreAccumulator()
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, disable=not progress, unit="batch", leave=False):
            acc.add_errors(batch["errors"])
            if batch["image"] is not None:
                acc.add(runner(batch["image"]), batch["label"], batch["paths"], batch["index"])
    return acc.result()


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


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_test(cfg: TestConfig, loaded: LoadedModel | None = None, progress: bool = True) -> tuple[dict, Path]:
    """Evaluate one (real, fake) dataset; returns ``(metrics, results_folder)``.

    Skips the work (and returns the stored metrics) when ``metrics.json`` already
    exists for the same weights file and inputs, unless ``cfg.force``. Under
    ``torchrun`` each process scores a shard of the images and every process
    returns the metrics of the whole set; only rank 0 writes files.
    """
    cfg.validate()
    with distributed.session(cfg.device) as ctx:
        return _run_test(cfg, ctx, loaded, progress)


def _run_test(cfg: TestConfig, ctx: distributed.DistContext, loaded: LoadedModel | None,
              progress: bool) -> tuple[dict, Path]:
    corruptions = parse_corruptions(cfg.corrupt)
    device = ctx.device
    fast = cfg.fast_path()
    configure_runtime(fast, device, ctx.local_world_size)
    samples = collect_samples(cfg.real, cfg.fake, split=cfg.partition)  # fails early on bad folders
    if loaded is None:
        loaded = load_model(cfg.checkpoint, cfg.which_epoch, device)
    out_dir = results_dir_for(cfg.results_dir, loaded.name, cfg.partition, cfg.which_epoch,
                              cfg.dataset_name, corruptions)
    key = {"weights_sha256": file_sha256(loaded.weights_file), "real": [str(r) for r in cfg.real],
           "fake": [str(f) for f in cfg.fake], "corruptions": [str(c) for c in corruptions],
           "thresholds": loaded.thresholds}
    metrics_file = out_dir / "metrics.json"
    if metrics_file.is_file() and not cfg.force:
        import json
        old = json.loads(metrics_file.read_text())
        if old.get("key") == key:
            return old, out_dir
    positions = distributed.shard(range(len(samples)), ctx)
    preds = predict(loaded.model, [samples[i] for i in positions], loaded.transform, corruptions,
                    cfg.batch_size, cfg.num_workers, device, progress and ctx.is_main,
                    desc=f"test {cfg.dataset_name}", fast=fast)
    preds = distributed.gather_predictions(preds, positions, samples, ctx)
    if len(np.unique(preds.labels)) < 2:
        first = "; ".join(f"{p}: {r}" for p, r in preds.skipped.skipped[:3])
        raise NoUsableImagesError(f"no usable images left in one class ({len(preds.skipped)} skipped, "
                                  f"e.g. {first})")
    result = {
        "name": loaded.name, "dataset": cfg.dataset_name, "partition": cfg.partition,
        "which_epoch": cfg.which_epoch, "corruptions": [str(c) for c in corruptions],
        "weights_epoch": loaded.meta.get("epoch"), "key": key,
        "metrics": preds.metrics(loaded.thresholds),
        "skipped": preds.skipped.as_list(),
    }
    if not ctx.is_main:
        return result, out_dir
    write_scores_csv(out_dir / "scores.csv", preds)
    plot_pr_curves(out_dir / "pr_curve.png", preds, title=f"{loaded.name} on {cfg.dataset_name}")
    fileio.write_json(metrics_file, result)
    return result, out_dir


def write_scores_csv(path: Path, preds: Predictions) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "label", *AGGREGATIONS])
    for i, p in enumerate(preds.paths):
        w.writerow([p, int(preds.labels[i]), *(f"{preds.scores[a][i]:.6f}" for a in AGGREGATIONS)])
    fileio.write_text(path, buf.getvalue())


def read_scores_csv(path: str | os.PathLike) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([int(r["label"]) for r in rows])
    return [r["path"] for r in rows], labels, {a: np.array([float(r[a]) for r in rows]) for a in AGGREGATIONS}


def plot_pr_curves(path: Path, preds: Predictions, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for agg in AGGREGATIONS:
        p, r, _ = precision_recall_curve(preds.labels, preds.scores[agg])
        ap = average_precision_score(preds.labels, preds.scores[agg])
        ax.plot(r, p, label=f"{agg} (AP {ap:.3f})")
    ax.set(xlabel="recall (real)", ylabel="precision (real)", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.title.set_fontsize(9)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fileio.save_figure(fig, path, dpi=100)
    plt.close(fig)
