"""``detect``: screen images (files, folders, glob patterns) with a trained patch classifier.

Expands the inputs, scores every face of each image with a :class:`~.detector.Detector`
and writes the heatmaps (:mod:`~.render`) and the report (:mod:`~.report`); the text
forms of the result are in :mod:`~.results`. How a face is scored: docs/detect.md.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from ..core import fileio
from ..core.config import require
from ..core.imageio import FORMATS_TEXT, ImageLoadError, SkipLog, list_images, load_rgb
from ..data.align import STYLES
from ..scoring.engine import Engine
from ..scoring.runtime import BACKENDS
from .detector import DEFAULT_ALIGN_STYLE, DEFAULT_FACE_MODE, DEFAULT_THRESHOLD, FACE_MODES, Detector, open_detector
from .render import render_overlay, render_screened
from .report import ReportFace, png_data_url, write_report
from .results import DetectResult, ImageResult

#: height (px) of a face's picture in the report: the model's input, not enlarged
REPORT_SIDE = 128


@dataclass
class DetectConfig:
    """Options of ``patchforensics detect``."""

    paths: list[str]
    model: str | None = None            # checkpoint folder or .onnx; None = the bundled detector
    which_epoch: str | None = None      # default: bestval (bundled: weights)
    backend: str = "auto"               # one of BACKENDS
    threshold: str = DEFAULT_THRESHOLD  # stored threshold name, or a p(fake) value
    heatmaps: str | None = None         # folder for overlay PNGs
    report: str | None = None           # one offline HTML page of every face, sorted by p(fake)
    faces: str = DEFAULT_FACE_MODE      # one of FACE_MODES
    align_style: str = DEFAULT_ALIGN_STYLE
    top_k: int = 3
    batch_size: int = 32
    device: str = "auto"
    force: bool = False

    def validate(self) -> None:
        require(bool(self.paths), "paths", "give at least one image, folder or glob pattern")
        require(self.faces in FACE_MODES, "faces", f"must be one of {', '.join(FACE_MODES)}")
        require(self.align_style in STYLES, "align_style", f"must be one of {', '.join(STYLES)}")
        require(self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}")
        require(self.batch_size > 0, "batch_size", "must be > 0")
        require(self.top_k > 0, "top_k", "must be > 0")
        require(self.report is None or Path(self.report).suffix.lower() in (".html", ".htm"), "report",
                "give a file name ending in .html, e.g. --report screening.html")


def expand_paths(paths: Sequence[str], skipped: SkipLog | None = None) -> list[Path]:
    """Files, folders (searched recursively for images) and glob patterns -> image files.

    Raises ``FileNotFoundError`` for a path that does not exist or a pattern or
    folder with no images, before any work starts. An explicitly named file is
    always kept (if it is not an image it is reported as unreadable later). With
    ``skipped`` given, the files a folder scan passes over (another extension; not
    hidden ones, :func:`~patchforensics.core.imageio.list_images`) are added to it and
    kept in the list in their place, so that each is named where it lies.
    """
    found: list[Path] = []

    def scan(folder: str) -> tuple[list[Path], list[Path]]:
        """The images under ``folder``, and the list to add: them, with the passed-over files when named."""
        if skipped is None:
            images = list_images(folder)                   # raises FileNotFoundError with a hint
            return images, images
        passed = SkipLog()
        images = list_images(folder, skipped=passed)
        skipped.skipped.extend(passed.skipped)
        return images, sorted(images + [Path(p) for p, _ in passed.skipped])

    for raw in paths:
        if glob.has_magic(raw) and not Path(raw).exists():
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                raise FileNotFoundError(f"the pattern {raw!r} matches nothing")
            for m in matches:
                found.extend(scan(m)[1] if Path(m).is_dir() else [Path(m)])
            continue
        images, listed = scan(raw)
        if not images:
            raise FileNotFoundError(f"{raw}: no images found in this folder (accepted: {FORMATS_TEXT})")
        found.extend(listed)
    seen: set[str] = set()
    unique = []
    for p in found:
        if str(p) not in seen:
            seen.add(str(p))
            unique.append(p)
    return unique


def heatmap_names(paths: Sequence[Path]) -> list[str]:
    """Distinct PNG names for overlay files: the path below the inputs' common folder,
    with ``/`` turned into ``__`` (``ffhq/test/00001.png`` -> ``ffhq__test__00001.png``); files
    differing only in their suffix keep it (``a.jpg.png``, ``a.png.png``)."""
    # absolute as typed, symlinks kept: a link's heatmap is named after the link, not its target
    typed = [Path(os.path.abspath(p)) for p in paths]
    if not typed:
        return []
    common = Path(os.path.commonpath([str(p.parent) for p in typed]))
    names = ["__".join(p.relative_to(common).with_suffix("").parts) for p in typed]
    clash = {n for n in names if names.count(n) > 1}       # a.jpg and a.png side by side keep their suffix
    return [(f"{n}{p.suffix}" if n in clash else n) + ".png" for n, p in zip(names, typed)]


def detect(cfg: DetectConfig, progress: bool = True, engine: Engine | None = None,
           on_skip=None) -> DetectResult:
    """Score every face of every image under ``cfg.paths``; unreadable files are
    skipped and listed, images without a face get no verdict. Writes the heatmaps
    and the report (:mod:`~.report`) when ``cfg`` asks for them.

    ``on_skip(path, reason)`` is called as each unreadable file is met (the CLI
    prints it then, so the run need not end before the user hears of it).
    """
    cfg.validate()
    passed_over = SkipLog()
    paths = expand_paths(cfg.paths, passed_over)          # fails before the model loads
    reasons = dict(passed_over.skipped)
    if cfg.heatmaps:
        fileio.ensure_new_output(cfg.heatmaps, cfg.force)
    if cfg.report:
        fileio.ensure_new_file(cfg.report, cfg.force)
    detector = (open_detector(cfg.model, cfg.which_epoch, cfg.backend, cfg.device, cfg.threshold, cfg.align_style)
                if engine is None else Detector(engine, cfg.threshold, cfg.align_style))
    names = heatmap_names(paths) if cfg.heatmaps else []
    result = DetectResult([], detector.engine.name, detector.threshold_name, detector.p_fake_threshold,
                          detector.scope, detector.validation_false_alarm_rate())
    rows: list[ImageResult | None] = [None] * len(paths)      # kept in input order
    cards: list[ReportFace] = []
    bar = tqdm(total=len(paths), desc="detect", unit="img", disable=not progress)
    with detector:
        for start in range(0, len(paths), cfg.batch_size):
            chunk = list(range(start, min(start + cfg.batch_size, len(paths))))
            images, kept = [], []
            for i in chunk:
                try:
                    if str(paths[i]) in reasons:       # a file a folder scan passed over
                        raise ImageLoadError(paths[i], reasons[str(paths[i])])
                    images.append(load_rgb(paths[i]))
                    kept.append(i)
                except ImageLoadError as e:
                    result.skipped.add(e)
                    rows[i] = ImageResult(str(paths[i]), error=e.reason)
                    if on_skip:
                        on_skip(str(paths[i]), e.reason)
            for i, image, screened in zip(kept, images, detector.screen(images, cfg.faces, cfg.top_k)):
                # the faces are kept without their pixels once their pictures are drawn
                row = ImageResult(str(paths[i]), screened.mode, [f.without_maps() for f in screened.faces],
                                  image.width, image.height)
                picture = render_screened(image, screened) if cfg.heatmaps else None
                if picture is not None:
                    row.heatmap = str(Path(cfg.heatmaps) / names[i])
                    fileio.save_image(picture, row.heatmap)
                if cfg.report:
                    cards += [ReportFace(row.path, record, png_data_url(render_overlay(face, min_side=REPORT_SIDE)))
                              for record, face in zip(row.faces, screened.faces)]
                rows[i] = row
            bar.update(len(chunk))
    bar.close()
    result.images = [r for r in rows if r is not None]
    if cfg.report:
        write_report(cfg.report, result, cards)
    return result
