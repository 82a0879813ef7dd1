"""docs/adapt.md's generated tables and figure, from ``cells.csv`` alone (no weights needed).

Recall on a fold's generator pools its sources' test images (StyleGAN2: tpdne + NVIDIA);
a cell's number is the mean over its draws, with the draws' range beside it. The gap
closed is ``(adapted - base) / (bundled - base)`` on that recall.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..core import fileio
from ..experiments.results_tables import read_csv
from ..scoring.metrics import wilson

BEGIN, END = "<!-- adapt-benchmark:begin -->", "<!-- adapt-benchmark:end -->"


def _f(v: str) -> float:
    return float(v) if v not in ("", None) else float("nan")


def pooled(rows: list[dict[str, str]], which: str = "after") -> tuple[float, int, int]:
    """``(rate, k, n)`` of several sets' flagged shares pooled by image counts."""
    n = sum(int(r["images"]) for r in rows)
    k = sum(round(_f(r[f"flagged_{which}"]) * int(r["images"])) for r in rows)
    return (k / n if n else float("nan")), k, n


def summarise(rows: list[dict[str, str]], split: str = "test") -> dict[str, Any]:
    """``{fold: {"base": rate, "bundled": rate, "cells": {(method, n): [per-draw dict]}}}``."""
    rows = [r for r in rows if r["split"] == split]
    by_key: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by_key[r["key"]].append(r)
    bundled = next((v for v in by_key.values() if v[0]["fold"] == "bundled"), [])
    out: dict[str, Any] = {}
    for cell in by_key.values():
        first = cell[0]
        if first["method"] == "reference":
            continue
        fold = out.setdefault(first["fold"], {"cells": defaultdict(list)})
        new = [r for r in cell if r["relation"] == "new"]
        fold["base"] = pooled(new, "before")[0]
        fold["bundled"] = pooled([r for r in bundled if r["set"] in {x["set"] for x in new}])[0]
        fold["cells"][(first["method"], int(first["n"]))].append({
            "recall": pooled(new)[0], "k_n": pooled(new)[1:],
            "ap": np.mean([_f(r["ap_after"]) for r in new]),
            "fa": {r["set"]: _f(r["flagged_after"]) for r in cell if r["relation"] == "real"},
            "forget": {r["set"]: (_f(r["diff"]), _f(r["diff_lo"]), _f(r["diff_hi"]),
                                  _f(r["ap_after"]) - _f(r["ap_before"]), _f(r["ap_diff_lo"]), _f(r["ap_diff_hi"]))
                       for r in cell if r["relation"] == "old"},
            "estimate": _f(first["estimate"]), "seconds": _f(first["seconds"])})
    return out


