"""``detect``'s results and their text forms: a table, JSON and CSV.

Boxes are ``(top, left, bottom, right)`` in pixels of the original image
(bottom/right exclusive). Every output ends with (the table) or carries (JSON)
the decision rule and the model's scope note (:func:`~.scope.scope_note`).
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..core import fileio
from ..core.config import ConfigError
from ..core.imageio import SkipLog
from .faces import ScoredFace

#: the text forms of a result (``--format``); the first is the default
FORMATS = ("table", "json", "csv")


#: the files ``detect --out DIR`` writes: the JSON and CSV forms
RESULT_FILES = {"json": "detect.json", "csv": "detect.csv"}

#: the table's mark on the verdict of a face with a caveat, the caveat itself after the file name
CAVEAT_MARK = "*"


def face_entry(f: ScoredFace) -> dict:
    """One face of the JSON form: the most suspicious patch as ``box``, ``box_p_fake`` and
    ``centre_box`` (where to look in it)."""
    return {"index": f.index, "p_fake": f.p_fake, "verdict": f.verdict, "face_box": list(f.face_box),
            "box": list(f.box), "box_p_fake": f.box_p_fake, "fill_share": f.fill_share, "upscale": f.upscale,
            "quad": f.quad, "caveat": f.caveat, "centre_box": list(f.top_patches[0].centre_box)}


@dataclass
class ImageResult:
    """One input file of ``detect``: its faces (largest first), or none (no face
    found: no verdict), or ``error`` (unreadable, skipped)."""

    path: str
    input: str | None = None            # "aligned" | "found" (how the faces were obtained)
    faces: list[ScoredFace] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    heatmap: str | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        """``scored``, ``no face found`` or ``skipped``."""
        return "skipped" if self.error else ("scored" if self.faces else "no face found")

    def to_dict(self) -> dict:
        return {"path": self.path, "status": self.status, "input": self.input,
                "faces": [face_entry(f) for f in self.faces], "width": self.width, "height": self.height,
                "heatmap": self.heatmap, "error": self.error}


@dataclass
class DetectResult:
    """``images`` in input order, each with its faces."""

    images: list[ImageResult]
    model_name: str
    threshold_name: str
    p_fake_threshold: float
    scope: str = ""                                  # what the model was trained on, what it misses
    false_alarm_rate: float | None = None            # validation reals called fake at the threshold
    skipped: SkipLog = field(default_factory=SkipLog)

    @property
    def faces(self) -> list[tuple[ImageResult, ScoredFace]]:
        """Every scored face with its image, in input order."""
        return [(im, f) for im in self.images for f in im.faces]

    @property
    def no_face(self) -> list[ImageResult]:
        """Images that were read but hold no face (no verdict)."""
        return [im for im in self.images if im.status == "no face found"]


#: the CSV's columns: the image's first, then the face's (empty for an image without one), then the image's,
#: then the face's added later (at the end, so that a reader of the older columns by position still reads them)
CSV_IMAGE_HEAD = ("path", "status", "input")
CSV_FACE_FIELDS = ("face", "p_fake", "verdict", "face_top", "face_left", "face_bottom", "face_right", "box_top",
                   "box_left", "box_bottom", "box_right", "box_p_fake", "fill_share", "upscale")
CSV_IMAGE_TAIL = ("width", "height", "heatmap", "error")
CSV_FACE_TAIL = ("caveat", "centre_top", "centre_left", "centre_bottom", "centre_right")
CSV_FIELDS = CSV_IMAGE_HEAD + CSV_FACE_FIELDS + CSV_IMAGE_TAIL + CSV_FACE_TAIL


def _csv_face(f: ScoredFace) -> list:
    """The :data:`CSV_FACE_FIELDS` cells of one face."""
    return [f.index, f"{f.p_fake:.6f}", f.verdict, *f.face_box, *f.box, f"{f.box_p_fake:.6f}",
            f"{f.fill_share:.4f}", f"{f.upscale:.4f}"]


def _csv_rows(im: ImageResult) -> Iterable[list]:
    head = [im.path, im.status, im.input or ""]
    tail = [im.width or "", im.height or "", im.heatmap or "", im.error or ""]
    if not im.faces:
        yield head + [""] * len(CSV_FACE_FIELDS) + tail + [""] * len(CSV_FACE_TAIL)
    for f in im.faces:
        yield head + _csv_face(f) + tail + [f.caveat or "", *f.top_patches[0].centre_box]


def decision_rule(result: DetectResult) -> str:
    """``fake when p(fake) >= 0.4106, threshold 'eer' of xb2_v2_all``."""
    return (f"fake when p(fake) >= {result.p_fake_threshold:.4f}, threshold '{result.threshold_name}' "
            f"of {result.model_name}")


def false_alarm_text(result: DetectResult) -> str:
    """The threshold's false-alarm rate on validation reals, in words (``unknown`` without a report)."""
    if result.false_alarm_rate is None:
        return "unknown"
    return f"{result.false_alarm_rate:.1%} of validation real faces called fake"


