"""What ``train --resume`` may change, and the checks a training call makes on its
checkpoint folder before it writes there (a resume with other options, a run that would
be overwritten)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..core import fileio
from ..core.config import ConfigError
from ..models.card import ModelCard, training_options
from ..models.checkpoint import RESUME_FILE
from .config import TrainConfig
from .summary import read_train_summary

#: options that may differ on ``--resume`` (docs/reliability.md): where and how fast the run goes,
#: how often it saves, and how long it trains (``max_epochs``, except under the cosine schedule,
#: which it lays out). Any other difference (data, model, recipe) is refused.
RESUME_MAY_CHANGE = frozenset({"max_epochs", "num_workers", "threads", "cache_mb", "compile", "device",
                               "checkpoints_dir", "runs_dir", "save_epoch_freq", "save_latest_freq",
                               "allow_leak"})
#: what ``--resume`` compares of what a run really ran with (the CPU model may change)
RESUME_RUNTIME_KEYS = ("precision", "backend", "device")


#: why ``max_epochs`` may not change on a resume under the cosine schedule
COSINE_KEEPS_EPOCHS = (" (under --lr-policy cosine the learning rate falls along a curve laid out over "
                       "max_epochs: a resumed run keeps them, or the rest of its schedule would change)")


def resume_may_change(cfg: TrainConfig) -> frozenset[str]:
    """The options ``cfg`` may change on ``--resume``: :data:`RESUME_MAY_CHANGE`, less
    ``max_epochs`` under the cosine schedule."""
    return RESUME_MAY_CHANGE - ({"max_epochs"} if cfg.lr_policy == "cosine" else set())


def resume_differences(cfg: TrainConfig, name: str, ckpt_dir: Path, runtime: dict[str, str]) -> list[str]:
    """``option: old -> new`` for each option (or effective runtime) that ``cfg`` changes
    against the run in ``ckpt_dir``. Options the stored config predates are not compared;
    the name templates are not (they picked this folder)."""
    stored = ModelCard.read(ckpt_dir)
    old, new = (json.loads(json.dumps(training_options(card.to_dict()), default=str))
                for card in (stored, cfg.card(name)))
    may_change = resume_may_change(cfg)
    lines = [f"{k}: {old[k]!r} -> {new[k]!r}" + (COSINE_KEEPS_EPOCHS if k == "max_epochs" else "")
             for k in sorted(old.keys() & new.keys())
             if k not in may_change and k not in ("name", "suffix", "prefix") and old[k] != new[k]]
    lines += [f"{k} (effective): {stored.runtime[k]} -> {runtime[k]}" for k in RESUME_RUNTIME_KEYS
              if k in stored.runtime and stored.runtime[k] != runtime[k]]
    return lines


def check_run_folder(cfg: TrainConfig, name: str, ckpt_dir: Path, device: torch.device, resume: bool,
                     force: bool) -> tuple[dict[str, str], bool]:
    """Refuse a ``--resume`` without a snapshot or with other options (``ConfigError``, listing
    them), and a new run over an existing one without ``force``.

    Returns the run's runtime (:meth:`TrainConfig.runtime` on ``device``, what ``--resume``
    compares) and whether the run being resumed had already finished (a failed resume
    must leave its summary as it was)."""
    resume_file = ckpt_dir / RESUME_FILE
    if resume and not resume_file.is_file():
        raise FileNotFoundError(f"--resume: {resume_file} not found; start without --resume")
    runtime = cfg.runtime(device)
    changed = resume_differences(cfg, name, ckpt_dir, runtime) if resume else []
    if changed:
        raise ConfigError(f"--resume: {ckpt_dir} was trained with other data or options; resume with the same "
                          "ones (only " + ", ".join(sorted(resume_may_change(cfg))) + " may change), or start a new "
                          "run (another --suffix, or --force):\n  " + "\n  ".join(changed))
    finished = resume and read_train_summary(ckpt_dir).get("status") == "finished"
    if not resume and ckpt_dir.exists() and any(ckpt_dir.glob("*.safetensors")) and not force:
        raise fileio.OutputExistsError(
            f"{ckpt_dir} already holds a run; pass --resume to continue it, --force to start over, "
            "or choose another --name/--suffix")
    return runtime, finished
