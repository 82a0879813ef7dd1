"""What an adaptation trains and chooses on, besides the user's fakes: replayed training
data of the base, and the reals its thresholds rest on."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image

from ..core.imageio import list_images
from ..data.dataset import FAKE, REAL, Sample, duplicate_pairs, sample_seed, split_samples
from ..models.card import ModelCard
from .inputs import Faces


@dataclass
class Replay:
    """The base's training folders as found here; ``note`` says why there is no replay."""

    real: list[str] = field(default_factory=list)
    fake: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def available(self) -> bool:
        return bool(self.real)


def resolve_folder(folder: str, anchors: Sequence[Path], root: Path | None = None) -> Path | None:
    """``folder`` as recorded in a card, if it exists here: under ``root`` by its name
    (``--replay DIR``: the folder that holds the base's training folders), else as written
    (absolute, or relative to the working folder or to one of ``anchors``, e.g. the
    repository an installed card came from)."""
    path = Path(folder)
    if root is not None:
        candidates = [root / path.name]
    elif path.is_absolute():
        candidates = [path]
    else:
        candidates = [Path.cwd() / path, *(a / path for a in anchors)]
    return next((c for c in candidates if c.is_dir()), None)


def find_replay(card: ModelCard, enabled: bool, root: str | None, anchors: Sequence[Path]) -> Replay:
    """The base's training folders to replay (``enabled``), found by :func:`resolve_folder`."""
    if not enabled:
        return Replay(note="replay off (--no-replay)")
    real, fake = card.training_folders
    found = [resolve_folder(f, anchors, Path(root) if root else None) for f in real + fake]
    missing = [f for f, p in zip(real + fake, found) if p is None]
    if not real or missing:
        why = "the card records no training folders" if not real else f"not found here: {', '.join(missing)}"
        return Replay(note=f"no replay of the base's training data ({why}); adapting without it")
    return Replay(real=[str(p) for p in found[:len(real)]], fake=[str(p) for p in found[len(real):]])


def _pick(samples: list[Sample], n: int, seed: int) -> list[str]:
    if len(samples) <= n:
        return [s.path for s in samples]
    idx = sorted(sample_seed(seed, len(samples)).choice(len(samples), n, replace=False))
    return [samples[i].path for i in idx]


@dataclass
class ReplaySets:
    """Paths drawn from the replay folders (training split only), and their validation split."""

    train_real: list[str]
    train_fake: list[str]
    val_real: list[str]
    val_fake: list[str]


def replay_sets(replay: Replay, per_class: int, seed: int) -> ReplaySets:
    """Up to ``per_class`` training reals and old fakes (the fakes spread evenly over the
    folders), seeded; the validation split whole."""
    if not replay.available:
        return ReplaySets([], [], [], [])
    train, val = split_samples(replay.real, replay.fake)
    reals = [s for s in train if s.label == REAL]
    fakes: list[str] = []
    for i, folder in enumerate(replay.fake):
        root = str(Path(folder)) + os.sep
        mine = [s for s in train if s.label == FAKE and s.path.startswith(root)]
        fakes.extend(_pick(mine, max(1, per_class // len(replay.fake)), seed + 10 + i))
    return ReplaySets(_pick(reals, per_class, seed + 1), fakes,
                      [s.path for s in val if s.label == REAL],
                      [s.path for s in val if s.label == FAKE])


def leaks(fakes: Sequence[str], others: Sequence[str]) -> list[tuple[str, str]]:
    """``(fake, other)`` pairs of byte-identical files (SHA-256): a fake that is also a real
    or one of the base's own training images. Re-encoded copies are not caught."""
    return duplicate_pairs([Sample(p, FAKE) for p in fakes], [Sample(p, REAL) for p in others])


def training_images(replay: Replay) -> list[str]:
    """Every image of the replay folders (all splits): what a leak is checked against."""
    return [str(p) for folder in [*replay.real, *replay.fake] for p in list_images(folder)]


def folds(n: int, k: int, seed: int) -> list[list[int]]:
    """``k`` disjoint index folds covering ``range(n)``, seeded (``k`` capped at ``n``)."""
    order = sample_seed(seed, n, 31).permutation(n)
    k = min(k, n)
    return [sorted(order[i::k].tolist()) for i in range(k)]


@dataclass
class Inputs:
    """Everything one adaptation reads, as model-input faces (see :class:`Faces`)."""

    fakes: Faces
    train_real: list[Image.Image]
    old_fake: list[Image.Image]
    threshold_real: list[Image.Image]
    threshold_real_paths: list[str]
    val_fake: list[str] = field(default_factory=list)      # the base's validation fakes (eer only)
    notes: list[str] = field(default_factory=list)
    replay: Replay | None = None
