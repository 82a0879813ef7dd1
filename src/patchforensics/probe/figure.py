"""probe.png: the mean change of p(fake) per intervention, one panel per class, with its interval."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core import fileio
from .inputs import CLASSES

#: a change toward fake and toward real (the two ends of ColorBrewer's RdBu, the heatmaps' scale)
TOWARD_FAKE, TOWARD_REAL = "#b2182b", "#2166ac"


def plot_probe(path: Path, rows: list[dict], title: str, n: dict[str, int]) -> None:
    """Horizontal bars of ``mean_change`` with ``lo``–``hi`` whiskers, rows in the order given (top
    down), one panel per class (real, fake), red where p(fake) rose, blue where it fell, a zero line; ``n``: faces per class."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["intervention"] for r in rows))
    height = 1.4 + 0.19 * len(names)
    fig, axes = plt.subplots(1, len(CLASSES), sharex=True, sharey=True, squeeze=False, figsize=(11.0, height),
                             layout="constrained")       # room for the two-line title, whatever the height
    y = np.arange(len(names))
    for ax, cls in zip(axes[0], CLASSES):
        by_name = {r["intervention"]: r for r in rows if r["class"] == cls}
        mean = np.array([by_name[n]["mean_change"] if n in by_name else np.nan for n in names], dtype=float)
        lo = np.array([by_name[n]["lo"] if n in by_name else np.nan for n in names], dtype=float)
        hi = np.array([by_name[n]["hi"] if n in by_name else np.nan for n in names], dtype=float)
        shown = ~np.isnan(mean)
        ax.barh(y[shown], mean[shown], height=0.7,
                color=[TOWARD_FAKE if m > 0 else TOWARD_REAL for m in mean[shown]])
        ax.errorbar(mean[shown], y[shown], xerr=np.stack([mean[shown] - lo[shown], hi[shown] - mean[shown]]),
                    fmt="none", ecolor="#333333", elinewidth=0.8, capsize=1.5)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_title(f"{cls} faces ({n[cls]})", fontsize=10)
        ax.set_xlabel("change of p(fake), edited − original (95% interval)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    axes[0][0].set_yticks(y, names, fontsize=7)
    axes[0][0].set_ylim(len(names) - 0.5, -0.5)
    fig.suptitle(f"{title}\nred: toward fake, blue: toward real", fontsize=9)
    fileio.save_figure(fig, path, dpi=90)
    plt.close(fig)
