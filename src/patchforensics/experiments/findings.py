"""What finished cells show: one long table, summary tables and figures, drawn from table rows.

The rows are those of the findings tables (:mod:`.results_tables`: ``cells.csv``, ``curves.csv``,
``regions.csv``), read from the committed files or built from a run's cell records, so the
same figures come out of a fresh clone with no checkpoint and no data. Written into one
folder, which ``report`` finds when it is ``results/experiment-<grid>/`` and
``patchforensics findings`` writes under ``<findings>/generated/<grid>/``::

    table.csv, table.md      the rows (cell × test set × corruption × aggregation)
    ap_vs_rf.png             AP and ROC-AUC against receptive field, mean ± sd over seeds, one line
                             per test set (one training set, several models)
    cross_generator.png      AP per train set × test set, per model (several training sets)
    curves.png               validation AP per epoch, mean over seeds, per model
    regions.png              fakes' top patches vs random patches per face region, per test set
    tables.md                the summary tables in Markdown, each under a ``<!-- table: ID -->`` line
    experiment.json          all of the above for the report

Summary figures and tables use the ``after_softmax`` aggregation (the seed's default) and AP
with the fakes as the positive class; the long table has every aggregation and both APs.
± is the sample standard deviation over seeds; [lo, hi] is the 95% bootstrap interval over
the test images of one seed's number (stratified percentile bootstrap, ``scoring.metrics.
bootstrap_ci``), averaged over the seeds: how far the test set alone could move it. A test
set's fakes are ``seen`` (the training folder), ``other-source`` (the same generator from
another source, claim d) or ``unseen`` (another generator); "unseen" means only the last.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..core import fileio
from ..core.config import from_dict, load_yaml_file, to_dict
from ..evaluation.suite import suite_path
from ..training.train import TrainConfig
from .grid import bundled_grids, grid_path
from .results_tables import CELL_COLUMNS, TABLES, FindingsTables, crop_text

AGGREGATION = "after_softmax"
_CLEAN = "none"
_NUMBERS = ("ap", "ap_lo", "ap_hi", "ap_real_positive", "roc_auc", "roc_auc_lo", "roc_auc_hi", "acc", "real_acc",
            "fake_acc", "best_val", "train_minutes", "top_share", "random_share", "val", "val_ap_vote",
            "val_ap_before_softmax", "val_ap_after_softmax", "lr", "train_loss", "seconds")
_INTEGERS = ("seed", "epochs", "load_size", "n", "best_epoch", "epoch", "top", "random", "assigned")


def typed(row: dict[str, Any]) -> dict[str, Any]:
    """A table row with numbers as numbers (rows read from CSV are strings); ``field`` stays
    ``"full"`` for a full-image model."""
    out = dict(row)
    for key in _NUMBERS:
        if key in out:
            out[key] = float(out[key]) if out[key] not in ("", None) else float("nan")
    for key in _INTEGERS:
        if key in out and out[key] not in ("", None):
            out[key] = int(float(out[key]))
    if "field" in out and out["field"] != "full":
        out["field"] = int(out["field"])
    return out


@dataclass(frozen=True)
class Stat:
    """Mean and sample sd over seeds, the seed count, and the mean of the seeds' 95% bootstrap bounds."""

    mean: float
    sd: float
    n: int
    lo: float = float("nan")
    hi: float = float("nan")

    def text(self, interval: bool = False) -> str:
        out = f"{self.mean:.3f} ± {self.sd:.3f}" if self.n > 1 else f"{self.mean:.3f}"
        if interval and self.lo == self.lo:
            out += f" [{self.lo:.2f}, {self.hi:.2f}]"
        return out


def stat(values: list[float], lows: list[float] | None = None, highs: list[float] | None = None) -> Stat:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    lo = statistics.fmean(lows) if lows and all(v == v for v in lows) else float("nan")
    hi = statistics.fmean(highs) if highs and all(v == v for v in highs) else float("nan")
    return Stat(statistics.fmean(values), sd, len(values), lo, hi)


def fmt(s: Stat | None, interval: bool = False) -> str:
    return "–" if s is None else s.text(interval)


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def _family(model: str) -> str:
    return model.split("_")[0]


