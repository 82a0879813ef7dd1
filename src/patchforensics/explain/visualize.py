"""``visualize``: heatmaps of the easiest and hardest images of each class.

For a checkpoint and a (real, fake) dataset, the images are ranked by their
``P(real)`` (one of the aggregations ``vote``, ``before_softmax``,
``after_softmax``). For each class the ``topn`` *easiest* (most confidently
right) and *hardest* (most confidently wrong) images are drawn with their
per-patch ``P(real)`` map. Output, next to ``test``'s results::

    results/<name>/<partition>/epoch_<which>/<dataset>/vis/
        index.html                      links to the four galleries
        average_heatmaps.png            the four group averages with a colour bar
        visualize.json                  options, scores and files of every group
        {reals,fakes}/{easiest,hardest}/
            index.html                  self-contained gallery (click, arrow keys)
            NNN_<stem>.png              the input as the model saw it
            NNN_<stem>_overlay.png      P(real) map blended over it, green/red border
            NNN_<stem>_heatmap.npy      the raw (H', W') P(real) map, float32
            average_heatmap.png/.npy    mean map of the group

Colours are absolute: blue = P(real) 0 (fake), red = 1 (real). Rankings reuse
``test``'s ``scores.csv`` when it was made from the same weights; otherwise
the dataset is scored first.
"""
from __future__ import annotations

import html
import io
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..core import fileio
from ..models.checkpoint import LoadedModel, load_model, read_config
from ..core.config import ConfigError, require
from ..data.dataset import FAKE, REAL, ImageDataset, Sample, collect_samples
from ..evaluation.evaluate import (TestConfig, file_sha256, make_loader, predict, read_scores_csv, resolve_device,
                       results_dir_for)
from ..core.heatmap import colorize, draw_border, overlay
from ..core.imageio import SkipLog
from ..scoring.metrics import AGGREGATIONS, aggregate, patch_probs
from ..models import is_patch_model
from ..data.transforms import Corruption, eval_transform, parse_corruptions, to_image

CLASS_DIRS = {REAL: "reals", FAKE: "fakes"}
GROUPS = ("easiest", "hardest")


# ------------------------------------------------------------ shared helpers
def require_patch_model(ckpt_dir: str, command: str) -> None:
    """Fail before any work when the checkpoint is a full-image model (no patch map)."""
    model = read_config(ckpt_dir)["model"]
    if not is_patch_model(model):
        raise ConfigError(f"checkpoint: {command} needs a patch model (e.g. xception_block2, "
                          f"resnet18_layer1, widenet_kw7_d1); {model} is a full-image model")


@dataclass
class ExplainRun:
    """What ``visualize`` and ``patches`` both set up before their own work."""
    corruptions: list[Corruption]
    samples: list[Sample]
    device: torch.device
    loaded: LoadedModel
    out_dir: Path          # results/<name>/<partition>/epoch_<which>/<dataset>[_<corruptions>]


def open_explain_run(cfg: TestConfig, loaded: LoadedModel | None, command: str) -> ExplainRun:
    """Validate ``cfg``, list its samples and load its patch model (unless given), all before any work."""
    cfg.validate()
    corruptions = parse_corruptions(cfg.corrupt)
    samples = collect_samples(cfg.real, cfg.fake, split=cfg.partition)
    device = resolve_device(cfg.device)
    if loaded is None:
        require_patch_model(cfg.checkpoint, command)
        loaded = load_model(cfg.checkpoint, cfg.which_epoch, device)
    out_dir = results_dir_for(cfg.results_dir, loaded.name, cfg.partition, cfg.which_epoch,
                              cfg.dataset_name, corruptions)
    return ExplainRun(corruptions, samples, device, loaded, out_dir)