def recall_table(summary: dict[str, Any]) -> str:
    lines = ["| fold (held-out generator) | method | N | recall on its test split (draws) | 95% (pooled draws) "
             "| gap closed | FA ffhq | FA celebahq | held-back estimate | s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for fold, f in summary.items():
        lines.append(f"| {fold} | base (no adaptation) | 0 | {f['base']:.3f} | | 0 | | | | |")
        for (method, n), draws in sorted(f["cells"].items()):
            rec = [d["recall"] for d in draws]
            k, m = sum(d["k_n"][0] for d in draws), sum(d["k_n"][1] for d in draws)
            lo, hi = wilson(k, m)
            gap = (np.mean(rec) - f["base"]) / (f["bundled"] - f["base"]) if f["bundled"] > f["base"] else float("nan")
            fa = {s: np.mean([d["fa"].get(s, np.nan) for d in draws]) for s in ("ffhq", "celebahq")}
            lines.append(f"| {fold} | {method} | {n} | {np.mean(rec):.3f} ({', '.join(f'{r:.3f}' for r in rec)}) | "
                         f"{lo:.3f}-{hi:.3f} | {gap:+.2f} | {fa['ffhq']:.3f} | {fa['celebahq']:.3f} | "
                         f"{np.nanmean([d['estimate'] for d in draws]):.3f} | "
                         f"{np.mean([d['seconds'] for d in draws]):.0f} |")
        lines.append(f"| {fold} | bundled (trained on it) | all | {f['bundled']:.3f} | | 1 | | | | |")
    return "\n".join(lines)


def _pooled_ci(draws: list[dict[str, Any]]) -> tuple[float, float, float]:
    k, m = sum(d["k_n"][0] for d in draws), sum(d["k_n"][1] for d in draws)
    return (k / m if m else float("nan"), *wilson(k, m))


def targets_table(summary: dict[str, Any], method: str) -> str:
    """The issue's targets per fold for ``method``: the gap closed at N = 50, N = 200 against the
    bundled detector, the smallest N whose pooled recall interval lies above the base's recall,
    and the largest forgetting of any old generator at any N (recall points, AP)."""
    lines = ["| fold | gap closed at N=50 (target >= 0.5) | recall at N=200 vs bundled | smallest N clearly above "
             "the base | worst old-generator recall change | worst AP change | FA ffhq / celebahq at N=50 |",
             "|---|---|---|---|---|---|---|"]
    for fold, f in summary.items():
        cells = {n: d for (m, n), d in f["cells"].items() if m == method}
        if not cells:
            continue
        def gap(n):
            return ((np.mean([d["recall"] for d in cells[n]]) - f["base"]) / (f["bundled"] - f["base"])
                    if n in cells and f["bundled"] > f["base"] else float("nan"))
        r200 = (f"{np.mean([d['recall'] for d in cells[200]]):.3f} vs {f['bundled']:.3f}" if 200 in cells else "-")
        above = next((n for n in sorted(cells) if _pooled_ci(cells[n])[1] > f["base"]), None)
        forget = [v for ds in cells.values() for d in ds for v in d["forget"].values()]
        fa = {s: np.mean([d["fa"].get(s, np.nan) for d in cells[50]]) for s in ("ffhq", "celebahq")} if 50 in cells else {}
        g50 = "-" if np.isnan(gap(50)) else f"{gap(50):+.2f}"
        fa_text = "-" if 50 not in cells else f"{fa['ffhq']:.3f} / {fa['celebahq']:.3f}"
        lines.append(f"| {fold} | {g50} | {r200} | {above if above else 'none up to ' + str(max(cells))} | "
                     f"{min(v[0] for v in forget):+.3f} | {min(v[3] for v in forget):+.4f} | "
                     f"{fa_text} |")
    return "\n".join(lines)


def forgetting_table(summary: dict[str, Any]) -> str:
    lines = ["| fold | method | N | old test set | recall change (draws' 95% range) | AP change (range) |",
             "|---|---|---|---|---|---|"]
    for fold, f in summary.items():
        for (method, n), draws in sorted(f["cells"].items()):
            for s in sorted(draws[0]["forget"]):
                v = np.array([d["forget"][s] for d in draws])
                lines.append(f"| {fold} | {method} | {n} | {s} | {v[:, 0].mean():+.3f} ({v[:, 1].min():+.3f} to "
                             f"{v[:, 2].max():+.3f}) | {v[:, 3].mean():+.4f} ({v[:, 4].min():+.4f} to "
                             f"{v[:, 5].max():+.4f}) |")
    return "\n".join(lines)


def figure(summary: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    folds = list(summary)
    every_method = sorted({m for f in summary.values() for m, _ in f["cells"]})     # one colour a method
    fig, axes = plt.subplots(2, max(1, len(folds)), figsize=(4.2 * max(1, len(folds)), 6.4), squeeze=False)
    for j, fold in enumerate(folds):
        f, top, bottom = summary[fold], axes[0][j], axes[1][j]
        methods = sorted({m for m, _ in f["cells"]})
        for method in methods:
            ns = sorted(n for m, n in f["cells"] if m == method)
            draws = [f["cells"][(method, n)] for n in ns]
            rec = [[d["recall"] for d in ds] for ds in draws]
            colour = f"C{every_method.index(method)}"
            top.errorbar(ns, [np.mean(r) for r in rec], yerr=[[np.mean(r) - min(r) for r in rec],
                         [max(r) - np.mean(r) for r in rec]], marker="o", color=colour, label=method, capsize=3)
            old = [np.mean([np.mean([v[0] for v in d["forget"].values()]) for d in ds]) for ds in draws]
            fa = [np.mean([np.mean(list(d["fa"].values())) for d in ds]) for ds in draws]
            bottom.plot(ns, old, marker="o", color=colour, label=f"{method}: old generators' recall change")
            bottom.plot(ns, fa, marker="s", linestyle="--", color=colour, label=f"{method}: false alarms (test reals)")
        top.axhline(f["base"], color="grey", linestyle="--", label="base, no adaptation")
        top.axhline(f["bundled"], color="black", linestyle=":", label="bundled (trained on it)")
        top.set(xscale="log", ylim=(0, 1.03), title=f"held out: {fold}", xlabel="N samples",
                ylabel="recall on its test split" if j == 0 else None)
        bottom.axhline(0, color="grey", linewidth=0.8)
        bottom.set(xscale="log", xlabel="N samples",
                   ylabel="old recall change; false alarms" if j == 0 else None)
        top.legend(fontsize=7)
        bottom.legend(fontsize=6)
    fig.suptitle("adapt, leave one generator out: default threshold (3% of validation reals)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fileio.save_figure(fig, path)
    plt.close(fig)


def write_report(results: str | Path, doc: str | Path | None = None) -> str:
    """Tables and figure from ``results/cells.csv``; fills ``doc``'s generated block if given."""
    results = Path(results)
    summary = summarise(read_csv(results / "cells.csv"))
    methods = sorted({m for f in summary.values() for m, _ in f["cells"]})
    targets = "\n\n".join(f"`{m}`:\n\n{targets_table(summary, m)}" for m in methods)
    text = (f"{BEGIN}\n### Against the targets\n\n{targets}\n\n"
            f"### Recall on the held-out generator\n\n{recall_table(summary)}\n\n"
            f"![adapt curves](adapt/curves.png)\n\n### Forgetting\n\n{forgetting_table(summary)}\n{END}")
    if summary:
        figure(summary, results / "curves.png")
    if doc is not None and Path(doc).is_file():
        page = Path(doc).read_text()
        if BEGIN in page and END in page:
            page = page[:page.index(BEGIN)] + text + page[page.index(END) + len(END):]
            fileio.write_text(doc, page)
    return text
