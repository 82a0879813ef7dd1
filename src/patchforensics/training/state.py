"""``TrainState``: where a training run stands (epoch, step, best validation score, history,
skipped files), and its form in the ``--resume`` snapshot.

The snapshot stores it as the JSON dict ``progress`` inside ``resume.safetensors``
(:func:`~patchforensics.models.checkpoint.save_training_state`); :meth:`TrainState.to_progress`
and :meth:`TrainState.from_progress` keep its keys, so snapshots of earlier versions stay readable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..core.imageio import SkipLog


@dataclass
class TrainState:
    """Progress of a run; ``epoch`` is 1-based, ``step_in_epoch`` counts the batches of it
    already used (skipped empty ones too), ``global_step`` the optimizer steps of the run."""

    epoch: int = 1
    step_in_epoch: int = 0
    global_step: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0                       # 0: no validation yet
    history: list[dict[str, Any]] = field(default_factory=list)   # one dict per validated epoch
    # running training loss of the current epoch; None: a snapshot from before it was recorded
    epoch_loss_sum: float | None = None
    epoch_loss_steps: int | None = None
    # unreadable files; kept in the snapshot so that a resumed run still lists them
    skipped: SkipLog = field(default_factory=SkipLog)

    @classmethod
    def from_progress(cls, progress: dict[str, Any]) -> "TrainState":
        """The state a snapshot's ``progress`` dict records."""
        return cls(epoch=progress["epoch"], step_in_epoch=progress["step_in_epoch"],
                   global_step=progress["global_step"], best_metric=progress["best_metric"],
                   best_epoch=progress["best_epoch"], history=progress["history"],
                   epoch_loss_sum=progress.get("epoch_loss_sum"), epoch_loss_steps=progress.get("epoch_loss_steps"),
                   skipped=SkipLog([tuple(s) for s in progress.get("skipped", [])]))

    def to_progress(self) -> dict[str, Any]:
        """The ``progress`` dict of the snapshot (keys and their order as always written)."""
        return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
                "best_metric": self.best_metric, "best_epoch": self.best_epoch, "history": self.history,
                "epoch_loss_sum": self.epoch_loss_sum, "epoch_loss_steps": self.epoch_loss_steps,
                "skipped": [list(s) for s in self.skipped.skipped]}

    def start_epoch_loss(self) -> None:
        """Start the running loss of the epoch, unless a resumed epoch already has one (a
        resumed epoch keeps the loss of the steps before the interruption; older snapshots
        did not record it: the mean then starts at the resumed step)."""
        if self.step_in_epoch == 0 or self.epoch_loss_sum is None:
            self.epoch_loss_sum, self.epoch_loss_steps = 0.0, 0

    def add_loss(self, loss: float) -> None:
        self.epoch_loss_sum += loss
        self.epoch_loss_steps += 1

    def mean_loss(self) -> float:
        """The mean training loss of the epoch's steps (0 when it had none)."""
        return self.epoch_loss_sum / max(self.epoch_loss_steps, 1)

    def record_skips(self, errors: Iterable[tuple[str, str]]) -> None:
        """Add ``(path, reason)`` pairs not yet listed (each epoch meets the same bad files)."""
        known = {p for p, _ in self.skipped.skipped}
        for path, reason in errors:
            if path not in known:
                self.skipped.skipped.append((path, reason))
                known.add(path)
