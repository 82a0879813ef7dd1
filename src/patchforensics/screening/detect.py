"""``detect``: screen images with a trained patch classifier.

For each image: ``p(fake)``, the decision at a calibrated threshold, the most
suspicious patches (boxes in the pixel coordinates of the *original* image)
and, optionally, a heatmap overlay PNG.

How an image of any size reaches the model (``transforms.eval_image``, the
geometry the model was trained with): the shorter side is resized to the
config's ``load_size`` (Lanczos; small images are enlarged), then a centred
square is cut, ``load_size`` px for patch models (``fine_size`` for full-image
models). Only that centred square is examined: for a 3:4 portrait the top and
bottom strips are ignored, so faces should be roughly centred and fill the
frame (as in the training data; ``prepare`` aligns faces).

How boxes map back: the model's per-patch outputs ``(H', W')`` each see a
receptive field; :meth:`ModelCard.patch_boxes` gives those boxes in model-input
pixels (clipped to the input, from the architecture alone). The centred square
corresponds to the window
``left = round((w_r - S) / 2)``, ``top = round((h_r - S) / 2)`` of the resized
image (``w_r x h_r``), and the resized image is the original scaled by
``w / w_r`` horizontally and ``h / h_r`` vertically, so a box ``(t, l, b, r)``
maps to ``((t + top) * h / h_r, (l + left) * w / w_r, (b + top) * h / h_r,
(r + left) * w / w_r)`` in the original image, rounded outward to whole pixels.

Scores: ``p(fake) = 1 - P(real)`` with ``P(real)`` the ``after_softmax``
aggregation (mean of the per-patch softmax), computed by the same
:class:`~patchforensics.scoring.engine.Engine` as ``test`` and ``visualize``. An
image is called fake when ``p(fake) >= 1 - t`` for the chosen stored threshold
``t`` (``calibrate`` stores them on ``P(real)``; :meth:`ModelCard.p_fake_threshold`
converts).
"""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..core import fileio
from ..core.config import ConfigError, require
from ..core.heatmap import overlay, with_colorbar
from ..core.imageio import ImageLoadError, SkipLog, list_images, load_rgb
from ..data.transforms import TransformConfig
from ..models.card import ModelCard
from ..scoring.engine import Engine
from ..scoring.fastpath import BACKENDS, FastPath
from ..scoring.metrics import aggregate

DEFAULT_THRESHOLD = "eer"
FORMATS = ("table", "json", "csv")


