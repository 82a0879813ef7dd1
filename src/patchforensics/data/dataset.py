"""Datasets of real and fake image folders.

Labels follow the seed: ``FAKE = 0``, ``REAL = 1``. A folder argument may be
the split folder itself or its parent: ``data_dir(root, "train")`` uses
``root/train`` when that exists, as ``--real ffhq`` with ``ffhq/{train,val,test}``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..core.fileio import file_sha256
from ..core.imageio import ImageLoadError, list_images, load_rgb
from .prepare import SPLITS

FAKE, REAL = 0, 1
LABEL_NAMES = {FAKE: "fake", REAL: "real"}


DATA_ENV = "PATCHFORENSICS_DATA"


def default_data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The faces dataset to use when none is named: ``explicit``, else
    ``$PATCHFORENSICS_DATA``, else ``../shared/data/faces128`` (beside the
    current folder) if it exists; otherwise a ``FileNotFoundError`` saying how to get data."""
    for candidate, source in ((explicit, "--data"), (os.environ.get(DATA_ENV), f"${DATA_ENV}")):
        if candidate:
            if not Path(candidate).is_dir():
                raise FileNotFoundError(f"{source} points to {candidate}, which is not a folder")
            return Path(candidate)
    beside = Path.cwd().parent / "shared" / "data" / "faces128"
    if beside.is_dir():
        return beside
    raise FileNotFoundError(
        "no face data found: pass --data DIR (a folder with ffhq/, tpdne-stylegan2/, generated-photos/, "
        f"each holding train/val/test), or set {DATA_ENV}. To build one from your own images, run "
        "'patchforensics prepare SRC OUT' on a folder of reals and on each generator's samples "
        "(see the README's 'Data' section)")


def data_release(root: str | os.PathLike) -> str | None:
    """The data release a data root belongs to: the highest ``Version X.Y`` in the README beside
    it (``../shared/data/README.md`` for ``faces128``), ``None`` when there is none."""
    readme = Path(root).parent / "README.md"
    try:
        versions = re.findall(r"Version (\d+(?:\.\d+)*)", readme.read_text())
    except OSError:
        return None
    return max(versions, key=lambda v: tuple(map(int, v.split(".")))) if versions else None


def split_subfolders(root: str | os.PathLike) -> list[str]:
    """The standard split subfolders (``train``, ``val``, ``test``) that ``root`` has."""
    return [s for s in SPLITS if (Path(root) / s).is_dir()]


def data_dir(root: str | os.PathLike, split: str | None) -> Path:
    """``root/split`` if that folder exists; ``root`` itself when it has no split
    subfolder at all (a flat folder is used whole); otherwise ``ValueError`` naming
    the splits it has, so that a misspelt partition never scores the training images."""
    root = Path(root)
    if split and (root / split).is_dir():
        return root / split
    if split and split_subfolders(root):
        raise ValueError(f"no subfolder {split!r} in {root}; it has {', '.join(split_subfolders(root))}: "
                         "choose one of those")
    return root


@dataclass(frozen=True)
class Sample:
    path: str
    label: int


def collect_samples(real_dirs: Sequence, fake_dirs: Sequence, split: str | None = None,
                    max_per_class: int | None = None) -> list[Sample]:
    """Image paths under each folder (its ``split`` subfolder if present), labelled.

    Raises ``FileNotFoundError`` for a missing folder and ``ValueError`` for a
    class with no images, each with a hint on what to pass instead.
    """
    samples: list[Sample] = []
    for dirs, label in ((real_dirs, REAL), (fake_dirs, FAKE)):
        if not dirs:
            raise ValueError(f"no {LABEL_NAMES[label]} folder given; pass --{LABEL_NAMES[label]} DIR")
        found: list[Sample] = []
        for d in dirs:
            folder = data_dir(d, split)
            paths = list_images(folder)
            if not paths:
                where = f"{folder}" + (f" (looked for a '{split}' subfolder too)" if split else "")
                raise ValueError(f"no images found in {where}; the {LABEL_NAMES[label]} class is empty. "
                                 "Point it at a folder of .png/.jpg/.webp files or run "
                                 "'patchforensics prepare' first")
            found.extend(Sample(str(p), label) for p in paths)
        if max_per_class:
            found = found[:max_per_class]
        samples.extend(found)
    return samples


