"""``train``: fit a patch (or full-image) classifier on real vs fake folders.

Pure function :func:`train` over a :class:`TrainConfig`; the CLI only builds the
config. This module is the loop: set a run up, train and validate epoch after epoch,
finish (summary, decision thresholds). Its parts live beside it: the options
(:mod:`.config`), the ``--resume`` checks (:mod:`.resume`), the optimisation step
(:mod:`.step`), where a run stands (:mod:`.state`), what it logs (:mod:`.monitor`)
and DistributedDataParallel (:mod:`.distributed`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..core import fileio, ranks
from ..core.imageio import NoUsableImagesError
from ..data.dataset import (FAKE, LABEL_NAMES, REAL, EpochSampler, held_out_samples, make_loader,
                            split_samples)
from ..data.transforms import eval_transform, train_transform
from ..evaluation.calibrate import calibrate
from ..models import create_model
from ..models.card import ModelCard
from ..models.checkpoint import (RESUME_FILE, load_model, load_training_state, save_training_state, save_weights,
                                 weights_path)
from ..scoring.distributed import gather_predictions, shard
from ..scoring.engine import Engine
from ..scoring.runtime import FastPath, configure_runtime, make_dataset, memory_format
from ..scoring.metrics import AGGREGATIONS
from .config import TrainConfig, check_inputs, check_leaks, split_metric
from .distributed import broadcast_buffers, wrap_model
from .monitor import epoch_line, log_heatmaps, log_line, log_step, log_validation, open_writer
from .resume import check_run_folder, resume_differences
from .state import TrainState
from .step import TrainStep, make_optimizer, make_scheduler, step_accuracies, step_scheduler
from .summary import SUMMARY_FILE, read_train_summary, training_minutes, write_train_summary

#: what scripts import from here (README, docs, tests), wherever it is defined
__all__ = ["TrainConfig", "TrainResult", "TrainStep", "train", "source_groups", "resume_differences",
           "SUMMARY_FILE", "read_train_summary", "training_minutes"]


@dataclass
class TrainResult:
    name: str
    checkpoint_dir: Path
    best_epoch: int
    best_metric: float
    epochs_run: int
    history: list[dict[str, Any]]
    skipped: list[dict[str, str]]


def train(cfg: TrainConfig, resume: bool = False, force: bool = False, progress: bool = True,
          stop_after_steps: int | None = None) -> TrainResult:
    """Train per ``cfg``; returns where the checkpoints are and the validation history.

    ``resume`` continues from ``resume.safetensors`` (model, optimizer, scheduler,
    epoch, step within the epoch, early-stopping state), so the next batches are
    exactly those an uninterrupted run would have seen. ``stop_after_steps`` ends
    the run after that many optimizer steps (for tests).

    Under ``torchrun`` the processes train one DistributedDataParallel model:
    each takes ``batch_size / world_size`` images of every step, validation is
    sharded and gathered, and only rank 0 writes checkpoints and logs.
    """
    cfg.validate()
    check_inputs(cfg)
    with ranks.session(cfg.device) as ctx:
        return _train(cfg, ctx, resume, force, progress, stop_after_steps)


def source_groups(samples, folders: list[str]) -> list[int]:
    """For each sample, the index of the folder in ``folders`` it was listed from."""
    roots = [str(Path(f)) + "/" for f in folders]
    return [next(i for i, r in enumerate(roots) if s.path.startswith(r)) for s in samples]


@dataclass
class _Data:
    """The training batches of this process and its share of the validation images."""

    dataset: Any                  # training images; ``set_epoch`` reseeds their augmentation
    sampler: EpochSampler
    loader: Any
    rank_batch: int               # images per step on this process
    val_samples: list             # the whole validation split
    val_positions: list[int]      # where this process's share sits in ``val_samples``
    val_shard: list
    val_dataset: Any


@dataclass
class _Run:
    """What one call of :func:`train` works with."""

    cfg: TrainConfig
    ctx: ranks.DistContext
    name: str
    ckpt_dir: Path
    progress: bool                # progress bars (rank 0 only)
    finished: bool                # resuming a finished run: a failure leaves its summary as it was
    stop_after_steps: int | None
    fast: FastPath
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    card: ModelCard
    writer: Any                   # TensorBoard's SummaryWriter, or monitor.NoWriter
    data: _Data
    step_fn: TrainStep
    state: TrainState
    steps_this_call: int = 0

    def snapshot(self) -> None:
        """Save what ``--resume`` needs (rank 0)."""
        if self.ctx.is_main:
            save_training_state(self.ckpt_dir / RESUME_FILE, self.model, self.optimizer, self.scheduler,
                                self.state.to_progress())

    def write_summary(self, status: str) -> bool:
        """Write ``train_summary.json`` (rank 0); ``False`` where it is left as it was."""
        if not self.ctx.is_main or (self.finished and status != "finished"):
            return False
        write_train_summary(self.ckpt_dir, self.name, status, self.state, self.cfg.val_metric)
        return True

    def result(self) -> TrainResult:
        s = self.state
        return TrainResult(self.name, self.ckpt_dir, s.best_epoch, s.best_metric, len(s.history), s.history,
                           s.skipped.as_list())


def _train(cfg: TrainConfig, ctx: ranks.DistContext, resume: bool, force: bool, progress: bool,
           stop_after_steps: int | None) -> TrainResult:
    run = _setup(cfg, ctx, resume, force, progress and ctx.is_main, stop_after_steps)
    while cfg.max_epochs is None or run.state.epoch <= cfg.max_epochs:
        epoch_start = time.perf_counter()
        if not _train_epoch(run):
            run.writer.close()
            return run.result()
        score, val = _validate(run)
        if _end_epoch(run, score, val, epoch_start):
            break
    _finish(run)
    return run.result()


def _setup(cfg: TrainConfig, ctx: ranks.DistContext, resume: bool, force: bool, progress: bool,
           stop_after_steps: int | None) -> _Run:
    """Check the folder, build the model, optimizer and data; restore them on ``resume``."""
    main = ctx.is_main
    name = cfg.experiment_name()
    ckpt_dir = Path(cfg.checkpoints_dir) / name
    runtime, finished = check_run_folder(cfg, name, ckpt_dir, ctx.device, resume, force)
    train_samples, val_samples = split_samples(cfg.real, cfg.fake, cfg.max_per_class)
    check_leaks(train_samples, val_samples + held_out_samples(cfg.real, cfg.fake), cfg.allow_leak, main)
    ranks.barrier(ctx)   # every process has seen the folder as it was before rank 0 writes
    fast = cfg.fast_path()
    configure_runtime(fast, ctx.device, ctx.local_world_size)
    torch.manual_seed(cfg.seed)
    # channels_last before DistributedDataParallel sees the parameters (its gradient
    # buckets copy their strides)
    model = create_model(cfg.model, cfg.init, cfg.seed, cfg.init_gain)
    if cfg.init_from is not None:      # the seed's --load_model: other weights, this run's options
        model.load_state_dict(load_model(cfg.init_from, cfg.init_from_epoch).model.state_dict())
    model = model.to(device=ctx.device, memory_format=memory_format(fast))
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    card = cfg.card(name, runtime)
    state = TrainState()
    if main:
        fileio.remove_stale_temps(ckpt_dir)   # half-written files of a killed earlier run
    if resume:
        state = TrainState.from_progress(load_training_state(ckpt_dir / RESUME_FILE, model, optimizer, scheduler))
    elif main:
        card.write(ckpt_dir)
        for stale in ckpt_dir.glob("*.safetensors"):   # --force: the old run's files go
            stale.unlink()
    writer = open_writer(cfg.runs_dir, name, main)
    data = _load_data(cfg, ctx, fast, train_samples, val_samples, progress)
    step_fn = TrainStep(wrap_model(model, ctx), optimizer, fast, ctx.device)
    return _Run(cfg, ctx, name, ckpt_dir, progress, finished, stop_after_steps, fast, model, optimizer,
                scheduler, card, writer, data, step_fn, state)


def _load_data(cfg: TrainConfig, ctx: ranks.DistContext, fast: FastPath, train_samples, val_samples,
               progress: bool) -> _Data:
    """The training loader (this process's part of each step) and this process's validation share."""
    tcfg = cfg.transform_config()
    dataset = make_dataset(train_samples, train_transform(tcfg), tcfg, fast, training=True,
                           seed=cfg.seed, progress=progress, desc="decode train")
    val_positions = shard(range(len(val_samples)), ctx)
    val_shard = [val_samples[i] for i in val_positions]
    val_dataset = make_dataset(val_shard, eval_transform(tcfg), tcfg, fast, training=False,
                               progress=progress, desc="decode val")
    groups = source_groups(train_samples, cfg.real + cfg.fake) if cfg.balance_sources else None
    sampler = EpochSampler([s.label for s in train_samples], cfg.seed, cfg.balance,
                           num_replicas=ctx.world_size, rank=ctx.rank, groups=groups)
    rank_batch = cfg.batch_size // ctx.world_size
    loader = make_loader(dataset, rank_batch, cfg.num_workers, sampler)
    return _Data(dataset, sampler, loader, rank_batch, val_samples, val_positions, val_shard, val_dataset)


def _train_epoch(run: _Run) -> bool:
    """The epoch's batches (those left of it on a resume); ``False`` when ``stop_after_steps``
    ended the call (after a snapshot)."""
    cfg, state, data = run.cfg, run.state, run.data
    run.model.train()
    data.dataset.set_epoch(state.epoch)
    data.sampler.set_epoch(state.epoch, skip=state.step_in_epoch * data.rank_batch)
    bar = tqdm(data.loader, desc=f"epoch {state.epoch}", disable=not run.progress, unit="batch", leave=False)
    whole_epoch, usable_labels = state.step_in_epoch == 0, set()
    state.start_epoch_loss()
    for batch in bar:
        state.record_skips(batch["errors"])
        if batch["image"] is None or len(batch["label"]) < 1:
            state.step_in_epoch += 1
            continue
        usable_labels.update(batch["label"].tolist())
        loss, patch_acc = _step(run, batch)
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{patch_acc:.2f}")
        if state.global_step % cfg.save_latest_freq == 0:
            run.snapshot()
        if run.stop_after_steps is not None and run.steps_this_call >= run.stop_after_steps:
            run.snapshot()
            return False
    if whole_epoch:
        _require_both_classes(run, usable_labels, "training")
    return True


def _step(run: _Run, batch: dict) -> tuple[float, float]:
    """One optimizer step on ``batch``, counted and logged; returns its loss and per-patch accuracy."""
    state = run.state
    loss, logits = run.step_fn(batch["image"], batch["label"])
    state.step_in_epoch += 1
    state.global_step += 1
    run.steps_this_call += 1
    # one device->host copy per step (each .item() would wait for the GPU)
    loss_v, patch_acc, vote_acc, avg_acc = torch.cat(
        [loss.reshape(1), step_accuracies(logits, batch["label"].to(logits.device))]).tolist()
    state.add_loss(loss_v)
    log_step(run.writer, state.global_step, loss_v, patch_acc, vote_acc, avg_acc)
    return loss_v, patch_acc


def _validate(run: _Run) -> tuple[float, dict]:
    """Score the epoch's weights on the validation split (sharded over the processes, gathered
    on each); returns ``val_metric`` and all metrics, logged with a few heatmaps."""
    cfg, ctx, data = run.cfg, run.ctx, run.data
    broadcast_buffers(run.model, ctx)
    engine = Engine.from_model(run.model, run.card, run.fast, ctx.device)   # a snapshot of this epoch's weights
    preds = engine.predict(data.val_shard, batch_size=max(cfg.batch_size, 64), num_workers=cfg.num_workers,
                           progress=run.progress, desc="val", dataset=data.val_dataset)
    preds = gather_predictions(preds, data.val_positions, data.val_samples, ctx)
    run.state.record_skips(preds.skipped.skipped)
    _require_both_classes(run, set(preds.labels.tolist()), "validation")
    val = preds.metrics()
    agg, metric = split_metric(cfg.val_metric)
    score = float(val[agg][metric])
    log_validation(run.writer, val, run.optimizer.param_groups[0]["lr"], run.state.epoch)
    if ctx.is_main:
        log_heatmaps(run.writer, engine, data.val_samples, run.state.epoch)
    run.model.train()
    return score, val


def _end_epoch(run: _Run, score: float, val: dict, epoch_start: float) -> bool:
    """Keep the best weights, record and log the epoch, step the schedule, save, snapshot;
    returns whether early stopping ends the run (``patience`` epochs without a better score)."""
    cfg, state, main = run.cfg, run.state, run.ctx.is_main
    epoch = state.epoch
    improved = score > state.best_metric
    if improved:
        state.best_metric, state.best_epoch = score, epoch
    if improved and main:
        save_weights(weights_path(run.ckpt_dir, "bestval"), run.model, epoch=epoch,
                     val_metric=cfg.val_metric, val_score=score)
    lr_now, seconds = run.optimizer.param_groups[0]["lr"], time.perf_counter() - epoch_start
    train_loss = state.mean_loss()
    state.history.append({"epoch": epoch, cfg.val_metric: score, "lr": lr_now, "train_loss": train_loss,
                          "seconds": seconds, "val_ap": {a: val[a]["ap"] for a in AGGREGATIONS}})
    if main:
        log_line(epoch_line(epoch, cfg.max_epochs, train_loss, cfg.val_metric, score, state, lr_now, seconds),
                 run.progress)
    step_scheduler(run.scheduler, score)
    if main and epoch % cfg.save_epoch_freq == 0:
        save_weights(weights_path(run.ckpt_dir, str(epoch)), run.model, epoch=epoch)
    if main:
        save_weights(weights_path(run.ckpt_dir, "latest"), run.model, epoch=epoch)
    stop = cfg.patience > 0 and epoch - state.best_epoch >= cfg.patience
    state.epoch, state.step_in_epoch = epoch + 1, 0
    run.snapshot()
    if stop and run.progress:
        tqdm.write(f"no improvement for {cfg.patience} epochs: stopping")
    return stop


def _finish(run: _Run) -> None:
    """Close the log, write the summary, calibrate the best weights' decision thresholds."""
    cfg, ctx = run.cfg, run.ctx
    run.writer.close()
    run.write_summary("finished")
    if ctx.is_main:
        # decision thresholds on the validation split, scored as the validation passes were
        engine = Engine.load(run.ckpt_dir, "bestval", run.fast, ctx.device, ctx.local_world_size)
        calibration = calibrate(run.ckpt_dir, engine, run.data.val_samples, batch_size=max(cfg.batch_size, 64),
                                num_workers=cfg.num_workers, progress=run.progress,
                                force=True)   # an earlier run's thresholds go to 'previous'
        for warning in calibration.report["warnings"]:          # also in calibration.json
            log_line(f"calibration warning: {warning}", run.progress)


def _require_both_classes(run: _Run, labels_seen: set, what: str) -> None:
    """Stop with :class:`NoUsableImagesError` (summary written first) when every
    image of a class failed to load: there is nothing left to learn or measure."""
    missing = [LABEL_NAMES[c] for c in (REAL, FAKE) if c not in labels_seen]
    if missing:
        written = run.write_summary("failed: no usable " + " or ".join(missing) + f" {what} images")
        skipped = run.state.skipped
        where = "listed in train_summary.json" if written or not skipped.skipped else \
            "e.g. " + ": ".join(skipped.skipped[0])
        raise NoUsableImagesError(f"no readable {' or '.join(missing)} {what} images "
                                  f"({len(skipped)} files skipped, {where})")