def field_text(row: dict) -> str:
    """``43``, ``187 (> image)`` where the field is wider than the image, or ``full``."""
    if row["field"] == "full":
        return "full"
    return f"{row['field']} (> image)" if row["field"] > row["load_size"] else str(row["field"])


def _summary_rows(rows: list[dict], corruption: str = _CLEAN) -> list[dict]:
    return [r for r in rows if r["aggregation"] == AGGREGATION and r["corruption"] == corruption]


def pooled(rows: list[dict], metric: str, corruption: str = _CLEAN) -> dict[tuple, Stat]:
    """``(model, train_fakes, test_set) -> Stat`` of ``metric`` (``ap`` or ``roc_auc`` carry intervals)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in _summary_rows(rows, corruption):
        groups[(r["model"], r["train_fakes"], r["test_set"])].append(r)
    return {k: stat([r[metric] for r in v], [r.get(f"{metric}_lo", float("nan")) for r in v],
                    [r.get(f"{metric}_hi", float("nan")) for r in v]) for k, v in groups.items()}


def _model_order(rows: list[dict]) -> list[str]:
    """Models by family, then receptive field (full-image model last)."""
    size = {r["model"]: r["field"] for r in rows}
    return sorted(_ordered(r["model"] for r in rows),
                  key=lambda m: (_family(m), size[m] == "full", size[m] if size[m] != "full" else 0))


def relation_mean(rows: list[dict], model: str, train_fakes: str, relation: str, metric: str = "ap",
                  corruption: str = _CLEAN) -> Stat | None:
    """Per seed the mean of ``metric`` over the test sets of one ``relation`` (seen, other-source,
    unseen), then mean ± sd over seeds."""
    per_seed: dict[int, list[float]] = defaultdict(list)
    for r in _summary_rows(rows, corruption):
        if r["model"] == model and r["train_fakes"] == train_fakes and r["relation"] == relation:
            per_seed[r["seed"]].append(r[metric])
    return stat([statistics.fmean(v) for v in per_seed.values()]) if per_seed else None


# ----------------------------------------------------------------- tables
def _md(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def rf_table(rows: list[dict], train_fakes: str, corruption: str) -> dict:
    """AP (mean ± sd over seeds [95% interval]) per model and its field × test set."""
    ap = pooled(rows, "ap", corruption)
    datasets = _ordered(r["test_set"] for r in rows)
    field = {r["model"]: field_text(r) for r in rows}
    out = [[m, field[m], ap[(m, train_fakes, datasets[0])].n]
           + [fmt(ap.get((m, train_fakes, d)), interval=True) for d in datasets]
           for m in _model_order(rows) if (m, train_fakes, datasets[0]) in ap]
    return {"id": f"rf-{train_fakes}-{corruption}",
            "title": f"AP ({AGGREGATION}) against receptive field; trained on {train_fakes}, test corruption "
                     f"{corruption}; mean ± sd over seeds [95% bootstrap interval over the test images]",
            "columns": ["model", "field (px)", "seeds", *datasets], "rows": out}


def auc_table(rows: list[dict], train_fakes: str) -> dict:
    """ROC-AUC (clean) per model × test set."""
    auc = pooled(rows, "roc_auc")
    datasets = _ordered(r["test_set"] for r in rows)
    field = {r["model"]: field_text(r) for r in rows}
    out = [[m, field[m]] + [fmt(auc.get((m, train_fakes, d)), interval=True) for d in datasets]
           for m in _model_order(rows) if (m, train_fakes, datasets[0]) in auc]
    return {"id": f"auc-{train_fakes}", "title": f"ROC-AUC ({AGGREGATION}, clean); trained on {train_fakes}; "
                                                 "mean ± sd over seeds [95% bootstrap interval]",
            "columns": ["model", "field (px)", *datasets], "rows": out}


def _mark(relation: str) -> str:
    return {"seen": " (seen)", "other-source": " (other source)"}.get(relation, "")


def cross_table(rows: list[dict], model: str) -> dict:
    """AP per train fake set (rows) × test set (columns) for one model, plus the mean over unseen sets."""
    ap = pooled(rows, "ap")
    datasets = _ordered(r["test_set"] for r in rows)
    relation = {(r["train_fakes"], r["test_set"]): r["relation"] for r in rows}
    out = []
    for fakes in _ordered(r["train_fakes"] for r in rows):
        if (model, fakes, datasets[0]) not in ap:
            continue
        out.append([fakes, ap[(model, fakes, datasets[0])].n]
                   + [fmt(ap.get((model, fakes, d))) + _mark(relation.get((fakes, d), "")) for d in datasets]
                   + [fmt(relation_mean(rows, model, fakes, "unseen"))])
    return {"id": f"cross-{model}", "title": f"{model}: AP ({AGGREGATION}, clean) per training fake set × test "
                                              "set; mean ± sd over seeds; (seen) = the training folder, (other "
                                              "source) = its generator from another source",
            "columns": ["trained on", "seeds", *datasets, "mean unseen"], "rows": out}


def patch_vs_full_table(rows: list[dict]) -> dict | None:
    """Claim (a): mean AP on unseen generators of every model, per training set and corruption."""
    if not any(r["field"] == "full" for r in rows) or all(r["field"] == "full" for r in rows):
        return None
    fakes = _ordered(r["train_fakes"] for r in rows)
    corruptions = _ordered(r["corruption"] for r in rows)
    out = []
    for m in _model_order(rows):
        row = next(r for r in rows if r["model"] == m)
        out.append([m, field_text(row)]
                   + [f"{fmt(relation_mean(rows, m, f, 'unseen', 'ap', c))} "
                      f"(seen {fmt(relation_mean(rows, m, f, 'seen', 'ap', c))})"
                      for f in fakes for c in corruptions])
    return {"id": "patch-vs-full", "title": f"mean AP ({AGGREGATION}) over the test sets of generators not trained "
                                            "on (in brackets: over the training folder), mean ± sd over seeds",
            "columns": ["model", "field (px)"] + [f"trained on {f}, {c}" for f in fakes for c in corruptions],
            "rows": out}


def source_table(rows: list[dict]) -> dict | None:
    """Claim (d): the same generator from another source, against the training source, per model."""
    pairs = _ordered((r["model"], r["train_fakes"]) for r in _summary_rows(rows) if r["relation"] == "other-source")
    if not pairs:
        return None
    ap, auc = pooled(rows, "ap"), pooled(rows, "roc_auc")
    out = []
    for model, fakes in sorted(pairs, key=lambda p: (p[1], _model_order(rows).index(p[0]))):
        clean = [r for r in _summary_rows(rows) if r["model"] == model and r["train_fakes"] == fakes]
        seen = next((r["test_set"] for r in clean if r["relation"] == "seen"), None)
        other = next(r["test_set"] for r in clean if r["relation"] == "other-source")
        drops = defaultdict(dict)
        for r in clean:
            if r["test_set"] in (seen, other):
                drops[r["seed"]][r["test_set"]] = r["ap"]
        drop = stat([d[seen] - d[other] for d in drops.values() if seen in d and other in d]) if seen else None
        out.append([model, field_text(clean[0]), fakes, ap[(model, fakes, other)].n,
                    f"{seen}: {fmt(ap.get((model, fakes, seen)), True)}" if seen else "–",
                    f"{other}: {fmt(ap[(model, fakes, other)], True)}", fmt(drop),
                    fmt(auc.get((model, fakes, seen))) if seen else "–", fmt(auc[(model, fakes, other)])])
    return {"id": "source", "title": f"the same generator from another source (claim d): AP ({AGGREGATION}, clean) "
                                     "on the training source and on the other one, mean ± sd over seeds [95% "
                                     "bootstrap interval]; drop = seen − other source, per seed",
            "columns": ["model", "field (px)", "trained on", "seeds", "AP, training source", "AP, other source",
                        "drop", "ROC-AUC, training source", "ROC-AUC, other source"], "rows": out}


def length_table(rows: list[dict]) -> dict | None:
    """The length check: a model trained at several lengths, seen / other-source / unseen AP per length."""
    lengths = defaultdict(set)
    for r in rows:
        lengths[(r["model"], r["train_fakes"])].add(r["epochs"])
    groups = [g for g, e in lengths.items() if len(e) > 1]
    if not groups:
        return None
    out = []
    for model, fakes in groups:
        for epochs in sorted(lengths[(model, fakes)]):
            part = [r for r in rows if r["model"] == model and r["train_fakes"] == fakes and r["epochs"] == epochs]
            out.append([model, fakes, epochs, len({r["seed"] for r in part})]
                       + [fmt(relation_mean(part, model, fakes, rel)) for rel in ("seen", "other-source", "unseen")])
    return {"id": "length", "title": f"training length check: AP ({AGGREGATION}, clean) of one model at each length, "
                                     "mean over the test sets of each kind, mean ± sd over seeds",
            "columns": ["model", "trained on", "epochs", "seeds", "seen", "other source", "unseen"], "rows": out}


def regions_summary(region_rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """``test set -> region -> {top, random, top_sd, patches, cells}``: the fakes' shares, mean over cells."""
    shares: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    assigned: dict[str, dict[str, int]] = defaultdict(dict)
    for r in region_rows:
        if r["class"] != "fakes":
            continue
        shares[r["test_set"]][r["region"]]["top"].append(r["top_share"])
        shares[r["test_set"]][r["region"]]["random"].append(r["random_share"])
        assigned[r["test_set"]][r["key"]] = r["assigned"]
    return {d: {reg: {"top": statistics.fmean(v["top"]), "random": statistics.fmean(v["random"]),
                      "top_sd": statistics.stdev(v["top"]) if len(v["top"]) > 1 else 0.0,
                      "patches": sum(assigned[d].values()), "cells": len(assigned[d])} for reg, v in regs.items()}
            for d, regs in shares.items()}


