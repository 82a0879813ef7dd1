"""``train_summary.json``: what a finished (or failed) training run says about itself.

``train`` writes it at the end of every call (:func:`write_train_summary`); ``release``,
the experiment runner and ``train --resume`` read it through :func:`read_train_summary`
only, so its fields are named in one place: ``name``, ``status`` (``finished`` or
``failed: …``), ``best_epoch``, ``best_metric``, ``val_metric``, ``history`` (one dict per
epoch, with ``seconds``) and ``skipped`` (unreadable files).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core import fileio
from .state import TrainState

SUMMARY_FILE = "train_summary.json"


def write_train_summary(ckpt_dir: str | Path, name: str, status: str, state: TrainState, val_metric: str) -> None:
    """Write the summary of run ``name`` as ``state`` leaves it (atomically)."""
    fileio.write_json(Path(ckpt_dir) / SUMMARY_FILE, {
        "name": name, "status": status, "best_epoch": state.best_epoch, "best_metric": state.best_metric,
        "val_metric": val_metric, "history": state.history, "skipped": state.skipped.as_list()})


def read_train_summary(ckpt_dir: str | Path) -> dict[str, Any]:
    """The run's summary as a dict; ``{}`` when the folder has none or it cannot be read
    (a run still in progress, or one killed before its first summary)."""
    try:
        summary = json.loads((Path(ckpt_dir) / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def training_minutes(history: list[dict[str, Any]]) -> float:
    """Minutes a run spent training and validating, from its summary's ``history``
    (every call of a resumed run counted; the wall time of one call is not)."""
    return sum(h.get("seconds", 0.0) for h in history) / 60
