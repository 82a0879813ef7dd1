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
from typing import Callable, Iterator, Sequence

from tqdm.auto import tqdm

from ..core import fileio
from ..core.config import require
from ..core.imageio import FORMATS_TEXT, SCREEN_MAX_PIXELS, Decoded, ImageLoadError, SkipLog, list_images
from ..data.align import STYLES
from ..scoring.engine import Engine
from ..scoring.runtime import BACKENDS
from .decode import check_max_pixels, decode_photo, in_file_pixels
from .detector import (DEFAULT_ALIGN_STYLE, DEFAULT_FACE_MODE, DEFAULT_THRESHOLD, FACE_MODES, Detector, Screened,
                       open_detector)
from .render import render_overlay, render_screened
from .report import ReportFace, png_data_url, write_report
from .results import DetectResult, ImageResult, write_result_files
from .shards import parse_shard, shard_indices, write_shard

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
    max_pixels: int = SCREEN_MAX_PIXELS  # refuse an image that would decode to more pixels
    device: str = "auto"
    force: bool = False
    out: str | None = None              # folder for the JSON and CSV forms (and a shard's record)
    shard: str | None = None            # "K/N": score only shard K of N of the expanded inputs (.shards)

    def validate(self) -> None:
        require(bool(self.paths), "paths", "give at least one image, folder or glob pattern")
        require(self.faces in FACE_MODES, "faces", f"must be one of {', '.join(FACE_MODES)}")
        require(self.align_style in STYLES, "align_style", f"must be one of {', '.join(STYLES)}")
        require(self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}")
        require(self.batch_size > 0, "batch_size", "must be > 0")
        require(self.top_k > 0, "top_k", "must be > 0")
        check_max_pixels(self.max_pixels)
        require(self.report is None or Path(self.report).suffix.lower() in (".html", ".htm"), "report",
                "give a file name ending in .html, e.g. --report screening.html")
        if self.shard is not None:
            parse_shard(self.shard)
            require(self.out is not None, "out", "a shard needs --out DIR: its record is written there for --merge")

    def options(self) -> dict:
        """The options that decide a row: every shard of one run must share them (:mod:`~.shards`)."""
        return {"model": self.model, "which_epoch": self.which_epoch,
                "backend": self.backend, "threshold": self.threshold, "faces": self.faces,
                "align_style": self.align_style, "top_k": self.top_k, "max_pixels": self.max_pixels}


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
    everything = expand_paths(cfg.paths, passed_over)     # fails before the model loads
    reasons = dict(passed_over.skipped)
    for folder in (cfg.out, cfg.heatmaps):
        if folder:
            fileio.ensure_new_output(folder, cfg.force)
    if cfg.report:
        fileio.ensure_new_file(cfg.report, cfg.force)
    # named among every input, so that a shard's heatmap files are named as one run's
    names = heatmap_names(everything) if cfg.heatmaps else []
    picked = shard_indices(len(everything), *parse_shard(cfg.shard)) if cfg.shard else range(len(everything))
    paths = [everything[i] for i in picked]
    names = [names[i] for i in picked] if names else []
    detector = (open_detector(cfg.model, cfg.which_epoch, cfg.backend, cfg.device, cfg.threshold, cfg.align_style)
                if engine is None else Detector(engine, cfg.threshold, cfg.align_style))
    result = DetectResult([], detector.engine.name, detector.threshold_name, detector.p_fake_threshold,
                          detector.scope, detector.validation_false_alarm_rate())
    rows: list[ImageResult | None] = [None] * len(paths)      # kept in input order
    cards: list[ReportFace] = []
    bar = tqdm(total=len(paths), desc="detect", unit="img", disable=not progress)

    def skip(i: int, e: ImageLoadError) -> None:
        bar.update(1)
        result.skipped.add(e)
        rows[i] = ImageResult(str(paths[i]), error=e.reason)
        if on_skip:
            on_skip(str(paths[i]), e.reason)

    with detector:
        for chunk in _decoded_chunks(paths, cfg, skip, reasons):
            screened = detector.screen([photo.image for _, photo in chunk], cfg.faces, cfg.top_k)
            for (i, photo), found in zip(chunk, screened):
                rows[i] = _image_row(cfg, detector, str(paths[i]), photo, found, names[i] if names else None, cards)
            bar.update(len(chunk))
    bar.close()
    result.images = [r for r in rows if r is not None]
    if cfg.report:
        write_report(cfg.report, result, cards)
    if cfg.out:
        write_result_files(cfg.out, result)
    if cfg.shard:
        write_shard(cfg.out, *parse_shard(cfg.shard), everything, cfg.options(), result, cfg.heatmaps,
                    cards if cfg.report else None)
    return result


def _decoded_chunks(paths: Sequence[Path], cfg: DetectConfig, skip: Callable[[int, ImageLoadError], None],
                    passed_over: dict[str, str]) -> Iterator[list[tuple[int, Decoded]]]:
    """The readable images as ``(index, decoded)``, in chunks of at most ``cfg.batch_size`` images
    and (past the first) ``cfg.max_pixels`` decoded pixels, so that a folder of large photos is
    held one budget's worth at a time; ``skip(index, error)`` for each unreadable file and for
    each file a folder scan ``passed_over`` (path -> reason)."""
    chunk: list[tuple[int, Decoded]] = []
    pixels = 0
    for i, path in enumerate(paths):
        try:
            if str(path) in passed_over:
                raise ImageLoadError(path, passed_over[str(path)])
            photo = decode_photo(path, cfg.max_pixels)
        except ImageLoadError as e:
            skip(i, e)
            continue
        size = photo.image.width * photo.image.height
        if chunk and (len(chunk) == cfg.batch_size or pixels + size > cfg.max_pixels):
            yield chunk
            chunk, pixels = [], 0
        chunk.append((i, photo))
        pixels += size
    if chunk:
        yield chunk


def _image_row(cfg: DetectConfig, detector: Detector, path: str, photo: Decoded, screened: Screened,
               heatmap_name: str | None, cards: list[ReportFace]) -> ImageResult:
    """One image's row (boxes in the file's pixels), its heatmap written and its faces added to the
    report's ``cards`` when ``cfg`` asks for them; the faces are kept without their pixels."""
    cut = detector.p_fake_threshold
    row = ImageResult(path, screened.mode, [in_file_pixels(f.without_maps(), photo) for f in screened.faces],
                      *photo.file_size)
    picture = render_screened(photo.image, screened, cut) if heatmap_name else None
    if picture is not None:
        row.heatmap = str(Path(cfg.heatmaps) / heatmap_name)
        fileio.save_image(picture, row.heatmap)
    if cfg.report:
        cards += [ReportFace(path, record, png_data_url(render_overlay(face, min_side=REPORT_SIDE, threshold=cut)))
                  for record, face in zip(row.faces, screened.faces)]
    return row
