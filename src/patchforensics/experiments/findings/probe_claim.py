"""Claim (e): which face regions causally carry the evidence, drawn from ``probe.csv`` alone.

A region carries a class's evidence when pasting it from a face of the other class moves
p(fake) beyond what pasting it from a face of the same class does (the seams): the
``transplant-vs-same:REGION`` rows of ``probe --findings``. For fakes that is a fall of
p(fake) (the region held fake evidence), for reals a rise. The causal order of the regions
(the fakes' contrast, most negative first) is set against claim (c)'s order (the share of
the fakes' most fake-looking patches that fall on each region, ``regions.csv``), as Spearman's
rank correlation and the regions whose ranks differ by :data:`RANK_GAP` or more.

Written to ``<findings>/generated/probe/`` as a findings folder is (``experiment.json`` with
``tables``, ``figures`` and ``texts``), so ``findings --doc`` fills ``<!-- generated: probe/ID -->``.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from ...core import fileio
from .stats import ordered, regions_summary, typed
from .tables import markdown_table

NAME = "probe"
CONTRAST_PREFIX = "transplant-vs-same:"
CLASSES = ("fake", "real")
#: ranks this far apart (of ~8 regions) are named as a disagreement
RANK_GAP = 2
_FLOATS = ("mean_change", "lo", "hi", "flipped", "threshold", "area")


def _typed(row: dict) -> dict:
    out = dict(row)
    for key in _FLOATS:
        out[key] = float(out[key]) if out.get(key) not in ("", None) else float("nan")
    out["n"] = int(float(out["n"] or 0))
    return out


def run_label(row: dict) -> str:
    field = "full image" if row["field"] == "full" else f"{row['field']} px"
    return f"{row['checkpoint']} ({row['model']}, {field})"


def contrasts(rows: list[dict]) -> dict[tuple, dict[str, dict[str, dict]]]:
    """``run -> class -> region -> row`` of the contrast rows; a run is ``(label, fake set, model)``."""
    out: dict[tuple, dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r["intervention"].startswith(CONTRAST_PREFIX):
            out[(run_label(r), r["fake"], r["model"])][r["class"]][r["intervention"].removeprefix(CONTRAST_PREFIX)] = r
    return out


def _cell(r: dict | None) -> str:
    if r is None or not r["n"]:
        return "–"
    return f"{r['mean_change']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]"


def region_order(runs: dict, cls: str = "fake", per_area: bool = False) -> list[str]:
    """Regions by their mean contrast over the runs: for fakes the most negative first (most evidence).
    ``per_area``: by the contrast per share of the face the region covers (its evidence density:
    a transplant of the skin moves forty times the pixels of one of an eye)."""
    values: dict[str, list[float]] = defaultdict(list)
    for by_class in runs.values():
        for region, r in by_class.get(cls, {}).items():
            if r["n"] and (r["area"] or not per_area):
                values[region].append(r["mean_change"] / r["area"] if per_area else r["mean_change"])
    sign = 1.0 if cls == "fake" else -1.0
    return sorted(values, key=lambda reg: sign * statistics.fmean(values[reg]))


def causal_table(runs: dict, cls: str) -> dict:
    regions = region_order(runs, "fake") or region_order(runs, cls)
    body = [[run[0], run[1], max((r["n"] for r in runs[run].get(cls, {}).values()), default=0)]
            + [_cell(runs[run].get(cls, {}).get(reg)) for reg in regions] for run in runs]
    toward = "a fall (toward real): the region held fake evidence" if cls == "fake" else \
        "a rise (toward fake): the fake's region brought fake evidence"
    return {"id": f"causal-{cls}s", "title": f"{cls}s: change of p(fake) when a region is pasted from a face of the "
                                             f"other class, minus the same-class control (mean [95% bootstrap "
                                             f"interval over faces]); {toward}",
            "columns": ["model", "fakes of", "faces", *regions], "rows": body}


def ranks(order: list[str]) -> dict[str, int]:
    return {region: i + 1 for i, region in enumerate(order)}


def spearman(a: list[str], b: list[str]) -> float:
    """Spearman's rank correlation of two orders of the same items (no ties)."""
    n = len(a)
    if n < 2:
        return float("nan")
    rb = ranks(b)
    d = np.array([i + 1 - rb[x] for i, x in enumerate(a)], dtype=float)
    return float(1.0 - 6.0 * (d ** 2).sum() / (n * (n * n - 1)))