def summary_line(result: DetectResult) -> str:
    """``3 faces scored in 2 images: 1 fake, 2 real; 1 face with a caveat (* greyscale): its verdict is not
    reliable; 1 image with no face (no verdict) (fake when …)``."""
    faces = [f for _, f in result.faces]
    n_fake = sum(f.is_fake for f in faces)
    n_images = sum(im.status == "scored" for im in result.images)
    line = (f"{len(faces)} face{'s' * (len(faces) != 1)} scored in {n_images} image{'s' * (n_images != 1)}: "
            f"{n_fake} fake, {len(faces) - n_fake} real")
    caveats = [f.caveat.split(":")[0] for f in faces if f.caveat]       # "greyscale"
    if caveats:
        n = len(caveats)
        line += (f"; {n} face{'s' * (n != 1)} with a caveat ({CAVEAT_MARK} {', '.join(sorted(set(caveats)))}): "
                 f"{'its verdict is' if n == 1 else 'their verdicts are'} not reliable")
    if result.no_face:
        n = len(result.no_face)
        line += f"; {n} image{'s' * (n != 1)} with no face found (no verdict)"
    if len(result.skipped):
        line += f"; {len(result.skipped)} skipped"
    return f"{line} ({decision_rule(result)})"


def format_result(result: DetectResult, fmt: str = FORMATS[0]) -> str:
    """The result as a text table (one line per face, or per image without one, then the
    summary and the scope note), JSON (one entry per image, its faces inside; ``scope``
    beside the model) or CSV (one row per face, or per image without one)."""
    if fmt == "json":
        return json.dumps({"model": result.model_name, "threshold": result.threshold_name,
                           "p_fake_threshold": result.p_fake_threshold,
                           "validation_false_alarm_rate": result.false_alarm_rate, "scope": result.scope,
                           "results": [im.to_dict() for im in result.images],
                           "skipped": result.skipped.as_list()}, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_FIELDS)
        for im in result.images:
            w.writerows(_csv_rows(im))
        return buf.getvalue().rstrip("\n")
    if fmt != "table":
        raise ConfigError(f"format: must be one of {', '.join(FORMATS)}")
    lines = [f"{'p(fake)':>7}  {'verdict':<7}  {'face':<7}  {'face box (t,l,b,r)':<20}  "
             f"{'most suspicious patch (t,l,b,r)':<32}  file"]
    for im in result.images:
        if im.error:
            lines.append(f"{'-':>7}  {'skipped':<7}  {'-':<7}  {im.error[:53]:<54}  {im.path}")
        elif not im.faces:
            lines.append(f"{'-':>7}  {'none':<7}  {'no face':<7}  {'-':<20}  {'-':<32}  {im.path}")
        for f in im.faces:
            face = "aligned" if im.input == "aligned" else f"#{f.index}"
            box = "({},{},{},{})".format(*f.box) + f" p={f.box_p_fake:.2f}"
            notes = f"  ({', '.join(f.notes)})" if f.notes else ""
            verdict = f.verdict + CAVEAT_MARK * bool(f.caveat)
            caveat = f"  {CAVEAT_MARK} {f.caveat}" if f.caveat else ""
            lines.append(f"{f.p_fake:7.3f}  {verdict:<7}  {face:<7}  {'({},{},{},{})'.format(*f.face_box):<20}  "
                         f"{box:<32}  {im.path}{notes}{caveat}")
    lines.append(summary_line(result))
    lines.append(f"scope: {result.scope}")
    return "\n".join(lines)


def write_result_files(folder: str | os.PathLike, result: DetectResult) -> None:
    """Write the JSON and CSV forms into ``folder`` (:data:`RESULT_FILES`), each atomically."""
    for fmt, name in RESULT_FILES.items():
        fileio.write_text(Path(folder) / name, format_result(result, fmt) + "\n")
