"""One optimisation step and what drives it: the per-patch loss, the batch accuracies
logged with it, :class:`TrainStep` (forward under autocast, backward, update), the
optimizer and its learning-rate schedule.

Each batch is a cross-entropy over *every patch* (the image label broadcast to all
output positions), as in the seed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..scoring.runtime import FastPath, autocast, memory_format
from .config import TrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over ``model``'s parameters; with ``weight_decay`` 0 it is exactly the seed's Adam."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999),
                             weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """The learning-rate schedule, stepped once per epoch (``None`` for constant):
    ``plateau`` lowers the rate x0.1 after ``plateau_patience`` epochs without a better
    validation metric; ``cosine`` decays it from ``lr`` to 0 over ``max_epochs``."""
    if cfg.lr_policy == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1,
                                                          patience=cfg.plateau_patience)
    if cfg.lr_policy == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.max_epochs)
    return None


def step_scheduler(scheduler, score: float) -> None:
    """Advance the schedule by one epoch (``plateau`` decides from the epoch's validation ``score``)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(score)
    elif scheduler is not None:
        scheduler.step()


def patch_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every patch against its image's label: logits ``(N, 2, H', W')``,
    labels ``(N,)``; the mean over all ``N * H' * W'`` patches."""
    target = labels.view(-1, 1, 1).expand(-1, logits.shape[2], logits.shape[3])
    return F.cross_entropy(logits.float(), target)


@torch.no_grad()
def step_accuracies(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Training accuracies of one batch, ``(3,)`` float32: per patch, by vote (majority
    of patch decisions) and by the average patch softmax. ``logits`` ``(N, 2, H', W')``."""
    patch_pred = logits.argmax(1)                                          # (N, H', W')
    patch = (patch_pred == labels.view(-1, 1, 1)).float().mean()
    vote = ((patch_pred.flatten(1).float().mean(1) > 0.5).long() == labels).float().mean()
    avg = (torch.softmax(logits, 1).mean((2, 3)).argmax(1) == labels).float().mean()
    return torch.stack([patch, vote, avg])


class TrainStep:
    """One optimizer step on the configured fast path.

    ``step(images, labels)`` moves the batch to ``device`` (channels_last when
    enabled), runs the forward pass under bf16 autocast where the hardware has
    it, and returns the detached loss and float32 logits ``(N, 2, H', W')``.
    ``model`` (possibly DistributedDataParallel) must already be on ``device``;
    its parameters are switched to the chosen memory format here.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, fast: FastPath,
                 device: torch.device):
        self.optimizer, self.fast, self.device = optimizer, fast, device
        self.format = memory_format(fast)
        model.to(memory_format=self.format)
        self.forward = torch.compile(model) if fast.compile else model

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.to(self.device, non_blocking=True).contiguous(memory_format=self.format)
        y = labels.to(self.device, non_blocking=True)
        with autocast(self.fast, self.device):
            logits = self.forward(x)
        loss = patch_loss(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logits.detach().float()
