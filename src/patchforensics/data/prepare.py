"""``prepare``: bring any folder of images through one fixed pipeline.

The paper's main data lesson is that real and generated images must pass
through the *same* preprocessing, or a classifier learns the file format and
resampler instead of the generator. :func:`standardize` is that pipeline
(decode → RGB with EXIF orientation → optional JPEG round trip at the source
resolution → optional centre crop to a square → or, with ``jpeg_size``, the
JPEG round trip after a Lanczos resize to that size → Lanczos resize → PNG); every data builder in the package reuses
it. ``--jpeg-quality 75 --jpeg-size 256`` is the recipe of the shared faces data
(version 2): Lanczos to 256, JPEG q75, Lanczos to 128.
"""
from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..core import fileio
from ..core.config import require
from ..core.imageio import ImageLoadError, SkipLog, load_rgb, require_images
from .transforms import LANCZOS, center_crop, jpeg

SPLITS = ("train", "val", "test")


@dataclass
class PrepareConfig:
    """Options of ``patchforensics prepare``.

    ``size`` is the output side in pixels (the square side with ``crop='center'``,
    the shorter side with ``crop='none'``); ``jpeg_quality`` (1–100) applies one
    JPEG round trip at the source resolution; ``split`` gives train/val/test
    fractions; ``seed`` fixes the split.
    """

    src: str
    out: str
    size: int = 128
    jpeg_quality: int | None = None
    jpeg_size: int | None = None
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    crop: str = "center"
    seed: int = 0
    force: bool = False

    def validate(self) -> None:
        require(self.size >= 8, "size", "must be at least 8 pixels")
        require(self.jpeg_quality is None or 1 <= self.jpeg_quality <= 100, "jpeg_quality",
                "must be between 1 and 100")
        require(self.jpeg_size is None or (self.jpeg_quality is not None and self.jpeg_size >= self.size),
                "jpeg_size", "goes with --jpeg-quality and must be at least --size")
        require(len(self.split) == 3 and all(f >= 0 for f in self.split) and abs(sum(self.split) - 1) < 1e-6,
                "split", "give three non-negative fractions summing to 1, e.g. 0.7,0.1,0.2")
        require(self.crop in ("center", "none"), "crop", "must be 'center' or 'none'")
        require(Path(self.src).resolve() != Path(self.out).resolve(), "out", "must differ from the source folder")


def standardize(im: Image.Image, size: int, jpeg_quality: int | None = None, crop: str = "center",
                jpeg_size: int | None = None) -> Image.Image:
    """The shared preprocessing of one decoded RGB image (see module docstring)."""
    if jpeg_quality is not None and not jpeg_size:
        im = jpeg(im, jpeg_quality)                       # at the source resolution
    if crop == "center":
        im = center_crop(im, min(im.size))
    if jpeg_quality is not None and jpeg_size:
        im = jpeg(_resize(im, jpeg_size), jpeg_quality)   # at the intermediate size
    return _resize(im, size)


def _resize(im: Image.Image, size: int) -> Image.Image:
    """Lanczos resize so the shorter side is ``size`` (a square becomes ``size × size``)."""
    w, h = im.size
    scale = size / min(w, h)
    return im.resize((max(1, round(w * scale)), max(1, round(h * scale))), LANCZOS)


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def assign_splits(n: int, fractions, seed: int) -> list[str]:
    """Split labels for ``n`` items in a fixed order: a seeded permutation, then
    the first ``round(f_train*n)`` go to train, the next to val, the rest to test."""
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    labels = [""] * n
    for rank, i in enumerate(order):
        labels[i] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return labels


@dataclass
class PrepareResult:
    out: Path
    counts: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)


def prepare(cfg: PrepareConfig, progress: bool = True) -> PrepareResult:
    """Process ``cfg.src`` into ``cfg.out/{train,val,test}/*.png`` plus ``manifest.csv``
    (source, sha256 of the source file, original size, split, output) and
    ``summary.json`` (options, counts, skipped files with reasons).

    Output names are the source path relative to ``src`` with ``/`` → ``__``, so
    nested folders cannot collide. Exact duplicate files are skipped.
    """
    cfg.validate()
    src = Path(cfg.src)
    paths = require_images(src)
    with fileio.atomic_dir(cfg.out, cfg.force) as tmp:   # --force replaces OUT whole, never merges into it
        result = _prepare_into(cfg, paths, tmp, progress)
    return replace(result, out=Path(cfg.out))


def _prepare_into(cfg: PrepareConfig, paths: list[Path], out: Path, progress: bool) -> PrepareResult:
    src = Path(cfg.src)
    splits = assign_splits(len(paths), cfg.split, cfg.seed)
    rows, skipped, seen = [], SkipLog(), {}
    counts = {s: 0 for s in SPLITS}
    for path, split in tqdm(list(zip(paths, splits)), desc="prepare", disable=not progress, unit="img"):
        rel = path.relative_to(src).as_posix() if path != src else path.name
        try:
            im = load_rgb(path)   # first: it refuses FIFOs (reading one blocks forever) and bombs
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in seen:
                raise ImageLoadError(path, f"exact duplicate of {seen[digest]}")
        except OSError as e:
            skipped.add(ImageLoadError(path, f"cannot read ({e.strerror or e})"))
            continue
        except ImageLoadError as e:
            skipped.add(e)
            continue
        seen[digest] = rel
        w, h = im.size
        name = Path(rel).with_suffix(".png").as_posix().replace("/", "__")
        fileio.write_bytes(out / split / name, png_bytes(standardize(im, cfg.size, cfg.jpeg_quality, cfg.crop,
                                                                          cfg.jpeg_size)))
        counts[split] += 1
        rows.append([rel, digest, w, h, split, f"{split}/{name}"])
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["source", "sha256", "width", "height", "split", "output"])
    writer.writerows(rows)
    fileio.write_text(out / "manifest.csv", buf.getvalue())
    fileio.write_json(out / "summary.json", {
        "source": str(src), "size": cfg.size, "jpeg_quality": cfg.jpeg_quality, "jpeg_size": cfg.jpeg_size,
        "crop": cfg.crop,
        "split": list(cfg.split), "seed": cfg.seed, "resampler": "lanczos", "counts": counts,
        "skipped": skipped.as_list()})
    return PrepareResult(out, counts, skipped.as_list())
