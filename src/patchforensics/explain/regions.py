"""``regions``: which face parts hold the most predictive patches.

Each source image of a ``patches`` folder is segmented into fine classes
(left eye, right eye, left brow, …) and every top patch goes to the class
holding the largest share of its pixels, *normalised by that class's size in
the image*, then to that class's region (both eyes -> ``eye``): the seed's rule,
under which a small part such as one eye wins when a patch covers much of it.
``normalise="region"`` groups the classes first and normalises by the whole
region's size instead (both eyes together), which favours large regions. The same is done
for one random patch position drawn in the same image for every top patch,
the baseline a uniform-random detector would give (with ``patches --unique``
that is exactly one random patch per image). The segmenters (``mediapipe``, the default,
and ``bisenet``) are in :mod:`.segmenters`.

Images where no face is found are counted and listed, their patches are kept
out of the shares. Output (default ``<patches_dir>/regions`` or
``regions_bisenet``)::

    regions.json          counts and shares per class and region, top vs random, no-face files
    regions.csv           one row per top patch: its region and its random baseline's
    histogram.png         top-patch vs random shares, reals and fakes side by side
    segmentation_examples.png  a few images with their region maps (to check them by eye)
    {reals,fakes}/<region>.png  grid of the top patches assigned to each region, best first
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..core import fileio
from ..core.config import ConfigError, require
from ..core.device import resolve_device
from ..core.imageio import ImageLoadError, SkipLog, load_rgb
from ..data.transforms import TransformConfig, eval_image, parse_corruptions
from .runs import CLASS_DIRS
from .patches import cut_box, make_grid, read_patch_set
from .segmenters import (CELEBAMASK_CLASSES, SEGMENTERS, BiSeNet, BiSeNetSegmenter, MediapipeSegmenter, Segmenter,
                         load_bisenet)

#: how a patch's pixels are normalised: by its fine class's size (the seed's rule) or its region's
NORMALISE = ("class", "region")
#: the segmenters' names stay importable from here (tests, docs/explain.md)
__all__ = ["CELEBAMASK_CLASSES", "NORMALISE", "SEGMENTERS", "BiSeNet", "BiSeNetSegmenter", "MediapipeSegmenter",
           "RegionsConfig", "Segmenter", "assign_region", "build_segmenter", "class_summary", "load_bisenet",
           "plot_examples", "plot_histograms", "region_shares", "run_regions"]


# ------------------------------------------------------------- assignment
def region_shares(labels: np.ndarray, box, n_labels: int) -> np.ndarray:
    """Per label: (pixels of the label inside ``box``) / (pixels of the label in the image).

    ``labels``: ``(H, W)`` label ids; ``box``: (top, left, bottom, right), may leave the
    image (outside pixels count for no label). Returns ``(n_labels,)`` in [0, 1].
    """
    patch = cut_box(labels.astype(np.int16), box, -1)
    inside = np.bincount(patch[patch >= 0].ravel(), minlength=n_labels)
    total = np.bincount(labels.ravel(), minlength=n_labels)
    return inside / np.maximum(total, 1)


def assign_region(labels: np.ndarray, box, region_of: np.ndarray, normalise: str = "class") -> int:
    """The region of ``box``: the fine class (``labels``' ids) with the largest share of
    its own pixels inside the box, mapped to its region by ``region_of`` (the seed's
    rule, ``normalise="class"``); or, with ``normalise="region"``, the region with the
    largest share of its pixels after grouping (both eyes counted as one region)."""
    region_of = np.asarray(region_of)
    if normalise == "class":
        return int(region_of[np.argmax(region_shares(labels, box, len(region_of)))])
    return int(np.argmax(region_shares(region_of[labels], box, int(region_of.max()) + 1)))


# ----------------------------------------------------------------- config
@dataclass
class RegionsConfig:
    """Options of ``patchforensics regions``."""

    patches_dir: str
    segmenter: str = "mediapipe"
    bisenet_weights: str | None = None
    bisenet_size: int = 512
    output: str | None = None
    seed: int = 0
    grid_max: int = 225
    examples: int = 4
    device: str = "auto"
    force: bool = False
    normalise: str = "class"        # class: the seed's per-class normalisation; region: group first

    def validate(self) -> None:
        resolve_device(self.device)     # a device this machine lacks fails here, even for mediapipe (CPU)
        require(self.segmenter in SEGMENTERS, "segmenter", f"choose one of {', '.join(SEGMENTERS)}")
        require(self.normalise in NORMALISE, "normalise", f"choose one of {', '.join(NORMALISE)}")
        require(self.bisenet_size >= 32, "bisenet_size", "must be >= 32 pixels")
        require(self.grid_max > 0, "grid_max", "must be > 0")
        require(self.examples >= 0, "examples", "must be >= 0")
        if not (Path(self.patches_dir) / "patches.json").is_file():
            raise FileNotFoundError(f"{self.patches_dir} has no patches.json; pass a folder written by "
                                    "'patchforensics patches' (results/<name>/<partition>/epoch_<which>/"
                                    "<dataset>/patches)")
        if self.segmenter == "bisenet" and not self.bisenet_weights:
            raise ConfigError("bisenet_weights: the bisenet segmenter needs --bisenet-weights FILE, a 19-class "
                              "CelebAMask-HQ face-parsing checkpoint (.safetensors or .pth); or use the "
                              "built-in --segmenter mediapipe")

    def output_dir(self) -> Path:
        if self.output:
            return Path(self.output)
        return Path(self.patches_dir) / ("regions" if self.segmenter == "mediapipe" else f"regions_{self.segmenter}")


def build_segmenter(cfg: RegionsConfig) -> Segmenter:
    if cfg.segmenter == "mediapipe":
        return MediapipeSegmenter()
    return BiSeNetSegmenter(load_bisenet(cfg.bisenet_weights), cfg.bisenet_size, resolve_device(cfg.device))


# -------------------------------------------------------------------- run
def run_regions(cfg: RegionsConfig, segmenter: Segmenter | None = None, progress: bool = True) -> Path:
    """Assign every top patch (and a random baseline patch) to a face region; returns the output folder."""
    cfg.validate()
    meta = json.loads((Path(cfg.patches_dir) / "patches.json").read_text())
    sets = {cls: read_patch_set(cfg.patches_dir, cls) for cls in CLASS_DIRS.values()}
    out_dir = cfg.output_dir()
    fileio.ensure_new_output(out_dir, cfg.force)
    own_segmenter = segmenter is None
    segmenter = segmenter or build_segmenter(cfg)
    tcfg = TransformConfig(**meta["transform"])
    corruptions = parse_corruptions(meta["corruptions"])
    boxes = np.load(Path(cfg.patches_dir) / "boxes.npy", allow_pickle=False)    # (H', W', 4)
    grid_h, grid_w = boxes.shape[:2]
    rng = np.random.default_rng(cfg.seed)
    skipped = SkipLog()
    summary: dict = {"segmenter": segmenter.name, "regions": list(segmenter.regions), "seed": cfg.seed,
                     "normalise": cfg.normalise, "patches_dir": str(cfg.patches_dir), "classes": {}}
    rows, examples = [], {}
    try:
        for cls, data in sets.items():
            files = [str(f) for f in data["files"]]
            top = np.full(len(files), -1)             # region id per top patch; -1 = no face / unreadable
            random = np.full(len(files), -1)
            random_pos = np.stack([rng.integers(0, grid_h, len(files)), rng.integers(0, grid_w, len(files))], 1)
            no_face: list[str] = []
            by_file: dict[str, list[int]] = {}
            for i, f in enumerate(files):
                by_file.setdefault(f, []).append(i)
            for f, idx in tqdm(by_file.items(), desc=f"regions {cls}", disable=not progress, leave=False):
                try:
                    rgb = np.asarray(eval_image(load_rgb(f), tcfg, corruptions))
                except ImageLoadError as e:
                    skipped.add(e)
                    continue
                labels = segmenter.segment(rgb)
                if labels is None:
                    no_face.append(f)
                    continue
                if len(examples.get(cls, [])) < cfg.examples:
                    examples.setdefault(cls, []).append((rgb, segmenter.region_of[labels]))
                for i in idx:
                    top[i] = assign_region(labels, data["box"][i], segmenter.region_of, cfg.normalise)
                    random[i] = assign_region(labels, boxes[tuple(random_pos[i])], segmenter.region_of,
                                              cfg.normalise)
            summary["classes"][cls] = class_summary(segmenter.regions, top, random, no_face, files)
            for i, f in enumerate(files):
                rows.append([cls, i, f, *data["pos"][i], _name(segmenter.regions, top[i]), *random_pos[i],
                             _name(segmenter.regions, random[i])])
            sets[cls]["region"] = top
    finally:
        if own_segmenter:
            segmenter.close()
    summary["skipped"] = skipped.as_list()

    with fileio.atomic_dir(out_dir, cfg.force) as tmp:
        for cls, data in sets.items():
            for r, region in enumerate(segmenter.regions):
                chosen = np.flatnonzero(data["region"] == r)[:cfg.grid_max]   # already best first
                if len(chosen):
                    fileio.save_image(Image.fromarray(make_grid(data["patch"][chosen])), tmp / cls / f"{region}.png")
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["class", "rank", "file", "y", "x", "region", "random_y", "random_x", "random_region"])
        writer.writerows(rows)
        fileio.write_text(tmp / "regions.csv", buf.getvalue())
        plot_histograms(tmp / "histogram.png", summary, f"{meta['name']} on {meta['dataset']}")
        if examples:
            plot_examples(tmp / "segmentation_examples.png", examples, segmenter.regions)
        fileio.write_json(tmp / "regions.json", summary)
    return out_dir


def _name(regions: tuple[str, ...], region_id: int) -> str:
    return regions[region_id] if region_id >= 0 else ""


def class_summary(regions: tuple[str, ...], top: np.ndarray, random: np.ndarray, no_face: list[str],
                  files: list[str]) -> dict:
    """Counts and shares per region for one class (patches without a region left out of the shares)."""
    n_top, n_random = int((top >= 0).sum()), int((random >= 0).sum())
    no_face_set = set(no_face)
    counts = {}
    for r, region in enumerate(regions):
        t, b = int((top == r).sum()), int((random == r).sum())
        counts[region] = {"top": t, "random": b, "top_share": t / n_top if n_top else 0.0,
                          "random_share": b / n_random if n_random else 0.0}
    return {"patches": len(files), "assigned": n_top, "no_face_images": len(no_face),
            "no_face_patches": sum(f in no_face_set for f in files), "no_face_files": no_face,
            "counts": counts}


# ------------------------------------------------------------------ figures
def plot_histograms(path: Path, summary: dict, title: str) -> None:
    """Per class, the share of top patches in each region next to the random baseline's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(summary["classes"])
    fig, axes = plt.subplots(1, len(classes), figsize=(6.2 * len(classes), 4.2), squeeze=False)
    for ax, cls in zip(axes[0], classes):
        c = summary["classes"][cls]
        regions = [r for r in summary["regions"] if c["counts"][r]["top"] or c["counts"][r]["random"]]
        regions.sort(key=lambda r: -c["counts"][r]["top"])
        x = np.arange(len(regions))
        top = [c["counts"][r]["top_share"] for r in regions]
        base = [c["counts"][r]["random_share"] for r in regions]
        bars = ax.bar(x - 0.2, top, 0.4, label="top patches", color="#d95f02")
        ax.bar(x + 0.2, base, 0.4, label="random patches", color="#7570b3")
        for bar, r in zip(bars, regions):
            ax.annotate(str(c["counts"][r]["top"]), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, regions, rotation=45, ha="right")
        ax.set_ylabel("share of patches")
        note = f", no face in {c['no_face_images']} images" if c["no_face_images"] else ""
        ax.set_title(f"{cls}: {c['assigned']} patches{note}", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title} ({summary['segmenter']} regions)", fontsize=10)
    fig.tight_layout()
    fileio.save_figure(fig, path, dpi=100)
    plt.close(fig)


def plot_examples(path: Path, examples: dict[str, list], regions: tuple[str, ...]) -> None:
    """A few images with their region maps, so a person can judge the segmentation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cmap = plt.get_cmap("tab10" if len(regions) <= 10 else "tab20")
    colors = np.array([cmap(i)[:3] for i in range(len(regions))])
    rows = [(cls, rgb, labels) for cls, items in examples.items() for rgb, labels in items]
    fig, axes = plt.subplots(2, len(rows), figsize=(1.1 * len(rows) + 1.3, 2.5), squeeze=False)
    for k, (cls, rgb, labels) in enumerate(rows):
        blend = 0.45 * rgb / 255.0 + 0.55 * colors[labels]
        axes[0, k].imshow(rgb)
        axes[1, k].imshow(blend)
        axes[0, k].set_title(cls, fontsize=8)
        for ax in axes[:, k]:
            ax.set_axis_off()
    fig.legend(handles=[Patch(color=colors[i], label=r) for i, r in enumerate(regions)],
               loc="center right", fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.01, right=1 - 1.2 / (1.1 * len(rows) + 1.3), top=0.9, bottom=0.01,
                        wspace=0.04, hspace=0.04)
    fileio.save_figure(fig, path, dpi=100)
    plt.close(fig)
