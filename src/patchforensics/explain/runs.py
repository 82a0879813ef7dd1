"""The set-up an explain run shares with the others: class folders, inputs, the model, output arrays."""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core import fileio
from ..core.config import ConfigError
from ..data.dataset import FAKE, REAL, Sample, collect_samples
from ..data.transforms import Corruption, parse_corruptions, to_image
from ..evaluation.evaluate import TestConfig, results_dir_for
from ..models.card import ModelCard
from ..scoring.engine import Engine

CLASS_DIRS = {REAL: "reals", FAKE: "fakes"}
GROUPS = ("easiest", "hardest")


def require_patch_model(card: ModelCard, command: str) -> None:
    """Fail before any work when the model is a full-image model (no patch map)."""
    if not card.patch:
        raise ConfigError(f"checkpoint: {command} needs a patch model (e.g. xception_block2, "
                          f"resnet18_layer1, widenet_kw7_d1); {card.architecture} is a full-image model")


@dataclass
class ExplainRun:
    """What ``visualize`` and ``patches`` both set up before their own work."""
    corruptions: list[Corruption]
    samples: list[Sample]
    engine: Engine
    out_dir: Path          # results/<name>/<partition>/epoch_<which>/<dataset>[_<corruptions>]


def open_explain_run(cfg: TestConfig, engine: Engine | None, command: str) -> ExplainRun:
    """Validate ``cfg``, list its samples and open its patch model (unless given), all before any work."""
    cfg.validate()
    corruptions = list(parse_corruptions(cfg.corrupt))
    samples = collect_samples(cfg.real, cfg.fake, split=cfg.partition)
    if engine is None:
        require_patch_model(ModelCard.read(cfg.checkpoint), command)
        engine = Engine.load(cfg.checkpoint, cfg.which_epoch, cfg.fast_path(), cfg.device)
    require_patch_model(engine.card, command)
    out_dir = results_dir_for(cfg.results_dir, engine.name, cfg.partition, cfg.which_epoch,
                              cfg.dataset_name, corruptions)
    return ExplainRun(corruptions, samples, engine, out_dir)


def image_array(tensor: torch.Tensor) -> np.ndarray:
    """``(3, S, S)`` tensor in [-1, 1] -> ``(S, S, 3)`` uint8 (exact inverse of ``to_tensor``)."""
    return np.asarray(to_image(tensor))


def save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    fileio.write_bytes(path, buf.getvalue())


def safe_stem(path: str, limit: int = 60) -> str:
    """A file-name-safe version of ``path``'s stem."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem)[:limit] or "image"
