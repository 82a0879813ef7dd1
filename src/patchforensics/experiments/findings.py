"""What a finished grid shows: one long table, summary tables and figures.

Written to ``results/experiment-<grid>/`` so that ``report`` on the results
folder finds it (``experiment.json`` lists the tables and figures; the report
renders them without importing this module)::

    table.csv, table.md      cell options × dataset × corruption × aggregation × AP/seed AP/AUC/acc
    ap_vs_rf.png             AP and ROC-AUC against receptive-field size, mean ± sd over seeds,
                             one line per test dataset (when the grid varies the model, not the fakes)
    cross_generator.png      AP per train set × test set, per model (when the grid varies the fakes)
    regions.png              fakes' top patches vs random patches per face region, per test dataset
    findings.md              the summary tables in Markdown
    experiment.json          all of the above for the report

Summary figures and tables use the ``after_softmax`` aggregation (the seed's
default) and AP with the fakes as the positive class; the long table has every
aggregation and both APs. Spread is the sample standard deviation over seeds.
"""
from __future__ import annotations

import csv
import io
import json
import statistics
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..core import fileio
from ..models import create_model, is_patch_model, receptive_field
from .grid import Grid

AGGREGATION = "after_softmax"
_CLEAN = "none"


def _text(value: Any) -> str:
    return "+".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def rf_size(model: str, size: int) -> int | None:
    """Receptive-field side in pixels at ``size`` px; ``None`` for a full-image model."""
    if not is_patch_model(model):
        return None
    return int(receptive_field(create_model(model), size).size[0])


