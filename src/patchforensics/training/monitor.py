"""What a training run shows while it runs: the TensorBoard scalars and heatmaps, and the one
log line per epoch (above the progress bars, or on stderr when there are none)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..core.heatmap import heatmap_figure
from ..core.imageio import ImageLoadError, load_rgb
from ..data.dataset import FAKE, REAL
from ..scoring.engine import Engine
from ..scoring.metrics import AGGREGATIONS
from .state import TrainState


class NoWriter:
    """Stands in for the TensorBoard writer on ranks other than 0."""

    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


def open_writer(runs_dir: str, name: str, main: bool):
    """The TensorBoard writer of run ``name`` (``runs_dir/name``) on rank 0, a :class:`NoWriter` elsewhere."""
    from torch.utils.tensorboard import SummaryWriter   # slow to import: only when training
    return SummaryWriter(log_dir=str(Path(runs_dir) / name)) if main else NoWriter()


def log_step(writer, step: int, loss: float, patch_acc: float, vote_acc: float, avg_acc: float) -> None:
    """The training loss and the batch accuracies (per patch, by vote, by average) of one step."""
    writer.add_scalar("train/loss", loss, step)
    writer.add_scalar("train/acc_patch", patch_acc, step)
    writer.add_scalar("train/acc_vote", vote_acc, step)
    writer.add_scalar("train/acc_avg", avg_acc, step)


def log_validation(writer, val: dict, lr: float, epoch: int) -> None:
    """AP and accuracy of each aggregation (and per patch) on the validation split, and the learning rate."""
    for a in AGGREGATIONS + ("patch",):
        writer.add_scalar(f"val/ap_{a}", val[a]["ap"], epoch)
        writer.add_scalar(f"val/acc_{a}", val[a]["acc"], epoch)
    writer.add_scalar("train/lr", lr, epoch)


def log_heatmaps(writer, engine: Engine, val_samples, epoch, n: int = 3) -> None:
    """A few validation images with their p(fake) maps (colour bar beside), per class, for TensorBoard."""
    if not engine.card.patch:
        return
    for label, kind in ((REAL, "real"), (FAKE, "fake")):
        images = []
        for s in [s for s in val_samples if s.label == label][:n]:
            try:
                images.append(load_rgb(s.path))
            except ImageLoadError:
                continue
        if images:
            inputs, logits = engine.score_images(images)
            maps = engine.card.p_fake(logits).numpy()
            tiles = [np.asarray(heatmap_figure(im, m)) for im, m in zip(inputs, maps)]
            writer.add_images(f"heatmap_p_fake/{kind}", np.stack(tiles), epoch, dataformats="NHWC")


def epoch_line(epoch: int, max_epochs: int | None, train_loss: float, val_metric: str, score: float,
               state: TrainState, lr: float, seconds: float) -> str:
    """One log line per epoch: epoch, mean training loss, validation metric (and the
    best so far), learning rate, seconds the epoch took (training + validation)."""
    of = f"/{max_epochs}" if max_epochs else ""
    return (f"epoch {epoch}{of} loss {train_loss:.4f} val {val_metric} {score:.4f} "
            f"(best {state.best_metric:.4f} @ {state.best_epoch}) lr {lr:.2e} {seconds:.1f}s")


def log_line(line: str, progress: bool) -> None:
    """Above the progress bars when they are shown, else straight to stderr, so that a
    logged run is never silent until the end."""
    if progress:
        tqdm.write(line)
    else:
        print(line, file=sys.stderr, flush=True)
