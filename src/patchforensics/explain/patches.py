"""``patches``: the most predictive patches of a dataset.

Every output position of a patch model sees one receptive-field box of the
input. Over the whole dataset this keeps, per class, the ``topn`` positions
with the highest probability of their *true* class (reals: P(real), fakes:
P(fake)), at most one per image with ``unique``, and cuts their boxes out of
the evaluation image (boxes reaching past the border are padded with
mid-grey, the colour of the network's zero padding). A bounded min-heap keeps
memory at ``topn`` patches whatever the dataset size.

Ranking uses the logit margin (true minus other logit) rather than the
probability, which saturates at 1.0 in float32 and would make thousands of
patches tie. Ties keep the earlier image/position.

Output: ``results/<name>/<partition>/epoch_<which>/<dataset>/patches/``::

    patches.json                 options, model, receptive field, transform, counts, skipped files
    boxes.npy                    (H', W', 4) int: the receptive-field box of every output position
    {reals,fakes}_easiest.npz    patch (N, h, w, 3) uint8, pos (N, 2) (y, x), box (N, 4)
                                 (top, left, bottom, right, may leave the image), value (N,)
                                 P(true class), margin (N,), files (N,)
    {reals,fakes}_easiest.csv    rank, file, y, x, box, value, margin (best first)
    {reals,fakes}_easiest_grid.png  the best ``grid_max`` patches in a grid, best first
"""
from __future__ import annotations

import heapq
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..core import fileio
from ..core.config import require
from ..core.imageio import SkipLog
from ..data.dataset import REAL
from ..evaluation.evaluate import TestConfig
from ..scoring.engine import Engine
from .runs import CLASS_DIRS, image_array, open_explain_run, save_npy

#: Fill value of cut-outs outside the image: mid-grey, i.e. 0 in the network's [-1, 1] input.
PAD_VALUE = 128


@dataclass(order=True)
class _Entry:
    key: tuple[float, int]                               # (margin, -sequence): heap order
    file: str = field(compare=False)
    pos: tuple[int, int] = field(compare=False)
    box: tuple[int, int, int, int] = field(compare=False)
    value: float = field(compare=False)
    patch: np.ndarray = field(compare=False, repr=False)


class TopPatches:
    """The ``n`` entries with the largest key seen so far (a bounded min-heap)."""

    def __init__(self, n: int):
        self.n = n
        self.heap: list[_Entry] = []

    def would_keep(self, key: tuple[float, int]) -> bool:
        return len(self.heap) < self.n or key > self.heap[0].key

    def push(self, entry: _Entry) -> None:
        if len(self.heap) < self.n:
            heapq.heappush(self.heap, entry)
        else:
            heapq.heappushpop(self.heap, entry)

    def best_first(self) -> list[_Entry]:
        return sorted(self.heap, reverse=True)


def cut_box(array: np.ndarray, box: Sequence[int], fill) -> np.ndarray:
    """Crop ``array[top:bottom, left:right]`` (``(H, W[, C])``), filling the parts of the
    box that lie outside the array with ``fill``; the result is always box-sized."""
    top, left, bottom, right = (int(v) for v in box)
    h, w = array.shape[:2]
    out = np.full((bottom - top, right - left) + array.shape[2:], fill, dtype=array.dtype)
    t, l, b, r = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
    if b > t and r > l:
        out[t - top:b - top, l - left:r - left] = array[t:b, l:r]
    return out


def make_grid(patches: np.ndarray, cols: int | None = None, gap: int = 1, background: int = 255) -> np.ndarray:
    """``(N, h, w, 3)`` uint8 -> one ``(rows*(h+gap)-gap, cols*(w+gap)-gap, 3)`` image, row-major."""
    n, h, w = patches.shape[:3]
    cols = cols or max(1, int(np.ceil(np.sqrt(n))))
    rows = max(1, int(np.ceil(n / cols)))
    grid = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), background, dtype=np.uint8)
    for i in range(n):
        y, x = divmod(i, cols)
        grid[y * (h + gap):y * (h + gap) + h, x * (w + gap):x * (w + gap) + w] = patches[i]
    return grid