def regions_table(summary: dict) -> dict:
    datasets = list(summary)
    regions = _ordered(r for d in datasets for r in summary[d])
    out = [[reg] + [f"{summary[d][reg]['top']:.1%} / {summary[d][reg]['random']:.1%}" if reg in summary[d] else "–"
                    for d in datasets] for reg in regions]
    cells = {d: next(iter(summary[d].values()))["cells"] for d in datasets}
    return {"id": "regions", "title": "fakes: share of the most fake-looking patches (one per image) per face "
                                      "region / share of random patches in the same images; mean over "
                                      + ", ".join(f"{d}: {cells[d]} cells" for d in datasets),
            "columns": ["region", *datasets], "rows": out}


# ---------------------------------------------------------------- figures
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_ap_vs_rf(path: Path, rows: list[dict], train_fakes: str) -> None:
    """AP and ROC-AUC against receptive field, one panel per model family × corruption, one line per test
    set; error bars: sd over seeds."""
    plt = _plt()
    families = _ordered(_family(m) for m in _model_order(rows))
    corruptions = _ordered(r["corruption"] for r in rows)
    datasets = _ordered(r["test_set"] for r in rows)
    metrics = (("ap", "AP"), ("roc_auc", "ROC-AUC"))
    fig, axes = plt.subplots(len(families) * 2, len(corruptions), squeeze=False,
                             figsize=(4.3 * len(corruptions), 2.9 * 2 * len(families)))
    colors = plt.get_cmap("tab10")
    first = {r["model"]: r for r in reversed(rows)}

    def tick(model: str, family: str) -> str:
        r = first[model]
        if r["field"] == "full":
            return "full\n(whole image)"
        wider = "\n(> image)" if r["field"] > r["load_size"] else ""
        return f"{model.removeprefix(family + '_')}\n{r['field']} px{wider}"

    for fi, fam in enumerate(families):
        models = [m for m in _model_order(rows) if _family(m) == fam]
        x = np.arange(len(models))
        ticks = [tick(m, fam) for m in models]
        for mi, (metric, mname) in enumerate(metrics):
            for ci, corr in enumerate(corruptions):
                ax = axes[fi * 2 + mi, ci]
                stats = pooled(rows, metric, corr)
                for di, d in enumerate(datasets):
                    pts = [stats.get((m, train_fakes, d)) for m in models]
                    if not any(pts):
                        continue
                    ax.errorbar(x, [p.mean if p else np.nan for p in pts], yerr=[p.sd if p else np.nan for p in pts],
                                marker="o", ms=3.5, capsize=3, lw=1.3, color=colors(di), label=d)
                ax.set_xticks(x, ticks, fontsize=7)
                ax.set_ylabel(mname, fontsize=8)
                ax.set_title(f"{fam}, test {corr}", fontsize=9)
                ax.grid(alpha=0.3)
                ax.tick_params(axis="y", labelsize=7)
                if fi == 0 and mi == 0 and ci == 0:
                    ax.legend(fontsize=7)
    n_seeds = max(s.n for s in pooled(rows, "ap").values())
    fig.suptitle(f"trained on {train_fakes}: {AGGREGATION} AP / ROC-AUC against receptive field, "
                 f"mean ± sd over {n_seeds} seeds", fontsize=9, wrap=True)
    fig.tight_layout()
    fileio.save_figure(fig, path, dpi=90)
    plt.close(fig)