# ------------------------------------------------------------- geometry
@dataclass(frozen=True)
class InputWindow:
    """Where the model input sits in the original image.

    The model sees ``side x side`` pixels: the original's region
    ``[top, top + side*scale_y) x [left, left + side*scale_x)`` in original pixels
    (``top``/``left`` also in original pixels).
    """

    width: int          # original image size, px
    height: int
    side: int           # model input side, px
    left: float         # window origin in original px
    top: float
    scale_x: float      # original px per model-input px
    scale_y: float

    def to_original(self, box: Sequence[float]) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` in model-input px -> original px (rounded
        outward, clipped to the image)."""
        t, l, b, r = (float(v) for v in box)
        top = int(np.floor(self.top + t * self.scale_y))
        left = int(np.floor(self.left + l * self.scale_x))
        bottom = int(np.ceil(self.top + b * self.scale_y))
        right = int(np.ceil(self.left + r * self.scale_x))
        return (max(0, top), max(0, left), min(self.height, bottom), min(self.width, right))


def input_window(width: int, height: int, tcfg: TransformConfig) -> InputWindow:
    """The crop window of ``transforms.eval_image`` for an image of ``width x height``."""
    size = tcfg.load_size
    # resize_shorter: shorter side -> load_size, longer side rounded, never below 1
    if min(width, height) == size:
        w_r, h_r = width, height
    elif width <= height:
        w_r, h_r = size, max(1, round(height * size / width))
    else:
        w_r, h_r = max(1, round(width * size / height)), size
    side = tcfg.load_size if tcfg.patch_model else tcfg.fine_size
    left_r, top_r = int(round((w_r - side) / 2.0)), int(round((h_r - side) / 2.0))   # center_crop
    sx, sy = width / w_r, height / h_r
    return InputWindow(width, height, side, left_r * sx, top_r * sy, sx, sy)


# ------------------------------------------------------------- results
@dataclass
class Patch:
    """One patch: its box ``(top, left, bottom, right)`` (exclusive ends) in the
    original image and in model-input pixels, and its own ``p(fake)``."""

    box: tuple[int, int, int, int]
    input_box: tuple[int, int, int, int]
    p_fake: float


@dataclass
class Analysis:
    """A scored image. ``patch_p_fake`` is the ``(H', W')`` per-patch p(fake) map."""

    p_fake: float
    is_fake: bool
    patch_p_fake: np.ndarray
    top_patches: list[Patch]
    input_image: Image.Image
    window: InputWindow


@dataclass
class Detection:
    """One row of ``detect`` output; ``error`` is set (and the rest empty) for a skipped file."""

    path: str
    p_fake: float | None = None
    verdict: str | None = None          # "fake" | "real"
    box: tuple[int, int, int, int] | None = None   # most suspicious patch, original px
    box_p_fake: float | None = None
    width: int | None = None
    height: int | None = None
    heatmap: str | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["box"] = list(self.box) if self.box else None
        return d


# ------------------------------------------------------------- detector
def _nms(order: Iterable[int], boxes: np.ndarray, k: int, max_iou: float = 0.25) -> list[int]:
    """Greedy non-maximum suppression: the first ``k`` indices of ``order`` whose
    boxes overlap every earlier pick by at most ``max_iou`` (neighbouring patches
    share most of their field, so without this the top few are one spot)."""
    picks: list[int] = []
    for i in order:
        t, l, b, r = boxes[i]
        area = max(0, b - t) * max(0, r - l)
        ok = True
        for j in picks:
            t2, l2, b2, r2 = boxes[j]
            inter = max(0, min(b, b2) - max(t, t2)) * max(0, min(r, r2) - max(l, l2))
            union = area + max(0, b2 - t2) * max(0, r2 - l2) - inter
            if union > 0 and inter / union > max_iou:
                ok = False
                break
        if ok:
            picks.append(int(i))
            if len(picks) == k:
                break
    return picks


class Detector:
    """An :class:`~patchforensics.scoring.engine.Engine` and a decision threshold; scores PIL images.

    ``threshold``: the name of a threshold stored with the model (``eer``,
    ``fpr1pct`` …) or a ``p(fake)`` value in (0, 1). A model without stored
    thresholds falls back to p(fake) >= 0.5, with a warning.
    """

    def __init__(self, engine: Engine, threshold: str | float = DEFAULT_THRESHOLD):
        self.engine = engine
        self.threshold_name, self.p_fake_threshold = resolve_threshold(engine.card, threshold)

    @property
    def card(self) -> ModelCard:
        return self.engine.card

    def analyze(self, images: Sequence[Image.Image], top_k: int = 3) -> list[Analysis]:
        """Score RGB images (any sizes); returns one :class:`Analysis` each."""
        if not images:
            return []
        inputs, logits = self.engine.score_images(images)              # logits (N, 2, H', W')
        p_fake = 1.0 - aggregate(logits)["after_softmax"].double().numpy()
        patch_fake = self.card.p_fake(logits).numpy()                     # (N, H', W')
        boxes = self.card.patch_boxes(inputs[0].size[0])
        if boxes.shape[:2] != patch_fake.shape[1:]:
            raise RuntimeError(f"model output {patch_fake.shape[1:]} does not match its receptive field "
                               f"{boxes.shape[:2]}")
        boxes = boxes.reshape(-1, 4)
        transform = self.card.transform()
        out = []
        for i, im in enumerate(images):
            window = input_window(im.width, im.height, transform)
            flat = patch_fake[i].reshape(-1)
            picks = _nms(np.argsort(-flat, kind="stable"), boxes, top_k)
            patches = [Patch(window.to_original(boxes[j]), tuple(int(v) for v in boxes[j]), float(flat[j]))
                       for j in picks]
            out.append(Analysis(p_fake=float(p_fake[i]), is_fake=bool(p_fake[i] >= self.p_fake_threshold),
                                patch_p_fake=patch_fake[i], top_patches=patches, input_image=inputs[i],
                                window=window))
        return out


def resolve_threshold(card: ModelCard, threshold: str | float) -> tuple[str, float]:
    """``(name, p(fake) threshold)`` for a threshold stored on ``card`` or a p(fake) value."""
    stored = card.thresholds
    if isinstance(threshold, str) and threshold in stored:
        return threshold, card.p_fake_threshold(threshold)
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = None
    if value is not None:
        if not 0 < value < 1:
            raise ConfigError(f"threshold: a p(fake) threshold must be in (0, 1), got {value}")
        return f"p_fake>={value:g}", value
    if not stored:
        if threshold == DEFAULT_THRESHOLD:
            warnings.warn("this model has no calibrated thresholds (run 'patchforensics calibrate "
                          "CHECKPOINT_DIR'); deciding at p(fake) >= 0.5", stacklevel=3)
            return "p_fake>=0.5", 0.5
        raise ConfigError("threshold: the model has no stored thresholds; run 'patchforensics calibrate' "
                          "or give a p(fake) value such as --threshold 0.5")
    raise ConfigError(f"threshold: unknown threshold {threshold!r}; this model has "
                      f"{', '.join(sorted(stored))}, or give a p(fake) value such as 0.5")


def open_detector(model: str | os.PathLike | None = None, which: str | None = None, backend: str = "auto",
                  device: str = "auto", threshold: str | float = DEFAULT_THRESHOLD) -> Detector:
    """A :class:`Detector` over a checkpoint folder, an ``.onnx`` file or (``None``) the bundled detector."""
    return Detector(Engine.load(model, which, FastPath(backend=backend, cache_mb=0), device), threshold)


# ------------------------------------------------------------- detect
@dataclass
class DetectConfig:
    """Options of ``patchforensics detect``."""

    paths: list[str]
    model: str | None = None            # checkpoint folder or .onnx; None = the bundled detector
    which_epoch: str | None = None      # default: bestval (bundled: weights)
    backend: str = "auto"               # auto | torch | onnx
    threshold: str = DEFAULT_THRESHOLD  # stored threshold name, or a p(fake) value
    heatmaps: str | None = None         # folder for overlay PNGs
    top_k: int = 3
    batch_size: int = 32
    device: str = "auto"
    force: bool = False

    def validate(self) -> None:
        require(bool(self.paths), "paths", "give at least one image, folder or glob pattern")
        require(self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}")
        require(self.batch_size > 0, "batch_size", "must be > 0")
        require(self.top_k > 0, "top_k", "must be > 0")


@dataclass
class DetectResult:
    detections: list[Detection]
    model_name: str
    threshold_name: str
    p_fake_threshold: float
    skipped: SkipLog = field(default_factory=SkipLog)

    @property
    def scored(self) -> list[Detection]:
        return [d for d in self.detections if d.error is None]


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files, folders (searched recursively for images) and glob patterns -> image files.

    Raises ``FileNotFoundError`` for a path that does not exist or a pattern or
    folder with no images, before any work starts. An explicitly named file is
    always kept (if it is not an image it is reported as unreadable later).
    """
    found: list[Path] = []
    for raw in paths:
        if glob.has_magic(raw) and not Path(raw).exists():
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                raise FileNotFoundError(f"the pattern {raw!r} matches nothing")
            for m in matches:
                found.extend(list_images(m) if Path(m).is_dir() else [Path(m)])
            continue
        images = list_images(raw)      # raises FileNotFoundError with a hint
        if not images:
            raise FileNotFoundError(f"{raw}: no images found in this folder")
        found.extend(images)
    seen: set[str] = set()
    unique = []
    for p in found:
        if str(p) not in seen:
            seen.add(str(p))
            unique.append(p)
    return unique


def heatmap_names(paths: Sequence[Path]) -> list[str]:
    """Distinct PNG names for overlay files: the path below the inputs' common folder,
    with ``/`` turned into ``__`` (``ffhq/test/00001.png`` -> ``ffhq__test__00001.png``)."""
    resolved = [p.resolve() for p in paths]
    if not resolved:
        return []
    common = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    return ["__".join(p.relative_to(common).with_suffix("").parts) + ".png" for p in resolved]


def render_overlay(analysis: Analysis, caption: str | None = None, alpha: float = 0.45,
                   min_side: int = 256) -> Image.Image:
    """The model input and the p(fake) heatmap over it, side by side, with the top
    patches outlined (the most suspicious in white) and the colour bar (red =
    fake-looking, :mod:`~patchforensics.core.heatmap`) at the right."""
    base = analysis.input_image
    heat = overlay(base, analysis.patch_p_fake, alpha=alpha)
    pair = Image.new("RGB", (base.width * 2, base.height))
    pair.paste(base, (0, 0))
    pair.paste(heat, (base.width, 0))
    scale = max(1, int(np.ceil(min_side / base.height)))
    if scale > 1:
        pair = pair.resize((pair.width * scale, pair.height * scale), Image.Resampling.NEAREST)
    a = np.array(pair)
    for rank, p in reversed(list(enumerate(analysis.top_patches))):
        t, l, b, r = (v * scale for v in p.input_box)
        colour = (255, 255, 255) if rank == 0 else (40, 40, 40)
        cv2.rectangle(a, (l + base.width * scale, t), (r - 1 + base.width * scale, b - 1), colour, 2)
    if caption:
        for thick, col in ((3, (0, 0, 0)), (1, (255, 255, 255))):
            cv2.putText(a, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, col, thick, cv2.LINE_AA)
    return with_colorbar(Image.fromarray(a))


def detect(cfg: DetectConfig, progress: bool = True, engine: Engine | None = None,
           on_skip=None) -> DetectResult:
    """Score every image under ``cfg.paths``; unreadable files are skipped and listed.

    ``on_skip(path, reason)`` is called as each unreadable file is met (the CLI
    prints it then, so the run need not end before the user hears of it).
    """
    cfg.validate()
    paths = expand_paths(cfg.paths)                       # fails before the model loads
    if cfg.heatmaps:
        fileio.ensure_new_output(cfg.heatmaps, cfg.force)
    detector = (open_detector(cfg.model, cfg.which_epoch, cfg.backend, cfg.device, cfg.threshold)
                if engine is None else Detector(engine, cfg.threshold))
    names = heatmap_names(paths) if cfg.heatmaps else []
    result = DetectResult([], detector.engine.name, detector.threshold_name, detector.p_fake_threshold)
    rows: list[Detection | None] = [None] * len(paths)      # kept in input order
    bar = tqdm(total=len(paths), desc="detect", unit="img", disable=not progress)
    for start in range(0, len(paths), cfg.batch_size):
        chunk = list(range(start, min(start + cfg.batch_size, len(paths))))
        images, kept = [], []
        for i in chunk:
            try:
                images.append(load_rgb(paths[i]))
                kept.append(i)
            except ImageLoadError as e:
                result.skipped.add(e)
                rows[i] = Detection(str(paths[i]), error=e.reason)
                if on_skip:
                    on_skip(str(paths[i]), e.reason)
        for i, a in zip(kept, detector.analyze(images, cfg.top_k)):
            det = Detection(str(paths[i]), p_fake=a.p_fake, verdict="fake" if a.is_fake else "real",
                            box=a.top_patches[0].box, box_p_fake=a.top_patches[0].p_fake,
                            width=a.window.width, height=a.window.height)
            if cfg.heatmaps:
                det.heatmap = str(Path(cfg.heatmaps) / names[i])
                fileio.save_image(render_overlay(a, f"p(fake) {a.p_fake:.2f}: {det.verdict}"), det.heatmap)
            rows[i] = det
        bar.update(len(chunk))
    bar.close()
    result.detections = [d for d in rows if d is not None]
    return result


# ------------------------------------------------------------- output
CSV_FIELDS = ("path", "p_fake", "verdict", "box_top", "box_left", "box_bottom", "box_right",
              "box_p_fake", "width", "height", "heatmap", "error")


def format_result(result: DetectResult, fmt: str = "table") -> str:
    """The result as a text table, JSON or CSV."""
    if fmt == "json":
        return json.dumps({"model": result.model_name, "threshold": result.threshold_name,
                           "p_fake_threshold": result.p_fake_threshold,
                           "results": [d.to_dict() for d in result.detections],
                           "skipped": result.skipped.as_list()}, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_FIELDS)
        for d in result.detections:
            box = list(d.box) if d.box else [""] * 4
            w.writerow([d.path, "" if d.p_fake is None else f"{d.p_fake:.6f}", d.verdict or "", *box,
                        "" if d.box_p_fake is None else f"{d.box_p_fake:.6f}", d.width or "", d.height or "",
                        d.heatmap or "", d.error or ""])
        return buf.getvalue().rstrip("\n")
    if fmt != "table":
        raise ConfigError(f"format: must be one of {', '.join(FORMATS)}")
    lines = [f"{'p(fake)':>7}  {'verdict':<7}  {'most suspicious patch (t,l,b,r)':<32}  file"]
    for d in result.detections:
        if d.error:
            lines.append(f"{'-':>7}  {'skipped':<7}  {d.error[:32]:<32}  {d.path}")
        else:
            box = "({},{},{},{})".format(*d.box) + f" p={d.box_p_fake:.2f}"
            lines.append(f"{d.p_fake:7.3f}  {d.verdict:<7}  {box:<32}  {d.path}")
    scored = result.scored
    n_fake = sum(d.verdict == "fake" for d in scored)
    lines.append(f"{len(scored)} images scored: {n_fake} fake, {len(scored) - n_fake} real "
                 f"(fake when p(fake) >= {result.p_fake_threshold:.4f}, threshold '{result.threshold_name}' "
                 f"of {result.model_name})" + (f"; {len(result.skipped)} skipped" if len(result.skipped) else ""))
    return "\n".join(lines)