def save_npz(path: Path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    fileio.write_bytes(path, buf.getvalue())


@dataclass
class PatchesConfig(TestConfig):
    """Options of ``patchforensics patches`` (those of ``test`` plus the selection)."""

    topn: int = 10000
    unique: bool = False
    grid_max: int = 400

    def validate(self) -> None:
        super().validate()
        require(self.topn > 0, "topn", "must be > 0")
        require(self.grid_max > 0, "grid_max", "must be > 0")


def run_patches(cfg: PatchesConfig, engine: Engine | None = None, progress: bool = True) -> Path:
    """Find, cut out and save the top patches of each class; returns the ``patches`` folder."""
    run = open_explain_run(cfg, engine, "patches")
    corruptions, samples, engine = run.corruptions, run.samples, run.engine
    card = engine.card
    out_dir = run.out_dir / "patches"
    fileio.ensure_new_output(out_dir, cfg.force)

    size = card.input_side
    rf = card.receptive_field(size)
    boxes = rf.boxes
    width = rf.output_size[1]
    positions = rf.output_size[0] * width
    heaps = {label: TopPatches(cfg.topn) for label in CLASS_DIRS}
    n_images = {label: 0 for label in CLASS_DIRS}
    skipped = SkipLog()
    for batch, logits in engine.batches(samples, corruptions, cfg.batch_size, cfg.num_workers, skipped,
                                        progress, f"patches {cfg.dataset_name}"):
        if tuple(logits.shape[2:]) != rf.output_size:
            raise RuntimeError(f"model output {tuple(logits.shape[2:])} does not match its receptive-field "
                               f"grid {rf.output_size} for {size}px inputs")
        labels = batch["label"]
        sign = torch.where(labels == REAL, 1.0, -1.0)[:, None]
        margin = sign * (logits[:, 1] - logits[:, 0]).reshape(len(labels), -1)     # (B, H'*W')
        for j, sample_index in enumerate(batch["index"].tolist()):
            label = int(labels[j])
            n_images[label] += 1
            heap, row = heaps[label], margin[j]
            if cfg.unique:
                candidates = row.argmax().reshape(1)      # first maximum in raster order
            else:
                candidates = torch.topk(row, min(cfg.topn, positions)).indices.sort().values
            # best first, ties in raster order: keys only decrease along the loop, so it can
            # stop at the first patch the heap rejects
            candidates = candidates[torch.argsort(row[candidates], descending=True, stable=True)]
            image = None
            for flat in candidates.tolist():
                key = (float(row[flat]), -(sample_index * positions + flat))
                if not heap.would_keep(key):
                    break
                if image is None:
                    image = image_array(batch["image"][j])
                y, x = divmod(flat, width)
                box = tuple(int(v) for v in boxes[y, x])
                p_true = float(torch.sigmoid(row[flat]))
                heap.push(_Entry(key, batch["paths"][j], (y, x), box, p_true, cut_box(image, box, PAD_VALUE)))

    with fileio.atomic_dir(out_dir, cfg.force) as tmp:
        counts = {}
        for label, cls in CLASS_DIRS.items():
            best = heaps[label].best_first()
            counts[cls] = {"images": n_images[label], "patches": len(best)}
            write_patch_set(tmp, f"{cls}_easiest", best, rf.size, cfg.grid_max)
        meta = {
            "name": card.name, "checkpoint": str(cfg.checkpoint), "which_epoch": cfg.which_epoch,
            "model": card.architecture, "dataset": cfg.dataset_name, "partition": cfg.partition,
            "corruptions": [str(c) for c in corruptions], "topn": cfg.topn, "unique": cfg.unique,
            "input_size": size, "pad_value": PAD_VALUE,
            "transform": {"load_size": card.load_size, "fine_size": card.fine_size, "patch_model": card.patch},
            "receptive_field": {"size": list(rf.size), "stride": list(rf.stride), "offset": list(rf.offset),
                                "output_size": list(rf.output_size)},
            "counts": counts, "skipped": skipped.as_list(),
        }
        fileio.write_json(tmp / "patches.json", meta)
        save_npy(tmp / "boxes.npy", boxes)
    return out_dir


def write_patch_set(folder: Path, stem: str, entries: list[_Entry], rf_size: tuple[int, int],
                    grid_max: int) -> None:
    """Save one class's patches (best first) as ``.npz``, ``.csv`` and a grid image."""
    patches = (np.stack([e.patch for e in entries]) if entries
               else np.zeros((0, rf_size[0], rf_size[1], 3), np.uint8))
    save_npz(folder / f"{stem}.npz", patch=patches,
             pos=np.array([e.pos for e in entries], dtype=np.int64).reshape(-1, 2),
             box=np.array([e.box for e in entries], dtype=np.int64).reshape(-1, 4),
             value=np.array([e.value for e in entries], dtype=np.float64),
             margin=np.array([e.key[0] for e in entries], dtype=np.float64),
             files=np.array([e.file for e in entries], dtype=str))
    lines = ["rank,file,y,x,top,left,bottom,right,value,margin"]
    for rank, e in enumerate(entries):
        f = e.file.replace('"', '""')
        lines.append(f'{rank},"{f}",{e.pos[0]},{e.pos[1]},{",".join(map(str, e.box))},'
                     f"{e.value:.6f},{e.key[0]:.6f}")
    fileio.write_text(folder / f"{stem}.csv", "\n".join(lines) + "\n")
    if entries:
        fileio.save_image(Image.fromarray(make_grid(patches[:grid_max])), folder / f"{stem}_grid.png")


def read_patch_set(patches_dir: str | Path, cls: str) -> dict[str, np.ndarray]:
    """Load ``<cls>_easiest.npz`` (``cls`` = reals | fakes) written by :func:`run_patches`."""
    path = Path(patches_dir) / f"{cls}_easiest.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run 'patchforensics patches' first")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
