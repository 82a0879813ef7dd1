"""The faces a probe edits: read once at the model's input geometry, segmented once, paired by a seed.

Inputs are aligned faces (FFHQ-style, as the shared ``faces128`` test folders). A
transplant pastes a region at the same aligned coordinates, which is only meaningful
between faces framed alike: fakes are paired with FFHQ reals only (CelebA-HQ is framed
differently), either ``--real`` itself when its path names ``ffhq`` or ``--pair-real``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from ..core.imageio import ImageLoadError, SkipLog, list_images, load_rgb
from ..data.transforms import TransformConfig, eval_image

#: the classes measured, in the outputs' order
CLASSES = ("real", "fake")
#: a paired family's partner: of the other class or of the same class (the control)
PARTNER_KIND = {"transplant": "other", "transplant-same": "same"}
SPLITS = ("train", "val", "test")


@dataclass
class Face:
    """One input face: ``image`` ``(S, S, 3)`` uint8 as the model sees it (``S`` = the card's
    input side), ``regions`` ``(S, S)`` uint8 region ids of the segmenter (``None``: no face found,
    or not segmented because no region intervention runs)."""

    path: str
    cls: str
    image: np.ndarray
    regions: np.ndarray | None = None


def names_ffhq(folder: str | Path) -> bool:
    """Whether a folder's path (as given or resolved) has a part naming FFHQ (``ffhq``, ``ffhq-140k``)."""
    parts = Path(folder).parts + Path(folder).resolve().parts
    return any("ffhq" in p.lower() for p in parts)


def check_folder(folder: str | Path, what: str) -> None:
    """A folder of faces, not one holding ``train/val/test`` splits (pass the split); else one line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {folder} is not a folder; pass a folder of aligned faces, e.g. "
                                "../shared/data/faces128/ffhq/test")
    if any((folder / s).is_dir() for s in SPLITS):
        raise ValueError(f"{what} {folder} holds train/val/test splits; pass one of them, e.g. {folder / 'test'}")


def image_files(folder: str | Path, n: int | None, seed: int, skipped: SkipLog) -> list[Path]:
    """The images under ``folder`` (sorted by path), or ``n`` of them drawn with ``seed`` (kept in order)."""
    paths = list_images(folder, skipped=skipped)
    if n is not None and n < len(paths):
        keep = np.random.default_rng(seed).choice(len(paths), n, replace=False)
        paths = [paths[i] for i in sorted(keep)]
    return paths


def load_faces(paths: Sequence[Path], cls: str, transform: TransformConfig, skipped: SkipLog) -> list[Face]:
    """Each readable file at the model's input geometry (``eval_image``: shorter side to the load
    size, centre square); an unreadable one is added to ``skipped``."""
    faces = []
    for path in paths:
        try:
            image = eval_image(load_rgb(path), transform)
        except ImageLoadError as e:
            skipped.add(e)
            continue
        faces.append(Face(str(path), cls, np.ascontiguousarray(np.asarray(image, dtype=np.uint8))))
    return faces


def segment_faces(faces: Sequence[Face], segmenter, progress: bool = False) -> None:
    """Fill each face's ``regions`` once (``segmenter.segment`` class ids through ``region_of``);
    a face the segmenter finds no face in keeps ``None``."""
    for face in tqdm(faces, desc="segment", unit="img", disable=not progress, leave=False):
        labels = segmenter.segment(face.image)
        face.regions = None if labels is None else np.asarray(segmenter.region_of)[labels].astype(np.uint8)


def draw_pairs(faces: dict[str, list[Face]], pair_reals: Sequence[Face], seed: int,
               classes: Sequence[str] = CLASSES) -> dict[tuple[str, str], list[Face | None]]:
    """``(class, kind) -> one partner per face of that class`` (kind ``other`` or ``same``), drawn
    with ``seed`` among the partners the segmenter read: a fake's other-class partner is one of
    ``pair_reals``, a real's a fake; a same-class partner is another face of the class. ``None``
    where the face itself has no region map or no partner exists."""
    rng = np.random.default_rng(seed)
    pools = {("fake", "other"): list(pair_reals), ("real", "other"): faces["fake"],
             ("fake", "same"): faces["fake"], ("real", "same"): faces["real"]}
    out = {}
    for (cls, kind), pool in pools.items():
        if cls not in classes:
            continue
        readable = [f for f in pool if f.regions is not None]
        partners: list[Face | None] = []
        for face in faces[cls]:
            choices = [f for f in readable if f is not face]
            ok = face.regions is not None and choices
            partners.append(choices[int(rng.integers(len(choices)))] if ok else None)
        out[(cls, kind)] = partners
    return out


def pair_rows(faces: dict[str, list[Face]], pairs: dict[tuple[str, str], list[Face | None]]) -> list[dict]:
    """pairs.csv: one row per face and partner kind (``class, image, kind, partner``; partner empty: none)."""
    return [{"class": cls, "image": face.path, "kind": kind, "partner": partner.path if partner else ""}
            for (cls, kind), partners in pairs.items() for face, partner in zip(faces[cls], partners)]


def data_digest(faces: dict[str, list[Face]]) -> str:
    """``<reals>+<fakes>:<10 hex>``: the counts and a digest of the file names used (not their folders),
    so rows from another subset of a test split never pass for the same measurement."""
    names = "\n".join(f"{f.cls}/{Path(f.path).name}" for cls in CLASSES for f in faces[cls])
    return f"{len(faces['real'])}+{len(faces['fake'])}:" + hashlib.sha256(names.encode()).hexdigest()[:10]


def portable_folder(folder: str | Path) -> str:
    """The last two parts of a folder's path (``ffhq/test``): the name the findings table keeps."""
    return "/".join(Path(folder).resolve().parts[-2:])
