"""``align-video``: faces in sampled video frames, FaceForensics++ folders mirrored and paired into a suite."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
from tqdm.auto import tqdm

from ...core import fileio
from ...core.config import require
from ...core.imageio import ImageLoadError, SkipLog
from ..prepare import SPLITS, assign_splits, png_bytes
from .geometry import STYLES, align_faces
from .landmarks import FaceLandmarker
from .photos import validate_face_options

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
ORIGINAL_DIR, MANIPULATED_DIR = "original_sequences", "manipulated_sequences"


@dataclass
class VideoAlignConfig:
    """Options of ``patchforensics align-video``.

    ``every`` keeps frames 0, N, 2N, …; ``max_frames`` caps the aligned frames
    per video (the seed kept 100 per val/test video). Splits are by video
    identity, the first ``_``-separated token of the file name (FF++'s
    ``000_003.mp4`` goes with ``000.mp4``): from FF++'s ``train/val/test.json``
    pair lists in ``splits_dir`` when given, else drawn with ``split``/``seed``.
    With ``reuse_original_landmarks``, a frame of
    ``manipulated_sequences/<method>/…/A_B.mp4`` is cut with the landmarks of
    the same frame of ``original_sequences/…/A.mp4`` when those were found, so
    real and fake crops share one geometry (as the seed's pairs did).
    """

    src: str
    out: str
    style: str = "celebahq"
    size: int = 128
    every: int = 10
    max_frames: int | None = None
    faces: str = "largest"
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    splits_dir: str | None = None
    reuse_original_landmarks: bool = True
    max_faces: int = 10
    min_confidence: float = 0.5
    force: bool = False

    def validate(self) -> None:
        validate_face_options(self)
        require(self.every >= 1, "every", "must be >= 1 (1 keeps every frame)")
        require(self.max_frames is None or self.max_frames >= 1, "max_frames", "must be >= 1")
        if self.splits_dir is not None:
            missing = [s for s in SPLITS if not (Path(self.splits_dir) / f"{s}.json").is_file()]
            require(not missing, "splits_dir",
                    f"{self.splits_dir} lacks {', '.join(m + '.json' for m in missing)} "
                    "(FaceForensics++ split files: lists of [target, source] id pairs)")


def list_videos(root: str | os.PathLike) -> list[Path]:
    """Sorted video files under ``root`` (or ``[root]`` for a single file)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist; pass a video file or a folder of videos "
                                f"({', '.join(sorted(VIDEO_EXTENSIONS))})")
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS
                  and p.is_file() and not p.name.startswith("."))


def video_identity(path: Path) -> str:
    """The id that ties a manipulated video to its original: ``A`` for ``A_B.mp4`` and ``A.mp4``."""
    return path.stem.split("_")[0]


def _ff_splits(splits_dir: Path) -> dict[str, str]:
    ids: dict[str, str] = {}
    for split in SPLITS:
        pairs = json.loads((splits_dir / f"{split}.json").read_text())
        for pair in pairs:
            for vid in (pair if isinstance(pair, list) else [pair]):
                ids[str(vid)] = split
    return ids