def logit_batches(loaded: LoadedModel, samples: Sequence[Sample], corruptions: Sequence[Corruption],
                  batch_size: int, num_workers: int, device: torch.device, skipped: SkipLog,
                  progress: bool, desc: str) -> Iterator[tuple[dict, torch.Tensor]]:
    """Yield ``(batch, logits)`` over ``samples`` through the checkpoint's evaluation transform.

    ``batch`` is :func:`patchforensics.data.collate`'s dict (``image`` ``(B, 3, S, S)``
    in [-1, 1], ``label``, ``index`` into ``samples``, ``paths``); ``logits`` is
    ``(B, 2, H', W')`` float on the CPU. Unreadable files go to ``skipped``.
    """
    loader = make_loader(ImageDataset(samples, eval_transform(loaded.transform, corruptions)),
                         batch_size, num_workers)
    loaded.model.eval()
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, disable=not progress, unit="batch", leave=False):
            skipped.skipped.extend(batch["errors"])
            if batch["image"] is None:
                continue
            yield batch, loaded.model(batch["image"].to(device)).float().cpu()


def image_array(tensor: torch.Tensor) -> np.ndarray:
    """``(3, S, S)`` tensor in [-1, 1] -> ``(S, S, 3)`` uint8 (exact inverse of ``to_tensor``)."""
    return np.asarray(to_image(tensor))


def save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    fileio.write_bytes(path, buf.getvalue())


def read_asset(name: str) -> str:
    return resources.files("patchforensics").joinpath("assets", name).read_text(encoding="utf-8")


def html_page(title: str, body: str, with_lightbox: bool = True) -> str:
    """A complete HTML page with the shared CSS (and lightbox script) inlined: no
    external requests, so it works from the file system and offline."""
    script = f"<script>\n{read_asset('gallery.js')}</script>\n" if with_lightbox else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>\n{read_asset('explain.css')}</style>\n"
            f"</head>\n<body>\n{body}\n{script}</body>\n</html>\n")


def safe_stem(path: str, limit: int = 60) -> str:
    """A file-name-safe version of ``path``'s stem."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:limit] or "image"


# ------------------------------------------------------------------ config
@dataclass
class VisualizeConfig(TestConfig):
    """Options of ``patchforensics visualize`` (those of ``test`` plus ranking)."""

    topn: int = 100
    average_mode: str = "after_softmax"

    def validate(self) -> None:
        super().validate()
        require(self.topn > 0, "topn", "must be > 0")
        require(self.average_mode in AGGREGATIONS, "average_mode",
                f"choose one of {', '.join(AGGREGATIONS)}")


def rank_images(labels: np.ndarray, p_real: np.ndarray, label: int, topn: int) -> dict[str, np.ndarray]:
    """Indices of the ``topn`` easiest and hardest images of class ``label``.

    ``labels``, ``p_real``: ``(N,)``. Easiest = most confidently right (highest
    P(real) for reals, lowest for fakes), listed best first; hardest = most
    confidently wrong, worst first. Ties keep the input order.
    """
    idx = np.flatnonzero(np.asarray(labels) == label)
    confidence = p_real[idx] if label == REAL else -p_real[idx]
    order = idx[np.argsort(-confidence, kind="stable")]
    return {"easiest": order[:topn], "hardest": order[::-1][:topn]}


def _stored_scores(out_dir: Path, loaded: LoadedModel, samples: Sequence[Sample],
                   corruptions: Sequence[Corruption]) -> tuple[list[str], np.ndarray, dict] | None:
    """``test``'s scores for these samples, if made from the same weights and corruptions."""
    metrics_file, scores_file = out_dir / "metrics.json", out_dir / "scores.csv"
    if not (metrics_file.is_file() and scores_file.is_file()):
        return None
    stored = json.loads(metrics_file.read_text())
    key = stored.get("key", {})
    if (loaded.weights_file is None or key.get("weights_sha256") != file_sha256(loaded.weights_file)
            or key.get("corruptions") != [str(c) for c in corruptions]):
        return None
    paths, labels, scores = read_scores_csv(scores_file)
    skipped = {s["path"] for s in stored.get("skipped", [])}
    if set(paths) | skipped != {s.path for s in samples}:
        return None
    return paths, labels, scores