def long_rows(grid: Grid, records: list[dict]) -> list[dict]:
    """One row per cell × suite × dataset × corruption × aggregation."""
    keys = list(grid.config.vary)
    rf_cache: dict[tuple[str, int], int | None] = {}
    rows = []
    for rec in records:
        tc = rec["train_config"]
        train_fakes = [Path(f).name for f in tc["fake"]]
        key = (tc["model"], tc["load_size"])
        if key not in rf_cache:
            rf_cache[key] = rf_size(*key)
        for r in rec["rows"]:
            rows.append({"cell": rec["cell"], **{k: _text(rec["options"][k]) for k in keys},
                         "model": tc["model"], "seed": tc["seed"], "train_fake": "+".join(train_fakes),
                         "rf": rf_cache[key] if rf_cache[key] is not None else "full",
                         "suite": r["suite"], "dataset": r["dataset"], "test_real": r["test_real"],
                         "test_fake": r["test_fake"], "seen": r["test_fake"] in train_fakes,
                         "corruption": r["corruption"], "aggregation": r["aggregation"],
                         **{m: r[m] for m in ("ap", "ap_real_positive", "roc_auc", "acc", "real_acc", "fake_acc",
                                              "n")}})
    return rows


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _md(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _long_md(rows: list[dict]) -> str:
    cols = [c for c in rows[0] if c not in ("test_real", "real_acc", "fake_acc")]
    return _md(cols, [[f"{r[c]:.4f}" if isinstance(r[c], float) else r[c] for c in cols] for r in rows])


def mean_sd(values: list[float]) -> tuple[float, float, int]:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd, len(values)


def fmt(stat: tuple[float, float, int] | None) -> str:
    if stat is None:
        return "–"
    m, sd, n = stat
    return f"{m:.3f} ± {sd:.3f}" if n > 1 else f"{m:.3f}"


def pooled(rows: list[dict], metric: str, corruption: str = _CLEAN) -> dict[tuple, tuple[float, float, int]]:
    """``(model, train_fake, dataset) -> (mean, sd, seeds)`` of ``metric`` (after_softmax, one corruption)."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        if r["aggregation"] == AGGREGATION and r["corruption"] == corruption:
            groups[(r["model"], r["train_fake"], r["dataset"])].append(float(r[metric]))
    return {k: mean_sd(v) for k, v in groups.items()}


def _ordered(values) -> list:
    seen: dict = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def _family(model: str) -> str:
    return model.split("_")[0]


def _model_order(rows: list[dict]) -> list[str]:
    """Models by family, then receptive field (full-image model last)."""
    rf = {r["model"]: r["rf"] for r in rows}
    return sorted(_ordered(r["model"] for r in rows),
                  key=lambda m: (_family(m), rf[m] == "full", rf[m] if rf[m] != "full" else 0))


# ----------------------------------------------------------------- tables
def rf_table(rows: list[dict], train_fake: str, corruption: str) -> dict:
    """AP (mean ± sd over seeds) per model (with its receptive field) × test dataset."""
    ap, auc = pooled(rows, "ap", corruption), pooled(rows, "roc_auc", corruption)
    rf = {r["model"]: r["rf"] for r in rows}
    datasets = _ordered(r["dataset"] for r in rows)
    out = []
    for m in _model_order(rows):
        if (m, train_fake, datasets[0]) not in ap:
            continue
        out.append([m, rf[m], ap[(m, train_fake, datasets[0])][2]]
                   + [f"{fmt(ap.get((m, train_fake, d)))} / {fmt(auc.get((m, train_fake, d)))}" for d in datasets])
    return {"id": f"rf-{train_fake}-{corruption}",
            "title": f"AP / ROC-AUC ({AGGREGATION}) against receptive field; trained on {train_fake}, "
                     f"test corruption {corruption}; mean ± sd over seeds",
            "columns": ["model", "field (px)", "seeds", *datasets], "rows": out}


def cross_table(rows: list[dict], model: str) -> dict:
    """AP per train fake set (rows) × test dataset (columns) for one model, plus the mean over unseen sets."""
    ap = pooled(rows, "ap")
    datasets = _ordered(r["dataset"] for r in rows)
    seen = {(r["train_fake"], r["dataset"]): r["seen"] for r in rows}
    out = []
    for fake in _ordered(r["train_fake"] for r in rows):
        if (model, fake, datasets[0]) not in ap:
            continue
        unseen = unseen_mean(rows, model, fake)
        out.append([fake, ap[(model, fake, datasets[0])][2]]
                   + [fmt(ap.get((model, fake, d))) + ("" if not seen[(fake, d)] else " (seen)") for d in datasets]
                   + [fmt(unseen)])
    return {"id": f"cross-{model}", "title": f"{model}: AP ({AGGREGATION}, clean) per training fake set × test "
                                              "dataset; mean ± sd over seeds; (seen) = the training generator",
            "columns": ["trained on", "seeds", *datasets, "mean unseen"], "rows": out}


def unseen_mean(rows: list[dict], model: str, train_fake: str, metric: str = "ap",
                corruption: str = _CLEAN, seen: bool = False) -> tuple[float, float, int] | None:
    """Mean AP over the datasets whose fakes the model never trained on (``seen``: those it did),
    per seed, then mean ± sd over seeds."""
    per_seed: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        if (r["model"] == model and r["train_fake"] == train_fake and r["seen"] == seen
                and r["aggregation"] == AGGREGATION and r["corruption"] == corruption):
            per_seed[r["seed"]].append(float(r[metric]))
    return mean_sd([statistics.fmean(v) for v in per_seed.values()]) if per_seed else None


def patch_vs_full_table(rows: list[dict]) -> dict | None:
    """Claim (a): mean AP on unseen generators of every model, per training set."""
    models = _model_order(rows)
    if not any(r["rf"] == "full" for r in rows) or all(r["rf"] == "full" for r in rows):
        return None
    fakes = _ordered(r["train_fake"] for r in rows)
    corruptions = _ordered(r["corruption"] for r in rows)
    out = []
    for m in models:
        rf = next(r["rf"] for r in rows if r["model"] == m)
        out.append([m, rf] + [f"{fmt(unseen_mean(rows, m, f, 'ap', c))} (seen {fmt(unseen_mean(rows, m, f, 'ap', c, True))})"
                              for f in fakes for c in corruptions])
    return {"id": "patch-vs-full", "title": f"mean AP ({AGGREGATION}) over the test sets whose generator was not "
                                            "trained on (in brackets: over those it was), mean ± sd over seeds",
            "columns": ["model", "field (px)"] + [f"trained on {f}, {c}" for f in fakes for c in corruptions],
            "rows": out}


def regions_summary(records: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """``dataset -> region -> {top, random, patches, cells}``: fakes' shares, averaged over the cells with regions."""
    shares: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    counts: dict[str, list[int]] = defaultdict(list)
    for rec in records:
        for dataset, path in rec.get("regions", {}).items():
            summary = json.loads(Path(path).read_text())
            fakes = summary["classes"]["fakes"]
            counts[dataset].append(fakes["assigned"])
            for region, c in fakes["counts"].items():
                shares[dataset][region]["top"].append(c["top_share"])
                shares[dataset][region]["random"].append(c["random_share"])
    return {d: {reg: {"top": statistics.fmean(v["top"]), "random": statistics.fmean(v["random"]),
                      "top_sd": statistics.stdev(v["top"]) if len(v["top"]) > 1 else 0.0,
                      "patches": sum(counts[d]), "cells": len(counts[d])} for reg, v in regs.items()}
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


def plot_ap_vs_rf(path: Path, rows: list[dict], train_fake: str) -> None:
    """AP and ROC-AUC against receptive field, one panel per model family × corruption, one line per test set."""
    plt = _plt()
    families = _ordered(_family(m) for m in _model_order(rows))
    corruptions = _ordered(r["corruption"] for r in rows)
    datasets = _ordered(r["dataset"] for r in rows)
    metrics = (("ap", "AP"), ("roc_auc", "ROC-AUC"))
    fig, axes = plt.subplots(len(families) * 2, len(corruptions), squeeze=False,
                             figsize=(4.3 * len(corruptions), 2.9 * 2 * len(families)))
    colors = plt.get_cmap("tab10")
    for fi, fam in enumerate(families):
        models = [m for m in _model_order(rows) if _family(m) == fam]
        rf = {r["model"]: r["rf"] for r in rows}
        x = np.arange(len(models))
        labels = [f"{m.removeprefix(fam + '_')}\n{rf[m]} px" if m != fam else "full\n(whole image)" for m in models]
        for mi, (metric, mname) in enumerate(metrics):
            for ci, corr in enumerate(corruptions):
                ax = axes[fi * 2 + mi, ci]
                stats = pooled(rows, metric, corr)
                for di, d in enumerate(datasets):
                    pts = [stats.get((m, train_fake, d)) for m in models]
                    if not any(pts):
                        continue
                    mean = [p[0] if p else np.nan for p in pts]
                    sd = [p[1] if p else np.nan for p in pts]
                    ax.errorbar(x, mean, yerr=sd, marker="o", ms=3.5, capsize=3, lw=1.3, color=colors(di), label=d)
                ax.set_xticks(x, labels, fontsize=7)
                ax.set_ylabel(mname, fontsize=8)
                ax.set_title(f"{fam}, test {corr}", fontsize=9)
                ax.grid(alpha=0.3)
                ax.tick_params(axis="y", labelsize=7)
                if fi == 0 and mi == 0 and ci == 0:
                    ax.legend(fontsize=7)
    n_seeds = max(s[2] for s in pooled(rows, "ap").values())
    fig.suptitle(f"trained on {train_fake}: {AGGREGATION} AP / ROC-AUC against receptive field, "
                 f"mean ± sd over {n_seeds} seeds", fontsize=9, wrap=True)
    fig.tight_layout()
    fileio.save_figure(fig, path, dpi=90)
    plt.close(fig)


def plot_cross(path: Path, rows: list[dict]) -> None:
    """AP per train set × test set as heatmaps, one panel per model."""
    plt = _plt()
    models = _model_order(rows)
    fakes = _ordered(r["train_fake"] for r in rows)
    datasets = _ordered(r["dataset"] for r in rows)
    ap = pooled(rows, "ap")
    fig, axes = plt.subplots(1, len(models), squeeze=False, figsize=(1.0 + 1.25 * len(datasets) * len(models),
                                                                     1.2 + 0.55 * len(fakes)))
    for ax, m in zip(axes[0], models):
        grid = np.array([[ap[(m, f, d)][0] if (m, f, d) in ap else np.nan for d in datasets] for f in fakes])
        im = ax.imshow(grid, vmin=0.5, vmax=1.0, cmap="viridis")
        for i, f in enumerate(fakes):
            for j, d in enumerate(datasets):
                s = ap.get((m, f, d))
                if s:
                    ax.text(j, i, f"{s[0]:.2f}\n±{s[1]:.2f}", ha="center", va="center", fontsize=6.5,
                            color="white" if s[0] < 0.8 else "black")
        ax.set_xticks(range(len(datasets)), datasets, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(fakes)), fakes if ax is axes[0][0] else [""] * len(fakes), fontsize=7)
        ax.set_title(m, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="AP")
    fig.suptitle(f"AP ({AGGREGATION}, clean): trained on (rows) × tested on (columns)", fontsize=9, y=1.04)
    fileio.save_figure(fig, path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def plot_regions(path: Path, summary: dict) -> None:
    """Per test dataset: the fakes' top-patch share per region next to the random patches' share."""
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
def write_findings(grid: Grid, records: list[dict], out_dir: Path) -> Path:
    """Write the long table, the summary tables and figures and ``experiment.json`` into ``out_dir``
    (replaced as a whole: it is derived from the cell records, which stay)."""
    with fileio.atomic_dir(out_dir, force=True) as tmp:
        _write_findings(grid, records, tmp)
    return out_dir


def _write_findings(grid: Grid, records: list[dict], out_dir: Path) -> None:
    rows = long_rows(grid, records)
    tables, figures = [], []
    models = _ordered(r["model"] for r in rows)
    fakes = _ordered(r["train_fake"] for r in rows)
    corruptions = _ordered(r["corruption"] for r in rows)
    fileio.write_text(out_dir / "table.csv", _csv(rows))
    fileio.write_text(out_dir / "table.md", _long_md(rows))
    pvf = patch_vs_full_table(rows)
    if pvf:
        tables.append(pvf)
    if len(models) > 1 and len(fakes) == 1:       # a receptive-field ablation (cross-generator grids: below)
        plot_ap_vs_rf(out_dir / "ap_vs_rf.png", rows, fakes[0])
        figures.append({"file": "ap_vs_rf.png", "caption": f"AP and ROC-AUC ({AGGREGATION}) against receptive "
                                                           f"field, trained on {fakes[0]}: mean ± sd over seeds, "
                                                           "one line per test set"})
        tables += [rf_table(rows, fakes[0], c) for c in corruptions]
    if len(fakes) > 1:
        plot_cross(out_dir / "cross_generator.png", rows)
        figures.append({"file": "cross_generator.png",
                        "caption": f"AP ({AGGREGATION}, clean) trained on each fake set (rows), tested on every "
                                   "dataset (columns), mean ± sd over seeds"})
        tables += [cross_table(rows, m) for m in _model_order(rows)]
    regions = regions_summary(records)
    if regions:
        plot_regions(out_dir / "regions.png", regions)
        figures.append({"file": "regions.png", "caption": "fakes: where the most fake-looking patch of each image "
                                                          "falls vs a random patch of the same image (mediapipe "
                                                          "regions), per test set; bars: mean (± sd) over cells"})
        tables.append(regions_table(regions))
    seeds = sorted({r["seed"] for r in rows})
    info = {"name": grid.config.name, "grid": grid.spec(), "data_root": str(grid.data_root),
            "cells": len(records), "seeds": seeds, "models": models, "train_fakes": fakes,
            "aggregation": AGGREGATION, "train_minutes": round(sum(r["train_s"] for r in records) / 60, 1),
            "minutes": round(sum(r.get("seconds", 0) for r in records) / 60, 1),
            "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "table": "table.csv", "tables": tables, "figures": figures, "regions": regions}
    md = [f"# experiment {grid.config.name}\n", f"{len(records)} cells, seeds {seeds}; AP: fakes positive.\n"]
    for t in tables:
        md += [f"## {t['title']}\n", _md(t["columns"], t["rows"])]
    fileio.write_text(out_dir / "findings.md", "\n".join(md))
    fileio.write_json(out_dir / "experiment.json", info)