def iter_frames(path: Path, every: int) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, (H, W, 3) uint8 RGB) for frames 0, every, 2·every, … of a video.

    Raises ``ValueError`` if OpenCV cannot open or decode the file at all.
    """
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError("OpenCV cannot open this video")
        index, decoded = 0, 0
        while True:
            if index % every == 0:
                ok, frame = cap.read()
                if not ok:
                    break
                decoded += 1
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            elif not cap.grab():  # skipped frames are not converted
                break
            index += 1
        if decoded == 0:
            raise ValueError("no frame could be decoded")
    finally:
        cap.release()


def faceforensics_suite(out: Path, folders: Sequence[Path]) -> dict:
    """A ``test-suite`` YAML body pairing each ``manipulated_sequences/<method>/<tail>``
    output folder with the ``original_sequences/<source>/<tail>`` one (same tail,
    e.g. ``c23/videos``; ``youtube`` preferred), keeping pairs that hold frames."""
    folders = sorted(set(folders))
    originals = [f for f in folders if len(f.parts) >= 2 and f.parts[0] == ORIGINAL_DIR]
    manipulated = [f for f in folders if len(f.parts) >= 2 and f.parts[0] == MANIPULATED_DIR]
    methods = [f.parts[1] for f in manipulated]
    datasets = []
    for fake in manipulated:
        tail = fake.parts[2:]
        matches = sorted((o for o in originals if o.parts[2:] == tail), key=lambda o: o.parts[1] != "youtube")
        if not matches or not (out / fake).is_dir() or not (out / matches[0]).is_dir():
            continue
        method = fake.parts[1]
        name = method if methods.count(method) == 1 else "_".join((method, *tail))
        datasets.append({"name": name, "real": matches[0].as_posix(), "fake": fake.as_posix()})
    return {"name": "faceforensics", "root": ".", "datasets": datasets}


@dataclass
class VideoAlignResult:
    out: Path
    counts: dict[str, int]                 # aligned faces written per split
    videos: int
    frames_sampled: int
    frames_aligned: int
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.frames_aligned / self.frames_sampled if self.frames_sampled else 0.0


def align_videos(cfg: VideoAlignConfig, progress: bool = True) -> VideoAlignResult:
    """Align faces in frames of every video under ``cfg.src``.

    Mirrors the folder layout: ``SRC/<dirs>/<name>.mp4`` →
    ``OUT/<dirs>/<split>/<name>_<frame>.png``, so an FF++ tree gives
    ``OUT/original_sequences/youtube/c23/videos/<split>/`` (reals) beside
    ``OUT/manipulated_sequences/<method>/c23/videos/<split>/`` (fakes), ready for
    ``test``/``test-suite``. Writes ``report.json`` (per video and sampled frame:
    faces found, landmarks, crop square, transform, where landmarks came from)
    and ``summary.json`` (counts, per-frame success rate, skipped videos). For an
    FF++ tree it also writes ``suite.yaml`` pairing each manipulation method with
    the originals, for ``patchforensics test-suite CHECKPOINT OUT/suite.yaml``.
    """
    cfg.validate()
    src, out = Path(cfg.src), Path(cfg.out)
    videos = list_videos(src)
    if not videos:
        raise ValueError(f"no videos found under {src} ({', '.join(sorted(VIDEO_EXTENSIONS))})")
    with fileio.atomic_dir(out, cfg.force) as tmp:   # --force replaces OUT whole, never merges into it
        result = _align_videos_into(cfg, videos, tmp, progress)
    return replace(result, out=out)


def _align_videos_into(cfg: VideoAlignConfig, videos: list[Path], out: Path, progress: bool) -> VideoAlignResult:
    src = Path(cfg.src)
    root = src if src.is_dir() else src.parent
    # originals first, so their landmarks are known when their manipulated versions come
    videos.sort(key=lambda p: (MANIPULATED_DIR in p.relative_to(root).parts, p))
    if cfg.splits_dir:
        split_of = _ff_splits(Path(cfg.splits_dir))
    else:
        ids = sorted({video_identity(p) for p in videos})
        split_of = dict(zip(ids, assign_splits(len(ids), cfg.split, cfg.seed)))
    style = STYLES[cfg.style]
    original_points: dict[tuple[str, int], list[np.ndarray]] = {}
    counts = {s: 0 for s in SPLITS}
    skipped, report = SkipLog(), []
    frames_sampled = frames_aligned = 0
    with FaceLandmarker(cfg.max_faces, cfg.min_confidence) as landmarker:
        for video in tqdm(videos, desc="align-video", disable=not progress, unit="video"):
            rel = video.relative_to(root)
            identity = video_identity(video)
            split = split_of.get(identity)
            if split is None:
                skipped.add(ImageLoadError(video, f"id {identity!r} is in none of the split files"))
                continue
            is_original = ORIGINAL_DIR in rel.parts
            reuse = cfg.reuse_original_landmarks and MANIPULATED_DIR in rel.parts
            entry = {"source": rel.as_posix(), "split": split, "frames": []}
            folder = rel.parent / split
            written = 0
            try:
                for index, rgb in iter_frames(video, cfg.every):
                    if cfg.max_frames is not None and written >= cfg.max_frames:
                        break
                    frames_sampled += 1
                    frame = {"frame": index}
                    given = original_points.get((identity, index)) if reuse else None
                    if given is not None:
                        faces = align_faces(rgb, None, style, cfg.size, cfg.faces, points=given)
                        frame["landmarks_from"] = "original"
                    else:
                        meshes = landmarker.detect(rgb)
                        frame["faces_found"] = len(meshes)
                        faces = align_faces(rgb, meshes, style, cfg.size, cfg.faces)
                    if is_original and faces:
                        original_points[(identity, index)] = [f.points for f in faces]
                    frame["faces"] = []
                    for face in faces:
                        name = (folder / face.file_name(f"{video.stem}_{index:05d}", cfg.faces)).as_posix()
                        fileio.write_bytes(out / name, png_bytes(face.image))
                        frame["faces"].append(face.report(name, cfg.size))
                        counts[split] += 1
                    frames_aligned += bool(faces)
                    written += bool(faces)
                    entry["frames"].append(frame)
            except ValueError as e:
                skipped.add(ImageLoadError(video, str(e)))
                continue
            entry["frames_aligned"] = written
            report.append(entry)
    fileio.write_json(out / "report.json", {"style": cfg.style, "size": cfg.size, "every": cfg.every,
                                            "videos": report})
    suite = faceforensics_suite(out, [Path(v["source"]).parent for v in report])
    if suite["datasets"]:
        fileio.write_yaml(out / "suite.yaml", suite)
    result = VideoAlignResult(out, counts, len(report), frames_sampled, frames_aligned, skipped.as_list())
    fileio.write_json(out / "summary.json", {
        "source": str(src), "style": cfg.style, "size": cfg.size, "every": cfg.every,
        "max_frames": cfg.max_frames, "faces": cfg.faces, "split": list(cfg.split), "seed": cfg.seed,
        "splits_dir": cfg.splits_dir, "reuse_original_landmarks": cfg.reuse_original_landmarks,
        "counts": counts, "videos": len(report), "frames_sampled": frames_sampled,
        "frames_aligned": frames_aligned, "success_rate": round(result.success_rate, 4),
        "skipped": result.skipped})
    return result