# ---------------------------------------------------------------- visualize
def run_visualize(cfg: VisualizeConfig, loaded: LoadedModel | None = None, progress: bool = True) -> Path:
    """Write the easiest/hardest galleries of each class; returns the ``vis`` folder."""
    run = open_explain_run(cfg, loaded, "visualize")
    corruptions, samples, device, loaded = run.corruptions, run.samples, run.device, run.loaded
    out_dir = run.out_dir
    vis_dir = out_dir / "vis"
    fileio.ensure_new_output(vis_dir, cfg.force)

    skipped = SkipLog()
    stored = _stored_scores(out_dir, loaded, samples, corruptions)
    if stored is None:
        preds = predict(loaded.model, samples, loaded.transform, corruptions, cfg.batch_size,
                        cfg.num_workers, device, progress, desc=f"rank {cfg.dataset_name}")
        paths, labels, scores = preds.paths, preds.labels, preds.scores
        skipped.skipped.extend(preds.skipped.skipped)
    else:
        paths, labels, scores = stored
    p_real = scores[cfg.average_mode]

    # which groups (class, easiest/hardest) each selected image belongs to, with its rank
    members: dict[int, list[tuple[str, int]]] = {}
    for label, cls in CLASS_DIRS.items():
        for group, idx in rank_images(labels, p_real, label, cfg.topn).items():
            for rank, i in enumerate(idx):
                members.setdefault(int(i), []).append((f"{cls}/{group}", rank))
    selected = sorted(members)
    by_path = {s.path: s for s in samples}
    chosen = [by_path[paths[i]] for i in selected]

    with fileio.atomic_dir(vis_dir, cfg.force) as tmp:
        entries: dict[str, list[dict]] = {f"{c}/{g}": [] for c in CLASS_DIRS.values() for g in GROUPS}
        sums: dict[str, np.ndarray] = {}
        for batch, logits in logit_batches(loaded, chosen, corruptions, cfg.batch_size, cfg.num_workers,
                                           device, skipped, progress, f"visualize {cfg.dataset_name}"):
            maps = patch_probs(logits).numpy()
            batch_scores = aggregate(logits)[cfg.average_mode].numpy()
            for j, sample_index in enumerate(batch["index"].tolist()):
                path, label = batch["paths"][j], int(batch["label"][j])
                score = float(batch_scores[j])
                correct = (score > 0.5) == (label == REAL)   # 0.5 counts as fake, as in the metrics
                image = to_image(batch["image"][j])
                heat = maps[j].astype(np.float32)
                framed = draw_border(overlay(image, heat), correct, f"p(real)={score:.3f}")
                for group, rank in members[selected[sample_index]]:
                    stem = f"{rank:03d}_{safe_stem(path)}"
                    folder = tmp / group
                    fileio.save_image(image, folder / f"{stem}.png")
                    fileio.save_image(framed, folder / f"{stem}_overlay.png")
                    save_npy(folder / f"{stem}_heatmap.npy", heat)
                    sums[group] = sums.get(group, 0) + heat
                    entries[group].append({"rank": rank, "path": path, "p_real": score, "correct": bool(correct),
                                           "image": f"{stem}.png", "overlay": f"{stem}_overlay.png",
                                           "heatmap": f"{stem}_heatmap.npy"})
        averages = {}
        for group, items in entries.items():
            items.sort(key=lambda e: e["rank"])
            folder = tmp / group
            folder.mkdir(parents=True, exist_ok=True)
            if items:
                averages[group] = sums[group] / len(items)
                save_npy(folder / "average_heatmap.npy", averages[group].astype(np.float32))
                size = loaded.transform.load_size
                fileio.save_image(Image.fromarray(colorize(averages[group], (size, size))),
                                  folder / "average_heatmap.png")
            fileio.write_text(folder / "index.html", gallery_html(group, cfg, loaded.name, items))
        plot_average_heatmaps(tmp / "average_heatmaps.png", averages, f"{loaded.name} on {cfg.dataset_name}")
        summary = {"name": loaded.name, "checkpoint": str(cfg.checkpoint), "which_epoch": cfg.which_epoch,
                   "dataset": cfg.dataset_name, "partition": cfg.partition,
                   "corruptions": [str(c) for c in corruptions], "average_mode": cfg.average_mode,
                   "topn": cfg.topn, "scores_from": "scores.csv" if stored else "predict",
                   "groups": entries, "skipped": skipped.as_list()}
        fileio.write_json(tmp / "visualize.json", summary)
        fileio.write_text(tmp / "index.html", overview_html(cfg, loaded.name, entries))
    return vis_dir


