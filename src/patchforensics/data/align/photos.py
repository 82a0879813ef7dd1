"""``align``: every face of a folder of photos cut as an FFHQ / CelebA-HQ crop, split train/val/test."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ...core import fileio
from ...core.config import require
from ...core.imageio import ImageLoadError, SkipLog, load_rgb, require_images
from ..prepare import SPLITS, assign_splits, png_bytes
from .geometry import STYLES, align_faces
from .landmarks import FaceLandmarker


@dataclass
class AlignConfig:
    """Options of ``patchforensics align``.

    ``style`` ffhq | celebahq; ``size`` output side in pixels; ``faces``
    'largest' (one per picture) or 'all'; ``split``/``seed`` assign each source
    picture (all its faces) to train/val/test as ``prepare`` does;
    ``max_faces`` caps the faces the mesh looks for; ``min_confidence`` is the
    detector's threshold.
    """

    src: str
    out: str
    style: str = "ffhq"
    size: int = 256
    faces: str = "largest"
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    max_faces: int = 10
    min_confidence: float = 0.5
    force: bool = False

    def validate(self) -> None:
        validate_face_options(self)
        require(Path(self.src).resolve() != Path(self.out).resolve(), "out", "must differ from the source folder")


def validate_face_options(cfg) -> None:
    """Check the options ``align`` and ``align-video`` share (style, size, faces, split, detector)."""
    require(cfg.style in STYLES, "style", f"must be one of {', '.join(STYLES)}")
    require(cfg.size >= 16, "size", "must be at least 16 pixels")
    require(cfg.faces in ("largest", "all"), "faces", "must be 'largest' or 'all'")
    require(len(cfg.split) == 3 and all(f >= 0 for f in cfg.split) and abs(sum(cfg.split) - 1) < 1e-6,
            "split", "give three non-negative fractions summing to 1, e.g. 0.7,0.1,0.2")
    require(cfg.max_faces >= 1, "max_faces", "must be >= 1")
    require(0.0 < cfg.min_confidence < 1.0, "min_confidence", "must be between 0 and 1")


@dataclass
class AlignResult:
    out: Path
    counts: dict[str, int]               # aligned faces written per split
    images: int                          # usable source pictures
    images_aligned: int                  # pictures with at least one face written
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.images_aligned / self.images if self.images else 0.0


def align_images(cfg: AlignConfig, progress: bool = True) -> AlignResult:
    """Align every picture under ``cfg.src`` into ``cfg.out/{train,val,test}/*.png``.

    Writes ``report.json`` (per picture: split, size, faces found, and per face
    written its output, mesh box, five landmarks, crop square and
    output→source affine map) and ``summary.json`` (options, counts, success
    rate, skipped pictures with reasons: unreadable, or no face found).
    Output names are the source path relative to ``src`` with ``/`` → ``__``;
    with ``faces='all'`` a ``_face<rank>`` suffix is added (0 = largest).
    """
    cfg.validate()
    paths = require_images(cfg.src)
    with fileio.atomic_dir(cfg.out, cfg.force) as tmp:   # --force replaces OUT whole, never merges into it
        result = _align_images_into(cfg, paths, tmp, progress)
    return replace(result, out=Path(cfg.out))


def _align_images_into(cfg: AlignConfig, paths: list[Path], out: Path, progress: bool) -> AlignResult:
    src = Path(cfg.src)
    style = STYLES[cfg.style]
    splits = assign_splits(len(paths), cfg.split, cfg.seed)
    counts = {s: 0 for s in SPLITS}
    skipped, report, usable, aligned_images = SkipLog(), [], 0, 0
    with FaceLandmarker(cfg.max_faces, cfg.min_confidence) as landmarker:
        for path, split in tqdm(list(zip(paths, splits)), desc="align", disable=not progress, unit="img"):
            rel = path.relative_to(src).as_posix() if path != src else path.name
            try:
                im = load_rgb(path)
            except ImageLoadError as e:
                skipped.add(e)
                continue
            usable += 1
            rgb = np.asarray(im)
            meshes = landmarker.detect(rgb)
            faces = align_faces(rgb, meshes, style, cfg.size, cfg.faces)
            stem = Path(rel).with_suffix("").as_posix().replace("/", "__")
            entry = {"source": rel, "split": split, "width": im.width, "height": im.height,
                     "faces_found": len(meshes), "faces": []}
            for face in faces:
                name = f"{split}/{face.file_name(stem, cfg.faces)}"
                fileio.write_bytes(out / name, png_bytes(face.image))
                entry["faces"].append(face.report(name, cfg.size))
                counts[split] += 1
            if faces:
                aligned_images += 1
            else:
                skipped.add(ImageLoadError(path, "no face found" if not meshes
                                           else "face square outside the picture"))
            report.append(entry)
    fileio.write_json(out / "report.json", {"style": cfg.style, "size": cfg.size, "images": report})
    result = AlignResult(out, counts, usable, aligned_images, skipped.as_list())
    fileio.write_json(out / "summary.json", {
        "source": str(src), "style": cfg.style, "size": cfg.size, "faces": cfg.faces,
        "split": list(cfg.split), "seed": cfg.seed, "counts": counts, "images": usable,
        "images_aligned": aligned_images, "success_rate": round(result.success_rate, 4),
        "skipped": result.skipped})
    return result