def plot_cross(path: Path, rows: list[dict]) -> None:
    """AP per train set × test set as heatmaps, one panel per model."""
    plt = _plt()
    models = _model_order(rows)
    fakes = _ordered(r["train_fakes"] for r in rows)
    datasets = _ordered(r["test_set"] for r in rows)
    ap = pooled(rows, "ap")
    fig, axes = plt.subplots(1, len(models), squeeze=False, figsize=(1.0 + 1.25 * len(datasets) * len(models),
                                                                     1.2 + 0.55 * len(fakes)))
    im = None
    for ax, m in zip(axes[0], models):
        grid = np.array([[ap[(m, f, d)].mean if (m, f, d) in ap else np.nan for d in datasets] for f in fakes])
        im = ax.imshow(grid, vmin=0.5, vmax=1.0, cmap="viridis")
        for i, f in enumerate(fakes):
            for j, d in enumerate(datasets):
                s = ap.get((m, f, d))
                if s:
                    ax.text(j, i, f"{s.mean:.2f}\n±{s.sd:.2f}", ha="center", va="center", fontsize=6.5,
                            color="white" if s.mean < 0.8 else "black")
        ax.set_xticks(range(len(datasets)), datasets, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(fakes)), fakes if ax is axes[0][0] else [""] * len(fakes), fontsize=7)
        ax.set_title(m, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="AP")
    fig.suptitle(f"AP ({AGGREGATION}, clean): trained on (rows) × tested on (columns)", fontsize=9, y=1.04)
    fileio.save_figure(fig, path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def plot_curves(path: Path, curves: list[dict]) -> None:
    """Validation AP (``after_softmax``) per epoch, mean over seeds, one line per model; one panel per
    training set × length."""
    plt = _plt()
    panels = _ordered((r["train_fakes"], r["epochs"]) for r in curves)
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(4.2 * len(panels), 3.2))
    colors = plt.get_cmap("tab10")
    # one colour per model across all panels, so a model is the same line in each
    color_of = {model: colors(i % 10) for i, model in enumerate(_ordered(r["model"] for r in curves))}
    for ax, (fakes, epochs) in zip(axes[0], panels):
        part = [r for r in curves if r["train_fakes"] == fakes and r["epochs"] == epochs]
        for model in _ordered(r["model"] for r in part):
            by_epoch = defaultdict(list)
            for r in part:
                if r["model"] == model:
                    by_epoch[r["epoch"]].append(r["val_ap_after_softmax"])
            xs = sorted(by_epoch)
            ax.plot(xs, [statistics.fmean(by_epoch[x]) for x in xs], lw=1.2, marker="o", ms=2.5,
                    color=color_of[model], label=model)
        ax.set(xlabel="epoch", ylabel=f"validation AP ({AGGREGATION})")
        ax.set_title(f"trained on {fakes}, {epochs} epochs", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5)
    fig.tight_layout()
    fileio.save_figure(fig, path, dpi=90)
    plt.close(fig)