# ------------------------------------------------------------------ figures
def plot_average_heatmaps(path: Path, averages: dict[str, np.ndarray], title: str) -> None:
    """The group-average P(real) maps side by side, on one absolute colour scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [f"{c}/{g}" for c in CLASS_DIRS.values() for g in GROUPS]
    fig, axes = plt.subplots(1, len(groups), figsize=(2.4 * len(groups) + 0.8, 2.7))
    im = None
    for ax, group in zip(axes, groups):
        ax.set_axis_off()
        if group in averages:
            im = ax.imshow(averages[group], cmap="jet", vmin=0, vmax=1, interpolation="bilinear")
            ax.set_title(group, fontsize=10)
        else:
            ax.set_title(f"{group}\n(no images)", fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=list(axes), fraction=0.02, pad=0.02, label="P(real)")
    fig.suptitle(title, fontsize=10)
    fileio.save_figure(fig, path, dpi=72, bbox_inches="tight")
    plt.close(fig)


# -------------------------------------------------------------------- HTML
def gallery_html(group: str, cfg: VisualizeConfig, name: str, items: list[dict]) -> str:
    """One group's gallery: a card per image; click for input and overlay side by side."""
    cls, kind = group.split("/")
    what = ("most confidently right" if kind == "easiest" else "most confidently wrong")
    cards = []
    for e in items:
        verdict = '<span class="ok">right</span>' if e["correct"] else '<span class="wrong">wrong</span>'
        caption = f"#{e['rank'] + 1} {Path(e['path']).name}  p(real)={e['p_real']:.3f}"
        cards.append(
            f'<div class="card"><a class="pf-zoom" href="{html.escape(e["overlay"])}" '
            f'data-full="{html.escape(e["image"])}|{html.escape(e["overlay"])}" '
            f'data-caption="{html.escape(caption)}"><img src="{html.escape(e["overlay"])}" '
            f'alt="{html.escape(Path(e["path"]).name)}"></a>'
            f'<div class="caption">#{e["rank"] + 1} {verdict} p(real)={e["p_real"]:.3f}<br>'
            f'<span class="muted" title="{html.escape(e["path"])}">{html.escape(Path(e["path"]).name)}</span>'
            f"</div></div>")
    average = ('<figure><img class="pixel" src="average_heatmap.png" alt="average heatmap" width="192">'
               "<figcaption>average P(real) map of this group</figcaption></figure>") if items else ""
    body = (f"<h1>{html.escape(cls)}: {html.escape(kind)}</h1>\n"
            f'<p class="meta">{html.escape(name)} on {html.escape(cfg.dataset_name)} ({html.escape(cfg.partition)}, '
            f"epoch {html.escape(str(cfg.which_epoch))}); the {len(items)} {what} {cls} by "
            f"{html.escape(cfg.average_mode)} P(real). Blue = fake, red = real; border green = right, red = "
            f'wrong. Click an image to enlarge, arrow keys to step. <a href="../../index.html">all groups</a></p>\n'
            f'<div class="figs">{average}</div>\n<div class="grid">\n' + "\n".join(cards) + "\n</div>")
    return html_page(f"{cls} {kind} - {name} - {cfg.dataset_name}", body)


def overview_html(cfg: VisualizeConfig, name: str, entries: dict[str, list[dict]]) -> str:
    figs = []
    for group, items in entries.items():
        thumb = (f'<img class="pixel" src="{group}/average_heatmap.png" alt="{group} average" width="160">'
                 if items else "")
        figs.append(f'<figure><a href="{group}/index.html">{thumb}</a><figcaption><a href="{group}/index.html">'
                    f"{group}</a> ({len(items)} images)</figcaption></figure>")
    body = (f"<h1>Heatmaps: {html.escape(name)} on {html.escape(cfg.dataset_name)}</h1>\n"
            f'<p class="meta">Average per-patch P(real) of each group ({html.escape(cfg.average_mode)} ranking); '
            f"open a group for its images.</p>\n"
            '<div class="figs">' + "".join(figs) + "</div>\n"
            '<div class="figs"><figure><img src="average_heatmaps.png" alt="average heatmaps"></figure></div>')
    return html_page(f"heatmaps - {name} - {cfg.dataset_name}", body, with_lightbox=False)