def sample_seed(*parts: int) -> np.random.Generator:
    """An RNG determined by integers (e.g. seed, epoch, index)."""
    return np.random.default_rng(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]))


class ImageDataset(Dataset):
    """Labelled images through a transform.

    ``transform(image)`` for evaluation, or ``transform(image, rng)`` when
    ``seed`` is given: then the rng depends on ``(seed, epoch, index)`` only
    (call :meth:`set_epoch` before each epoch). Items are dicts with ``image``
    ``(3, S, S)`` float, ``label``, ``index``, ``path``; a file that fails to load
    yields ``image=None`` and ``error`` (see :func:`collate`).
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable, seed: int | None = None):
        self.samples = list(samples)
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> Image.Image:
        """The decoded RGB image of sample ``index`` (a subclass may cache it)."""
        return load_rgb(self.samples[index].path)

    def __getitem__(self, index: int) -> dict:
        s = self.samples[index]
        item = {"label": s.label, "index": index, "path": s.path}
        try:
            im = self.load_image(index)
            if self.seed is None:
                item["image"] = self.transform(im)
            else:
                item["image"] = self.transform(im, sample_seed(self.seed, self.epoch, index))
        except ImageLoadError as e:
            item["image"], item["error"] = None, e.reason
        return item


def collate(items: list[dict]) -> dict:
    """Stack the loadable items; report the others under ``errors`` as (path, reason)."""
    good = [it for it in items if it["image"] is not None]
    batch = {
        "errors": [(it["path"], it["error"]) for it in items if it["image"] is None],
        "paths": [it["path"] for it in good],
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "label": torch.tensor([it["label"] for it in good], dtype=torch.long),
    }
    batch["image"] = torch.stack([it["image"] for it in good]) if good else None
    return batch


def _resampled(idx: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices from ``idx``: whole copies of it plus a random remainder."""
    return np.concatenate([idx] * (n // len(idx)) + [rng.permutation(idx)[: n % len(idx)]])


def epoch_order(labels: np.ndarray, epoch: int, seed: int, balance: bool,
                groups: np.ndarray | None = None) -> np.ndarray:
    """Sample indices for one epoch, deterministic in ``(seed, epoch)``.

    With ``balance`` the minority class is re-sampled (with replacement) up to
    the size of the majority, so each epoch sees as many reals as fakes. With
    ``groups`` (one id per sample, e.g. its source folder) each class's places are
    shared equally among its groups: a large source is sub-sampled afresh every
    epoch, a small one repeated, so no source dominates what a class looks like.
    """
    rng = sample_seed(seed, epoch, 0x5EED)
    if not balance and groups is None:
        return rng.permutation(np.arange(len(labels)))
    by_class = [np.flatnonzero(labels == c) for c in (FAKE, REAL)]
    sizes = [max(len(i) for i in by_class) if balance else len(i) for i in by_class]
    parts = []
    for idx, n in zip(by_class, sizes):
        if groups is None or len(idx) == 0:
            parts.append(_resampled(idx, n, rng) if len(idx) else idx)
            continue
        members = [idx[groups[idx] == g] for g in np.unique(groups[idx])]
        shares = [n // len(members) + (i < n % len(members)) for i in range(len(members))]
        parts += [_resampled(m, k, rng) for m, k in zip(members, shares)]
    return rng.permutation(np.concatenate(parts))


class EpochSampler(torch.utils.data.Sampler):
    """Yields :func:`epoch_order` for the current epoch, optionally sharded across
    ``num_replicas`` processes (rank ``rank`` takes every ``num_replicas``-th index)."""

    def __init__(self, labels: Sequence[int], seed: int, balance: bool, num_replicas: int = 1,
                 rank: int = 0, groups: Sequence[int] | None = None):
        self.labels = np.asarray(labels)
        self.groups = np.asarray(groups) if groups is not None else None
        self.seed, self.balance = seed, balance
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch; ``skip`` drops that many leading indices (mid-epoch resume)."""
        self.epoch, self.skip = epoch, skip

    def _order(self) -> np.ndarray:
        order = epoch_order(self.labels, self.epoch, self.seed, self.balance, self.groups)
        usable = len(order) - len(order) % self.num_replicas
        return order[:usable][self.rank::self.num_replicas]

    def __iter__(self):
        return iter(self._order()[self.skip:].tolist())

    def __len__(self) -> int:
        return max(0, len(self._order()) - self.skip)


def make_loader(dataset, batch_size: int, num_workers: int, sampler=None) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=num_workers, collate_fn=collate,
                      persistent_workers=False, pin_memory=torch.cuda.is_available())


def split_samples(real: Sequence, fake: Sequence, max_per_class: int | None = None
                  ) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples of ``real`` and ``fake`` folders, as ``train`` splits them.

    A folder with ``train/`` and ``val/`` subfolders uses them; a folder without
    any split subfolder gives its last 10% (sorted by name) to validation; one with
    only some of them is refused. ``max_per_class`` caps the
    training images of each class (validation is never capped).
    """
    train: list[Sample] = []
    val: list[Sample] = []
    for dirs, label in ((real, REAL), (fake, FAKE)):
        for d in map(Path, dirs):
            if (d / "train").is_dir() and (d / "val").is_dir():
                train.extend(Sample(str(p), label) for p in list_images(d / "train"))
                val.extend(Sample(str(p), label) for p in list_images(d / "val"))
                continue
            if split_subfolders(d):      # a flat split of its images would mix the splits it has
                raise ValueError(f"{d} has {', '.join(split_subfolders(d))} but not both train/ and val/; "
                                 "add the missing split or pass a folder without split subfolders")
            paths = list_images(d)
            n_val = len(paths) // 10 if len(paths) >= 10 else min(1, len(paths) - 1)
            train.extend(Sample(str(p), label) for p in paths[:len(paths) - n_val])
            val.extend(Sample(str(p), label) for p in paths[len(paths) - n_val:])
    if max_per_class:
        train = _cap(train, max_per_class)
    for samples, what in ((train, "training"), (val, "validation")):
        for label in (REAL, FAKE):
            if not any(s.label == label for s in samples):
                kind = "real" if label == REAL else "fake"
                raise ValueError(f"no {kind} {what} images found under {real if label == REAL else fake}; "
                                 f"point --{kind} at a folder of images (or one with train/ and val/)")
    return train, val


def held_out_samples(real: Sequence, fake: Sequence) -> list[Sample]:
    """The ``test`` split images of ``real`` and ``fake`` folders that have one (``train``
    never reads them; they must not hold training images either)."""
    return [Sample(str(p), label) for dirs, label in ((real, REAL), (fake, FAKE))
            for d in map(Path, dirs) if (d / "test").is_dir() for p in list_images(d / "test")]


def duplicate_pairs(train: Sequence[Sample], held_out: Sequence[Sample]) -> list[tuple[str, str]]:
    """``(training file, held-out file)`` pairs whose bytes are identical (SHA-256), i.e. the
    same image file in both sets. Cheap: only files whose size occurs on both sides are hashed.
    Byte identity: a re-encoded or resized copy of an image is not found. A file that is no
    usable image (the same junk file in every split) is no leak: training skips it."""
    def sizes(samples):
        out: dict[int, list[str]] = {}
        for s in samples:
            try:
                size = os.stat(s.path).st_size
            except OSError:          # unreadable: training reports it when it loads the file
                continue
            if size:                 # empty files are no image (training reports them too)
                out.setdefault(size, []).append(s.path)
        return out

    def digest(path: str) -> str | None:
        try:
            return file_sha256(path)
        except OSError:
            return None

    train_sizes, held_sizes = sizes(train), sizes(held_out)
    pairs = []
    for size in sorted(set(train_sizes) & set(held_sizes)):
        by_hash: dict[str, str] = {}
        for path in train_sizes[size]:
            by_hash.setdefault(digest(path), path)
        by_hash.pop(None, None)
        pairs.extend((by_hash[h], path) for path in held_sizes[size] if (h := digest(path)) in by_hash)
    usable = {path: _decodes(path) for path in {t for t, _ in pairs}}   # only the (few) matches are decoded
    return sorted(p for p in pairs if usable[p[0]])


def _decodes(path: str) -> bool:
    try:
        load_rgb(path)
    except ImageLoadError:
        return False
    return True


def _cap(samples: list[Sample], n: int) -> list[Sample]:
    out, count = [], {REAL: 0, FAKE: 0}
    for s in samples:
        if count[s.label] < n:
            out.append(s)
            count[s.label] += 1
    return out