def plot_regions(path: Path, summary: dict) -> None:
    """Per test set: the fakes' top-patch share per region next to the random patches' share."""
    plt = _plt()
    datasets = list(summary)
    fig, axes = plt.subplots(1, len(datasets), squeeze=False, figsize=(3.6 * len(datasets), 3.2), sharey=True)
    for ax, d in zip(axes[0], datasets):
        regs = sorted(summary[d], key=lambda r: -summary[d][r]["top"])
        x = np.arange(len(regs))
        ax.bar(x - 0.2, [summary[d][r]["top"] for r in regs], 0.4, yerr=[summary[d][r]["top_sd"] for r in regs],
               label="top patches", color="#d95f02", capsize=2)
        ax.bar(x + 0.2, [summary[d][r]["random"] for r in regs], 0.4, label="random patches", color="#7570b3")
        ax.set_xticks(x, regs, rotation=45, ha="right", fontsize=7)
        cells = next(iter(summary[d].values()))["cells"]
        ax.set_title(f"fakes of {d} ({cells} cells)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    axes[0][0].set_ylabel("share of patches")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fileio.save_figure(fig, path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------ write
def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_findings(name: str, rows: dict[str, list[dict]], out_dir: Path, info: dict | None = None) -> Path:
    """Write the long table, the summary tables and figures and ``experiment.json`` of ``rows``
    (``{"cells": …, "curves": …, "regions": …}``, table rows) into ``out_dir``, replaced as a
    whole: it is derived from the rows, which stay where they are."""
    with fileio.atomic_dir(out_dir, force=True) as tmp:
        _write_findings(name, {t: [typed(r) for r in part] for t, part in rows.items()}, tmp, info or {})
    return out_dir


def _write_findings(name: str, rows: dict[str, list[dict]], out_dir: Path, info: dict) -> None:
    cells = rows["cells"]
    tables, figures = [], []
    fileio.write_text(out_dir / "table.csv", _csv(rows["cells"], list(CELL_COLUMNS)))
    long_columns = ["model", "field", "train_fakes", "seed", "epochs", "crop", "test_set", "relation", "corruption",
                    "aggregation", "n", "ap", "ap_lo", "ap_hi", "roc_auc", "ap_real_positive", "device"]
    fileio.write_text(out_dir / "table.md", _md(long_columns, [[f"{r[c]:.4f}" if isinstance(r[c], float) else r[c]
                                                                for c in long_columns] for r in cells]))
    models = _ordered(r["model"] for r in cells)
    fakes = _ordered(r["train_fakes"] for r in cells)
    corruptions = _ordered(r["corruption"] for r in cells)
    # rows of several training lengths (the length check) are compared by length only: pooling
    # them by model would average two protocols
    one_length = len({r["epochs"] for r in cells}) == 1
    for table in (patch_vs_full_table(cells), source_table(cells)) if one_length else (length_table(cells),):
        if table:
            tables.append(table)
    if one_length and len(models) > 1 and len(fakes) == 1:      # a receptive-field ablation
        plot_ap_vs_rf(out_dir / "ap_vs_rf.png", cells, fakes[0])
        figures.append({"file": "ap_vs_rf.png", "caption": f"AP and ROC-AUC ({AGGREGATION}) against receptive "
                                                           f"field, trained on {fakes[0]}: mean ± sd over seeds, "
                                                           "one line per test set"})
        tables += [rf_table(cells, fakes[0], c) for c in corruptions] + [auc_table(cells, fakes[0])]
    if one_length and len(fakes) > 1:
        plot_cross(out_dir / "cross_generator.png", cells)
        figures.append({"file": "cross_generator.png",
                        "caption": f"AP ({AGGREGATION}, clean) trained on each fake set (rows), tested on every "
                                   "test set (columns), mean ± sd over seeds"})
        tables += [cross_table(cells, m) for m in _model_order(cells)]
    if rows["curves"]:
        plot_curves(out_dir / "curves.png", rows["curves"])
        figures.append({"file": "curves.png", "caption": f"validation AP ({AGGREGATION}) per epoch, mean over "
                                                         "seeds: has every model stopped learning by the end?"})
    regions = regions_summary(rows["regions"])
    if regions:
        plot_regions(out_dir / "regions.png", regions)
        figures.append({"file": "regions.png", "caption": "fakes: where the most fake-looking patch of each image "
                                                          "falls vs a random patch of the same image (mediapipe "
                                                          "regions), per test set; bars: mean (± sd) over cells"})
        tables.append(regions_table(regions))
    keys = {r["key"]: r for r in cells}
    seeds = sorted({r["seed"] for r in cells})
    summary = {"name": name, **info, "cells": len(keys), "seeds": seeds, "models": models, "train_fakes": fakes,
               "epochs": sorted({r["epochs"] for r in cells}), "crops": _ordered(r["crop"] for r in cells),
               "devices": _ordered(r["device"] for r in cells), "aggregation": AGGREGATION,
               "minutes": round(sum(r["train_minutes"] for r in keys.values()), 1),
               "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "table": "table.csv", "tables": tables, "figures": figures, "regions": regions}
    md = [f"# {name}\n", f"{len(keys)} cells; seeds {', '.join(map(str, seeds))}; "
                         f"{', '.join(map(str, summary['epochs']))} epochs; training input "
                         f"{', '.join(summary['crops'])}; AP: fakes positive.\n"]
    for t in tables:
        md += [f"<!-- table: {t['id']} -->", f"### {t['title']}\n", _md(t["columns"], t["rows"])]
    fileio.write_text(out_dir / "tables.md", "\n".join(md))
    fileio.write_json(out_dir / "experiment.json", summary)


# ------------------------------------------------------- views of the committed table
def spec_signatures(spec: dict) -> set[tuple]:
    """What each cell of a grid spec trains, as the table's columns say it (model, reals, fakes,
    seed, epochs, crop, size): enough to find its rows without the data or the key."""
    base, vary = spec.get("base") or {}, spec.get("vary") or {}
    keys = list(vary)
    out = set()
    for values in itertools.product(*(vary[k] for k in keys)):
        merged = {**base, **dict(zip(keys, values))}
        cfg = from_dict(TrainConfig, merged)
        out.add(_signature({"model": cfg.model, "train_real": "+".join(cfg.real), "train_fakes": "+".join(cfg.fake),
                            "seed": cfg.seed, "epochs": cfg.max_epochs, "crop": crop_text(to_dict(cfg)),
                            "load_size": cfg.load_size}))
    return out


def _signature(row: dict) -> tuple:
    return tuple(str(row[c]) for c in ("model", "train_real", "train_fakes", "seed", "epochs", "crop", "load_size"))


def spec_tests(spec: dict, grid_file: Path) -> set[tuple[str, str]]:
    """``(test set, corruption)`` of a grid spec, from its suite files (no data needed)."""
    out = set()
    for name in spec.get("suites") or ["faces128"]:
        local = grid_file.parent / name
        suite = fileio.read_yaml(local if local.is_file() else suite_path(name)) or {}
        corruptions = spec.get("corruptions")
        corruptions = corruptions if corruptions is not None else suite.get("corruptions") or [[]]
        out |= {(d["name"], ",".join(c or []) or "none") for d in suite.get("datasets") or [] for c in corruptions}
    return out


def grid_view(spec: dict, tables: dict[str, list[dict]], tests: set[tuple[str, str]]) -> dict[str, list[dict]]:
    """The rows of the cells a grid spec describes, on its ``tests`` (test set, corruption): rows a
    shared cell has from another grid stay out. A cell described twice in the table (two keys:
    other training options or other training images) is refused, naming both keys."""
    wanted = spec_signatures(spec)
    keys_by_signature: dict[tuple, set[str]] = defaultdict(set)
    for r in tables["cells"]:
        if _signature(r) in wanted:
            keys_by_signature[_signature(r)].add(r["key"])
    clashes = {s: k for s, k in keys_by_signature.items() if len(k) > 1}
    if clashes:
        sig, keys = next(iter(clashes.items()))
        cell = dict(zip(("model", "real", "fakes", "seed", "epochs", "crop", "size"), sig))
        raise ValueError(f"grid {spec.get('name')}: the cell {cell} has rows under {len(keys)} keys "
                         f"({', '.join(sorted(keys))}): other training options or other training images; remove "
                         "the rows that no longer apply from the tables")
    keys = {k for ks in keys_by_signature.values() for k in ks}
    return view_rows(tables, keys, tests)


def view_rows(tables: dict[str, list[dict]], keys: set[str], tests: set[tuple[str, str]]) -> dict[str, list[dict]]:
    """The rows of the cells ``keys`` on ``tests`` (``(test set, corruption)``) in each table."""
    test_sets = {t for t, _ in tests}
    return {"cells": [r for r in tables["cells"] if r["key"] in keys and (r["test_set"], r["corruption"]) in tests],
            "curves": [r for r in tables["curves"] if r["key"] in keys],
            "regions": [r for r in tables["regions"] if r["key"] in keys and r["test_set"] in test_sets]}


def findings_grids() -> list[str]:
    """The bundled grids that make up docs/findings.md (``findings-*``)."""
    return [g for g in bundled_grids() if g.startswith("findings-")]


def render_views(folder: Path, grids: list[str]) -> dict[str, Path | None]:
    """For each grid (bundled name or YAML file), its findings from the tables in ``folder`` into
    ``folder/generated/<grid>/`` (``None`` where the table holds none of its cells yet). The
    ``generated`` folder is replaced as a whole: it is derived from the tables."""
    source = FindingsTables(folder)
    tables = {t: source.read(t) for t in TABLES}
    out: dict[str, Path | None] = {}
    with fileio.atomic_dir(Path(folder) / "generated", force=True) as tmp:
        for grid in grids:
            spec = load_yaml_file(grid_path(grid))
            view = grid_view(spec, tables, spec_tests(spec, grid_path(grid)))
            name = str(spec.get("name") or Path(grid).stem)
            if not view["cells"]:
                out[name] = None
                continue
            (tmp / name).mkdir()
            _write_findings(name, {t: [typed(r) for r in part] for t, part in view.items()}, tmp / name,
                            {"grid": spec})
            out[name] = Path(folder) / "generated" / name
    return out


_BLOCK = "<!-- generated: {id} -->"
_END = "<!-- /generated -->"   # the blocks of fill_document: the lines between are replaced


def fill_document(doc: Path, generated: Path) -> tuple[list[str], list[str]]:
    """Replace every ``<!-- generated: GRID/ID -->`` … ``<!-- /generated -->`` block of ``doc`` with
    that table (ID: a table id) or figure (ID: its file, e.g. ``ap_vs_rf.png``, linked relative to
    ``doc``) of ``generated/GRID/experiment.json``, or with a line saying what is not there yet.
    Returns the ids filled and, among them, those the rendered grid lacks (a table whose rows are
    not in yet, e.g. the regions before the CPU computed them, or a misspelt id)."""
    text = doc.read_text()
    filled, lacking = [], []

    def content(block_id: str) -> str:
        grid, _, item = block_id.partition("/")
        info_path = generated / grid / "experiment.json"
        if not info_path.is_file():
            return f"_No cells of {grid} in the table yet._\n"
        info = json.loads(info_path.read_text())
        figure = next((f for f in info["figures"] if f["file"] == item), None)
        if figure is not None:
            link = Path(os.path.relpath(generated / grid / item, doc.resolve().parent)).as_posix()
            return f"![{figure['caption']}]({link})\n"
        table = next((t for t in info["tables"] if t["id"] == item), None)
        if table is None:
            lacking.append(block_id)
            return f"_{grid} has no `{item}` yet._\n"
        return f"{table['title']}:\n\n" + _md(table["columns"], table["rows"])

    def replace(match: re.Match) -> str:
        block_id = match.group(1).strip()
        filled.append(block_id)
        return f"{_BLOCK.format(id=block_id)}\n{content(block_id)}{_END}"

    # markers on lines of their own: one quoted in the prose (`<!-- generated: … -->`) is left alone
    new = re.sub(r"^<!-- generated: ([^\n]+?) -->\n.*?^<!-- /generated -->$", replace, text, flags=re.S | re.M)
    if new != text:
        fileio.write_text(doc, new)
    return filled, lacking