def comparison(runs: dict, region_rows: list[dict]) -> tuple[dict, str]:
    """The rank comparison with claim (c) per run: a table and the plain statement of it."""
    body, lines = [], []
    for (label, fake, model), by_class in runs.items():
        causal = region_order({(label, fake, model): by_class}, "fake")
        test_set = fake.split("/")[0]
        own = [r for r in region_rows if r["model"] == model]
        pool = own or region_rows
        summary = regions_summary(pool).get(test_set)
        if not summary or not causal:
            body.append([label, fake, " > ".join(causal[:3]) or "–", "–", "–", "no top-patch counts of this test set"])
            continue
        common = [reg for reg in causal if reg in summary]
        top = sorted(common, key=lambda reg: -summary[reg]["top"])
        rc, rt = ranks(common), ranks(top)
        rho = spearman(common, top)
        dense = [reg for reg in region_order({(label, fake, model): by_class}, "fake", per_area=True) if reg in top]
        rho_dense = spearman(dense, [reg for reg in top if reg in dense])
        apart = [f"{reg} (causal {rc[reg]}, top patches {rt[reg]})" for reg in common if abs(rc[reg] - rt[reg]) >= RANK_GAP]
        source = ", ".join(ordered(r["model"] for r in pool)) + f", {len({r['key'] for r in pool})} cells"
        verdict = ("agrees" if rho >= 0.7 and common[0] == top[0] else
                   "partly agrees" if rho >= 0.3 or common[0] == top[0] else "does not agree")
        body.append([label, fake, " > ".join(common[:3]), " > ".join(top[:3]), f"{rho:+.2f}",
                     "; ".join(apart) or "none", " > ".join(dense[:3]), f"{rho_dense:+.2f}"])
        lines.append(f"- {label} on {fake}: the causal order {verdict} with (c)'s top-patch counts ({source}): "
                     f"Spearman {rho:+.2f} over {len(common)} regions; causal first {common[0]}, top patches first "
                     f"{top[0]}" + (f"; they disagree on {', '.join(apart)}" if apart else "; no region "
                                    f"{RANK_GAP} or more ranks apart")
                     + f"; per share of the face, the causal order is {' > '.join(dense[:3])} …, Spearman "
                       f"{rho_dense:+.2f} with the top patches.")
    table = {"id": "causal-vs-c", "title": "the causal order of the regions (fakes' contrast, most evidence first) "
                                           "against claim (c)'s (share of the fakes' top patches); Spearman's rank "
                                           f"correlation; regions {RANK_GAP}+ ranks apart",
             "columns": ["model", "fakes of", "causal order", "top-patch order (c)", "Spearman", "disagree on",
                         "causal order per area", "Spearman per area"],
             "rows": body}
    return table, "\n".join(lines) + "\n" if lines else "_No top-patch counts (regions.csv) to compare with._\n"


def evidence_text(runs: dict) -> str:
    """Per run, the regions whose fakes' contrast interval lies below 0 (they carry fake evidence)."""
    lines = []
    for (label, fake, _), by_class in runs.items():
        fakes = by_class.get("fake", {})
        carry = [f"{reg} ({r['mean_change']:+.3f})" for reg, r in sorted(fakes.items(), key=lambda x: x[1]["mean_change"])
                 if r["n"] and r["hi"] < 0]
        lines.append(f"- {label} on {fake}: " + (f"{', '.join(carry)} carry the fakes' evidence (interval below 0)"
                                                  if carry else "no region's interval lies below 0") + ".")
    return "\n".join(lines) + "\n"


def plot_causal(path: Path, runs: dict) -> None:
    """Per class, the contrast per region (rows) for each run (bars), with its interval."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regions = region_order(runs, "fake")
    keys = list(runs)
    fig, axes = plt.subplots(1, 2, sharex=True, sharey=True, squeeze=False,
                             figsize=(10.0, 1.2 + 0.28 * len(regions) * max(1, len(keys)) ** 0.5 + 0.9))
    colours = plt.get_cmap("tab10")
    height = 0.8 / max(1, len(keys))
    y = np.arange(len(regions))
    for ax, cls in zip(axes[0], CLASSES):
        for k, key in enumerate(keys):
            rows = [runs[key].get(cls, {}).get(reg) for reg in regions]
            mean = np.array([r["mean_change"] if r and r["n"] else np.nan for r in rows])
            lo = np.array([r["lo"] if r and r["n"] else np.nan for r in rows])
            hi = np.array([r["hi"] if r and r["n"] else np.nan for r in rows])
            pos = y - 0.4 + height * (k + 0.5)
            ax.barh(pos, mean, height=height * 0.9, color=colours(k % 10), label=f"{key[0]}, {key[1]}")
            ax.errorbar(mean, pos, xerr=[mean - lo, hi - mean], fmt="none", ecolor="#333333", elinewidth=0.7,
                        capsize=1.2)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_title(f"{cls}s: region pasted from the other class, minus the same-class control", fontsize=8)
        ax.set_xlabel("change of p(fake) (95% interval)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks(y, regions, fontsize=8)
    axes[0][0].set_ylim(len(regions) - 0.5, -0.5)
    handles, labels = axes[0][0].get_legend_handles_labels()
    # one column: the labels are checkpoint names, two side by side would not fit the width
    fig.legend(handles, labels, loc="lower center", ncol=1, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.03 + 0.03 * len(keys), 1, 1))
    fileio.save_figure(fig, path, dpi=90)
    plt.close(fig)


def write_probe_claim(out_dir: Path, probe_rows: list[dict], region_rows: list[dict]) -> bool:
    """Claim (e)'s tables, figure and statements into ``out_dir`` (existing, empty) from the committed
    rows; ``False`` (nothing written) when no run measured a transplant and its control."""
    rows = [_typed(r) for r in probe_rows]
    runs = contrasts(rows)
    if not runs:
        return False
    fig = "probe_causal.png"
    plot_causal(out_dir / fig, runs)
    compare, statement = comparison(runs, [typed(r) for r in region_rows])
    tables = [causal_table(runs, "fake"), causal_table(runs, "real"), compare]
    texts = [{"id": "evidence", "text": evidence_text(runs)}, {"id": "agreement", "text": statement}]
    info = {"name": NAME, "runs": len(runs), "finished": max((str(r.get("finished") or "") for r in rows), default=""),
            "table": "probe.csv", "tables": tables, "texts": texts,
            "figures": [{"file": fig, "caption": "which regions carry the evidence: p(fake)'s change when a region "
                                                 "is pasted from a face of the other class minus the same-class "
                                                 "control, per model (bars) with 95% intervals"}]}
    md = [f"# {NAME}\n"]
    for t in tables:
        md += [f"<!-- table: {t['id']} -->", f"### {t['title']}\n", markdown_table(t["columns"], t["rows"])]
    md += [t["text"] for t in texts]
    fileio.write_text(out_dir / "tables.md", "\n".join(md))
    fileio.write_json(out_dir / "experiment.json", info)
    return True
