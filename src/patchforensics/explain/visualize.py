"""``visualize``: heatmaps of the easiest and hardest images of each class.

For a checkpoint and a (real, fake) dataset, the images are ranked by their
``p(fake)`` (one of the aggregations ``vote``, ``before_softmax``,
``after_softmax``). For each class the ``topn`` *easiest* (most confidently
right) and *hardest* (most confidently wrong) images are drawn with their
per-patch ``p(fake)`` map. Output, next to ``test``'s results::

    results/<name>/<partition>/epoch_<which>/<dataset>/vis/
        index.html                      links to the four galleries
        average_heatmaps.png            the four group averages with a colour bar
        visualize.json                  options, scores and files of every group
        {reals,fakes}/{easiest,hardest}/
            index.html                  self-contained gallery (click, arrow keys)
            NNN_<stem>.png              the input as the model saw it
            NNN_<stem>_overlay.png      p(fake) map blended over it, green/red border, colour bar
            NNN_<stem>_heatmap.npy      the raw (H', W') p(fake) map, float32
            average_heatmap.png/.npy    mean map of the group

Colours are absolute and the same in every command: blue = the real side, white = the
decision threshold, red = the fake side (:mod:`~patchforensics.core.heatmap`), with a colour
bar on every heatmap.
Borders mark right/wrong at the card's calibrated ``eer`` threshold (0.5 when
uncalibrated). Rankings reuse ``test``'s ``scores.csv`` when it was made from the
same weights, corruptions and backend; otherwise the dataset is scored first.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..core import fileio
from ..core.config import require
from ..core.heatmap import COLORMAP, colorize, draw_border, norm, overlay, scale_text, with_colorbar
from ..core.imageio import SkipLog
from ..data.dataset import REAL, Sample
from ..data.transforms import Corruption, to_image
from ..evaluation.evaluate import SCORE_CONVENTION, TestConfig, read_scores_csv, same_runtime
from ..models.card import ModelCard
from ..scoring.engine import Engine
from ..scoring.metrics import AGGREGATIONS, image_p_fake
from .page import html_page
from .runs import CLASS_DIRS, GROUPS, open_explain_run, safe_stem, save_npy


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


def rank_images(labels: np.ndarray, p_fake: np.ndarray, label: int, topn: int) -> dict[str, np.ndarray]:
    """Indices of the ``topn`` easiest and hardest images of class ``label``.

    ``labels``, ``p_fake``: ``(N,)``. Easiest = most confidently right (lowest
    p(fake) for reals, highest for fakes), listed best first; hardest = most
    confidently wrong, worst first. Ties keep the input order.
    """
    idx = np.flatnonzero(np.asarray(labels) == label)
    confidence = -p_fake[idx] if label == REAL else p_fake[idx]
    order = idx[np.argsort(-confidence, kind="stable")]
    return {"easiest": order[:topn], "hardest": order[::-1][:topn]}


def decision_threshold(card: ModelCard) -> tuple[str, float]:
    """``(name, p(fake) cut)`` at which images are marked right or wrong: the card's default
    threshold (as ``detect`` and ``serve`` decide) when it has been calibrated, else 0.5."""
    return card.default_cut() or ("0.5", 0.5)


def _stored_scores(out_dir: Path, engine: Engine, samples: Sequence[Sample],
                   corruptions: Sequence[Corruption]) -> tuple[list[str], np.ndarray, dict] | None:
    """``test``'s p(fake) scores for these samples, if made from the same weights,
    corruptions, precision, backend and device under the current score convention."""
    metrics_file, scores_file = out_dir / "metrics.json", out_dir / "scores.csv"
    if not (metrics_file.is_file() and scores_file.is_file()):
        return None
    stored = json.loads(metrics_file.read_text())
    key = stored.get("key", {})
    if (engine.weights_file is None or key.get("weights_sha256") != fileio.file_sha256(engine.weights_file)
            or key.get("corruptions") != [str(c) for c in corruptions]
            or key.get("convention") != SCORE_CONVENTION or not same_runtime(key, engine)):
        return None
    scores = read_scores_csv(scores_file)
    if scores is None:
        return None
    skipped = {s["path"] for s in stored.get("skipped", [])}
    if set(scores[0]) | skipped != {s.path for s in samples}:
        return None
    return scores


# ---------------------------------------------------------------- visualize
def run_visualize(cfg: VisualizeConfig, engine: Engine | None = None, progress: bool = True) -> Path:
    """Write the easiest/hardest galleries of each class; returns the ``vis`` folder."""
    run = open_explain_run(cfg, engine, "visualize")
    corruptions, samples, engine = run.corruptions, run.samples, run.engine
    card = engine.card
    out_dir = run.out_dir
    vis_dir = out_dir / "vis"
    fileio.ensure_new_output(vis_dir, cfg.force)

    skipped = SkipLog()
    stored = _stored_scores(out_dir, engine, samples, corruptions)
    if stored is None:
        preds = engine.predict(samples, corruptions, cfg.batch_size, cfg.num_workers, progress,
                               desc=f"rank {cfg.dataset_name}")
        paths, labels = preds.paths, preds.labels
        p_fake = preds.p_fake(cfg.average_mode)
        skipped.skipped.extend(preds.skipped.skipped)
    else:
        paths, labels, scores = stored
        p_fake = scores[cfg.average_mode]
    threshold_name, cut = decision_threshold(card)
    scale = scale_text(cut, threshold_name if card.default_cut() else "no stored thresholds")

    # which groups (class, easiest/hardest) each selected image belongs to, with its rank
    members: dict[int, list[tuple[str, int]]] = {}
    for label, cls in CLASS_DIRS.items():
        for group, idx in rank_images(labels, p_fake, label, cfg.topn).items():
            for rank, i in enumerate(idx):
                members.setdefault(int(i), []).append((f"{cls}/{group}", rank))
    selected = sorted(members)
    by_path = {s.path: s for s in samples}
    chosen = [by_path[paths[i]] for i in selected]

    with fileio.atomic_dir(vis_dir, cfg.force) as tmp:
        entries: dict[str, list[dict]] = {f"{c}/{g}": [] for c in CLASS_DIRS.values() for g in GROUPS}
        sums: dict[str, np.ndarray] = {}
        for batch, logits in engine.batches(chosen, corruptions, cfg.batch_size, cfg.num_workers, skipped,
                                            progress, f"visualize {cfg.dataset_name}"):
            maps = card.p_fake(logits).numpy()
            batch_scores = image_p_fake(logits, cfg.average_mode)
            for j, sample_index in enumerate(batch["index"].tolist()):
                path, label = batch["paths"][j], int(batch["label"][j])
                score = float(batch_scores[j])
                correct = (score >= cut) == (label != REAL)
                image = to_image(batch["image"][j])
                heat = maps[j].astype(np.float32)
                framed = draw_border(overlay(image, heat, threshold=cut), correct, f"p(fake)={score:.3f}")
                framed = with_colorbar(framed, cut)
                for group, rank in members[selected[sample_index]]:
                    stem = f"{rank:03d}_{safe_stem(path)}"
                    folder = tmp / group
                    fileio.save_image(image, folder / f"{stem}.png")
                    fileio.save_image(framed, folder / f"{stem}_overlay.png")
                    save_npy(folder / f"{stem}_heatmap.npy", heat)
                    sums[group] = sums.get(group, 0) + heat
                    entries[group].append({"rank": rank, "path": path, "p_fake": score, "correct": bool(correct),
                                           "image": f"{stem}.png", "overlay": f"{stem}_overlay.png",
                                           "heatmap": f"{stem}_heatmap.npy"})
        averages = _write_groups(tmp, entries, sums, cfg, card, (threshold_name, cut, scale))
        plot_average_heatmaps(tmp / "average_heatmaps.png", averages, f"{card.name} on {cfg.dataset_name}", cut,
                              threshold_name)
        summary = {"name": card.name, "checkpoint": str(cfg.checkpoint), "which_epoch": cfg.which_epoch,
                   "dataset": cfg.dataset_name, "partition": cfg.partition,
                   "corruptions": [str(c) for c in corruptions], "average_mode": cfg.average_mode,
                   "score": "p_fake", "heatmap": scale, "backend": engine.backend,
                   "threshold": {"name": threshold_name, "p_fake": cut},
                   "topn": cfg.topn, "scores_from": "scores.csv" if stored else "predict",
                   "groups": entries, "skipped": skipped.as_list()}
        fileio.write_json(tmp / "visualize.json", summary)
        fileio.write_text(tmp / "index.html", overview_html(cfg, card.name, entries, scale))
    return vis_dir


def _write_groups(tmp: Path, entries: dict[str, list[dict]], sums: dict[str, np.ndarray], cfg: VisualizeConfig,
                  card: ModelCard, threshold: tuple[str, float, str]) -> dict[str, np.ndarray]:
    """Each group's average map (``.npy`` and picture) and gallery page; returns the averages.
    ``threshold``: its name, its p(fake) cut (the colour scale's centre) and the scale in words."""
    name, cut, scale = threshold
    averages = {}
    for group, items in entries.items():
        items.sort(key=lambda e: e["rank"])
        folder = tmp / group
        folder.mkdir(parents=True, exist_ok=True)
        if items:
            averages[group] = sums[group] / len(items)
            save_npy(folder / "average_heatmap.npy", averages[group].astype(np.float32))
            side = (card.input_side,) * 2
            fileio.save_image(with_colorbar(Image.fromarray(colorize(averages[group], side, cut)), cut),
                              folder / "average_heatmap.png")
        fileio.write_text(folder / "index.html", gallery_html(group, cfg, card.name, items, name, cut, scale))
    return averages


# ------------------------------------------------------------------ figures
def plot_average_heatmaps(path: Path, averages: dict[str, np.ndarray], title: str, cut: float = 0.5,
                          threshold_name: str = "0.5") -> None:
    """The group-average p(fake) maps side by side, on the one colour scale centred on ``cut``, with
    its bar (linear in p(fake), the threshold marked)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [f"{c}/{g}" for c in CLASS_DIRS.values() for g in GROUPS]
    fig, axes = plt.subplots(1, len(groups), figsize=(2.4 * len(groups) + 0.8, 2.7))
    im = None
    for ax, group in zip(axes, groups):
        ax.set_axis_off()
        if group in averages:
            im = ax.imshow(averages[group], cmap=COLORMAP, norm=norm(cut), interpolation="bilinear")
            ax.set_title(group, fontsize=10)
        else:
            ax.set_title(f"{group}\n(no images)", fontsize=10)
    if im is not None:
        bar = fig.colorbar(im, ax=list(axes), fraction=0.02, pad=0.02,
                           label=f"p(fake); white = threshold {threshold_name}")
        bar.ax.set_yscale("linear")        # as every other bar: linear in p(fake), not in colour
        bar.set_ticks([0, cut, 1], labels=["0 real", f"{cut:.3f}", "1 fake"])
    fig.suptitle(title, fontsize=10)
    fileio.save_figure(fig, path, dpi=72, bbox_inches="tight")
    plt.close(fig)


# -------------------------------------------------------------------- HTML
def gallery_html(group: str, cfg: VisualizeConfig, name: str, items: list[dict], threshold_name: str,
                 cut: float, scale: str) -> str:
    """One group's gallery: a card per image; click for input and overlay side by side."""
    cls, kind = group.split("/")
    what = ("most confidently right" if kind == "easiest" else "most confidently wrong")
    cards = []
    for e in items:
        verdict = '<span class="ok">right</span>' if e["correct"] else '<span class="wrong">wrong</span>'
        caption = f"#{e['rank'] + 1} {Path(e['path']).name}  p(fake)={e['p_fake']:.3f}"
        cards.append(
            f'<div class="card"><a class="pf-zoom" href="{html.escape(e["overlay"])}" '
            f'data-full="{html.escape(e["image"])}|{html.escape(e["overlay"])}" '
            f'data-caption="{html.escape(caption)}"><img src="{html.escape(e["overlay"])}" '
            f'alt="{html.escape(Path(e["path"]).name)}"></a>'
            f'<div class="caption">#{e["rank"] + 1} {verdict} p(fake)={e["p_fake"]:.3f}<br>'
            f'<span class="muted" title="{html.escape(e["path"])}">{html.escape(Path(e["path"]).name)}</span>'
            f"</div></div>")
    average = ('<figure><img class="pixel" src="average_heatmap.png" alt="average heatmap" width="192">'
               "<figcaption>average p(fake) map of this group</figcaption></figure>") if items else ""
    body = (f"<h1>{html.escape(cls)}: {html.escape(kind)}</h1>\n"
            f'<p class="meta">{html.escape(name)} on {html.escape(cfg.dataset_name)} ({html.escape(cfg.partition)}, '
            f"epoch {html.escape(str(cfg.which_epoch))}); the {len(items)} {what} {cls} by "
            f"{html.escape(cfg.average_mode)} p(fake). Heatmaps: {html.escape(scale)}. "
            "Border green = "
            f"right, red = wrong, called fake at p(fake) &ge; {cut:.4f} (threshold {html.escape(threshold_name)}). "
            f'Click an image to enlarge, arrow keys to step. <a href="../../index.html">all groups</a></p>\n'
            f'<div class="figs">{average}</div>\n<div class="grid">\n' + "\n".join(cards) + "\n</div>")
    return html_page(f"{cls} {kind} - {name} - {cfg.dataset_name}", body)


def overview_html(cfg: VisualizeConfig, name: str, entries: dict[str, list[dict]], scale: str) -> str:
    figs = []
    for group, items in entries.items():
        thumb = (f'<img class="pixel" src="{group}/average_heatmap.png" alt="{group} average" width="160">'
                 if items else "")
        figs.append(f'<figure><a href="{group}/index.html">{thumb}</a><figcaption><a href="{group}/index.html">'
                    f"{group}</a> ({len(items)} images)</figcaption></figure>")
    body = (f"<h1>Heatmaps: {html.escape(name)} on {html.escape(cfg.dataset_name)}</h1>\n"
            f'<p class="meta">Average per-patch p(fake) of each group ({html.escape(cfg.average_mode)} ranking; '
            f"{html.escape(scale)}); open a group for its images.</p>\n"
            '<div class="figs">' + "".join(figs) + "</div>\n"
            '<div class="figs"><figure><img src="average_heatmaps.png" alt="average heatmaps"></figure></div>')
    return html_page(f"heatmaps - {name} - {cfg.dataset_name}", body, with_lightbox=False)
