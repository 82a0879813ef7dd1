"""The summary figures of the findings (matplotlib, Agg), each drawn from table rows into one PNG."""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from ...core import fileio
from .stats import AGGREGATION, family, model_order, ordered, pooled


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_ap_vs_rf(path: Path, rows: list[dict], train_fakes: str) -> None:
    """AP and ROC-AUC against receptive field, one panel per model family × corruption, one line per test
    set; error bars: sd over seeds."""
    plt = _plt()
    families = ordered(family(m) for m in model_order(rows))
    corruptions = ordered(r["corruption"] for r in rows)
    datasets = ordered(r["test_set"] for r in rows)
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
        models = [m for m in model_order(rows) if family(m) == fam]
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
    models = model_order(rows)
    fakes = ordered(r["train_fakes"] for r in rows)
    datasets = ordered(r["test_set"] for r in rows)
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
    panels = ordered((r["train_fakes"], r["epochs"]) for r in curves)
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(4.2 * len(panels), 3.2))
    colors = plt.get_cmap("tab10")
    # one colour per model across all panels, so a model is the same line in each
    color_of = {model: colors(i % 10) for i, model in enumerate(ordered(r["model"] for r in curves))}
    for ax, (fakes, epochs) in zip(axes[0], panels):
        part = [r for r in curves if r["train_fakes"] == fakes and r["epochs"] == epochs]
        for model in ordered(r["model"] for r in part):
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
