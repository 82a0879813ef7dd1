"""``train``: fit a patch (or full-image) classifier on real vs fake folders.

Pure function :func:`train` over a :class:`TrainConfig`; the CLI only builds
the config. Each batch is a cross-entropy over *every patch* (the image label
broadcast to all output positions), as in the seed.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..core import fileio, ranks
from ..core.config import ConfigError, require, to_dict
from ..core.heatmap import heatmap_figure
from ..core.imageio import ImageLoadError, NoUsableImagesError, SkipLog, load_rgb
from ..data.dataset import (FAKE, LABEL_NAMES, REAL, EpochSampler, collect_samples, duplicate_pairs,
                            held_out_samples, make_loader, split_samples)
from ..data.transforms import TransformConfig, eval_transform, train_transform
from ..evaluation.calibrate import calibrate
from ..models import INIT_TYPES, SEED_INIT_GAIN, check_model_name, create_model, is_patch_model
from ..models.card import ModelCard, training_options
from ..models.checkpoint import (RESUME_FILE, load_training_state, save_training_state, save_weights,
                                 weights_path)
from ..scoring import distributed
from . import distributed as ddp
from .summary import SUMMARY_FILE, read_train_summary, training_minutes  # noqa: F401 (re-exported)
from ..scoring.engine import Engine
from ..scoring.fastpath import (FastPath, autocast, configure_runtime, effective_precision, inference_backend,
                                make_dataset, memory_format, runtime_info)
from ..scoring.metrics import AGGREGATIONS

LR_POLICIES = ("constant", "plateau", "cosine")
# patch models train on random crops of this size: as good per epoch as whole 128-px
# images and ~3x cheaper, so more epochs fit a CPU budget (docs/recipe.md)
PATCH_TRAIN_CROP = 64
#: the metrics ``val_metric`` may name (``ap``: fakes positive; ``ap_real_positive``: the seed's AP)
METRIC_NAMES = ("ap_real_positive", "roc_auc", "ap", "acc")
VAL_METRICS = tuple(f"{a}_{m}" for a in AGGREGATIONS + ("patch",) for m in METRIC_NAMES)


@dataclass
class TrainConfig:
    """Options of ``patchforensics train`` (the seed's names in brackets).

    Sizes are pixels; ``lr`` is Adam's step size; ``patience`` counts epochs
    without a better validation metric before training stops (0: never).

    Defaults are the recipe that won the sweep in docs/recipe.md, not the seed's:
    kaiming init, cosine schedule over 30 epochs, and patch models trained on random
    ``PATCH_TRAIN_CROP``-px crops (they are evaluated on the whole ``load_size``
    image). ``fine_size=None`` / ``random_crop=None`` resolve to that crop for patch
    models and to the whole image for full-image models.
    """

    real: list[str] = field(default_factory=list)     # [real_im_path]
    fake: list[str] = field(default_factory=list)     # [fake_im_path]
    model: str = "xception_block2"                    # [which_model_netD]
    name: str = "{model}_size{load_size}"
    suffix: str = ""
    prefix: str = ""
    init: str = "kaiming"                             # [init_type]; the seed's is xavier
    init_gain: float = SEED_INIT_GAIN                 # [init_gain], for xavier/normal/orthogonal
    seed: int = 0
    load_size: int = 128                              # [loadSize]
    fine_size: int | None = None                      # [fineSize]; None: see the docstring
    batch_size: int = 32
    lr: float = 0.001
    beta1: float = 0.9
    weight_decay: float = 0.0                         # decoupled (AdamW); 0 = the seed's Adam
    lr_policy: str = "cosine"                         # constant | plateau | cosine (to 0 at max_epochs)
    plateau_patience: int = 5                         # epochs before plateau lowers lr ×0.1
    patience: int = 0                                 # the seed's was 10 (with a constant lr)
    max_epochs: int | None = 30
    save_epoch_freq: int = 100
    save_latest_freq: int = 50                        # steps between resumable snapshots
    val_metric: str = "after_softmax_ap"
    flip: bool = True                                 # [not no_flip]
    random_crop: bool | None = None                   # None: on for a patch model's crop
    random_resized_crop: bool = False
    color_jitter: bool = False                        # [color_augment]
    cnn_aug_prob: float = 0.0                         # [cnn_detection_augment]
    balance: bool = True
    balance_sources: bool = False                     # every --real/--fake folder of a class equally often
    max_per_class: int | None = None                  # [max_dataset_size]
    checkpoints_dir: str = "checkpoints"
    runs_dir: str = "runs"
    num_workers: int = 0
    device: str = "auto"
    # fast paths (docs/performance.md): each on where it helps, each can be turned off
    channels_last: bool = True
    bf16: str = "auto"                                # auto (native bf16 hardware only) | on | off
    fold_bn: bool = True                              # for validation passes
    backend: str = "auto"                             # auto | torch | onnx, for validation passes
    cache_mb: int = 2048                              # decoded-image cache; 0 = decode every time
    threads: int = 0                                  # intra-op threads per process; 0 = one per core
    compile: bool = False                             # torch.compile the model (slow to compile on CPU)
    allow_leak: bool = False                          # only warn when a training image is also held out

    def __post_init__(self) -> None:
        if self.fine_size is None or self.random_crop is None:
            try:
                patch = is_patch_model(self.model)
            except ValueError:
                patch = True                              # validate() names the unknown model
            if self.fine_size is None:
                self.fine_size = min(PATCH_TRAIN_CROP, self.load_size) if patch else self.load_size
            if self.random_crop is None:
                self.random_crop = patch and self.fine_size < self.load_size and not self.random_resized_crop

    def validate(self) -> None:
        try:
            check_model_name(self.model)
        except ValueError as e:
            raise ConfigError(f"model: {e}") from None
        require(self.init in INIT_TYPES, "init", f"must be one of {', '.join(INIT_TYPES)}")
        require(self.init_gain > 0 and math.isfinite(self.init_gain), "init_gain", "must be > 0")
        require(self.load_size > 0 and self.fine_size > 0, "fine_size", "sizes must be > 0")
        require(self.fine_size <= self.load_size, "fine_size",
                f"fine_size {self.fine_size} is larger than load_size {self.load_size}; "
                "images are resized to load_size and then cropped to fine_size")
        require(self.batch_size >= 2, "batch_size", "must be at least 2")
        require(self.lr > 0 and math.isfinite(self.lr), "lr", f"must be a positive number, got {self.lr}")
        require(0 <= self.beta1 < 1, "beta1", "must be in [0, 1)")
        require(self.lr_policy in LR_POLICIES, "lr_policy", f"must be one of {', '.join(LR_POLICIES)}")
        require(self.lr_policy != "cosine" or self.max_epochs is not None, "lr_policy",
                "cosine decays the rate to 0 at max_epochs; give --max-epochs too")
        require(self.weight_decay >= 0 and math.isfinite(self.weight_decay), "weight_decay", "must be >= 0")
        require(self.patience >= 0, "patience", "must be >= 0 (0 disables early stopping)")
        require(self.plateau_patience >= 0, "plateau_patience", "must be >= 0")
        require(self.max_epochs is None or self.max_epochs > 0, "max_epochs", "must be > 0")
        require(self.save_epoch_freq > 0, "save_epoch_freq", "must be > 0")
        require(self.save_latest_freq > 0, "save_latest_freq", "must be > 0")
        require(self.val_metric in VAL_METRICS, "val_metric", f"must be one of {', '.join(VAL_METRICS)}")
        require(0 <= self.cnn_aug_prob <= 1, "cnn_aug_prob", "is a probability in [0, 1]")
        require(not (self.random_crop and self.random_resized_crop), "random_crop",
                "choose random_crop or random_resized_crop, not both")
        require(self.num_workers >= 0, "num_workers", "must be >= 0")
        require(self.max_per_class is None or self.max_per_class > 0, "max_per_class", "must be > 0")
        fast = self.fast_path()
        fast.validate()
        world = ranks.world_size()
        require(self.batch_size % world == 0 and self.batch_size // world >= 1, "batch_size",
                f"{self.batch_size} does not split evenly over {world} processes; it is the total "
                "batch of one step, so pass a multiple of --nproc-per-node x --nnodes")
        try:
            self.experiment_name()
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"name/suffix/prefix: unknown field {e} in the template; use config "
                              "keys in braces, e.g. --suffix seed{seed}_{model}_p{patience}") from None

    def experiment_name(self) -> str:
        """``name``, ``suffix`` and ``prefix`` templates filled in from the config."""
        values = to_dict(self)
        name = self.name.format(**values)
        if self.suffix:
            name += "_" + self.suffix.format(**values)
        if self.prefix:
            name = self.prefix.format(**values) + "-" + name
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"bad experiment name {name!r}")
        return name

    def fast_path(self) -> FastPath:
        return FastPath(channels_last=self.channels_last, bf16=self.bf16, fold_bn=self.fold_bn,
                        backend=self.backend, cache_mb=self.cache_mb, threads=self.threads,
                        compile=self.compile)

    def card(self, name: str, runtime: dict[str, str] | None = None) -> ModelCard:
        """The model card of a run of this config named ``name`` (no thresholds yet);
        ``runtime``: what it runs with (:meth:`runtime`)."""
        options = {k: v for k, v in to_dict(self).items() if k not in ("model", "load_size", "fine_size")}
        return ModelCard(name=name, architecture=self.model, load_size=self.load_size,
                         fine_size=self.fine_size, options=options, runtime=runtime or {})

    def runtime(self, device: torch.device) -> dict[str, str]:
        """The effective training precision (``bf16`` resolved for ``device``), the backend of
        the validation passes, the device and the CPU kind: results depend on them."""
        fast = self.fast_path()
        return runtime_info(effective_precision(fast, device), inference_backend(fast, device), device)

    def transform_config(self) -> TransformConfig:
        return TransformConfig(self.load_size, self.fine_size, self.flip, self.random_crop,
                               self.random_resized_crop, self.color_jitter, self.cnn_aug_prob,
                               is_patch_model(self.model))


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


@dataclass
class TrainResult:
    name: str
    checkpoint_dir: Path
    best_epoch: int
    best_metric: float
    epochs_run: int
    history: list[dict[str, Any]]
    skipped: list[dict[str, str]]


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


def check_inputs(cfg: TrainConfig) -> None:
    """Fail fast on missing folders or an empty class, before any model is built."""
    require(bool(cfg.real), "real", "give at least one --real folder")
    require(bool(cfg.fake), "fake", "give at least one --fake folder")
    for d in list(cfg.real) + list(cfg.fake):
        if not Path(d).is_dir():
            raise FileNotFoundError(f"{d} is not a folder; pass an existing folder of images")
    collect_samples(cfg.real, cfg.fake)


def check_leaks(train_samples, held_out, allow: bool, report: bool = True) -> None:
    """Refuse (``ValueError``), or with ``allow`` only warn on stderr, when a training file
    is byte-identical to a validation or test file: its scores there would be inflated."""
    pairs = duplicate_pairs(train_samples, held_out)
    if not pairs:
        return
    shown = "; ".join(f"{a} = {b}" for a, b in pairs[:3]) + (" …" if len(pairs) > 3 else "")
    what = f"{len(pairs)} training image(s) also in the validation/test folders (identical files): {shown}"
    if not allow:
        raise ValueError(f"{what}; remove the copies (e.g. rebuild the folders with 'prepare --force') "
                         "or pass --allow-leak to train anyway")
    if report:
        print(f"warning: {what} (--allow-leak)", file=sys.stderr, flush=True)


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


def _train(cfg: TrainConfig, ctx: ranks.DistContext, resume: bool, force: bool, progress: bool,
           stop_after_steps: int | None) -> TrainResult:
    main = ctx.is_main
    progress = progress and main
    name = cfg.experiment_name()
    ckpt_dir = Path(cfg.checkpoints_dir) / name
    resume_file = ckpt_dir / RESUME_FILE
    if resume and not resume_file.is_file():
        raise FileNotFoundError(f"--resume: {resume_file} not found; start without --resume")
    runtime = cfg.runtime(ctx.device)
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
    train_samples, val_samples = split_samples(cfg.real, cfg.fake, cfg.max_per_class)
    check_leaks(train_samples, val_samples + held_out_samples(cfg.real, cfg.fake), cfg.allow_leak, main)
    ranks.barrier(ctx)   # every process has seen the folder as it was before rank 0 writes
    device = ctx.device
    fast = cfg.fast_path()
    configure_runtime(fast, device, ctx.local_world_size)
    torch.manual_seed(cfg.seed)

    # channels_last before DistributedDataParallel sees the parameters (its gradient
    # buckets copy their strides)
    model = create_model(cfg.model, cfg.init, cfg.seed, cfg.init_gain).to(device=device, memory_format=memory_format(fast))
    # AdamW with weight_decay 0 is exactly the seed's Adam
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999),
                                  weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg)
    card = cfg.card(name, runtime)
    progress_state: dict[str, Any] = {"epoch": 1, "step_in_epoch": 0, "global_step": 0,
                                      "best_metric": -math.inf, "best_epoch": 0, "history": []}
    if main:
        fileio.remove_stale_temps(ckpt_dir)   # half-written files of a killed earlier run
    if resume:
        progress_state = load_training_state(resume_file, model, optimizer, scheduler)
    elif main:
        card.write(ckpt_dir)
        for stale in ckpt_dir.glob("*.safetensors"):   # --force: the old run's files go
            stale.unlink()

    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(log_dir=str(Path(cfg.runs_dir) / name)) if main else _NoWriter()
    tcfg = cfg.transform_config()
    dataset = make_dataset(train_samples, train_transform(tcfg), tcfg, fast, training=True,
                           seed=cfg.seed, progress=progress, desc="decode train")
    val_positions = distributed.shard(range(len(val_samples)), ctx)
    val_shard = [val_samples[i] for i in val_positions]
    val_dataset = make_dataset(val_shard, eval_transform(tcfg), tcfg, fast, training=False,
                               progress=progress, desc="decode val")
    sampler = EpochSampler([s.label for s in train_samples], cfg.seed, cfg.balance,
                           num_replicas=ctx.world_size, rank=ctx.rank,
                           groups=source_groups(train_samples, cfg.real + cfg.fake) if cfg.balance_sources else None)
    rank_batch = cfg.batch_size // ctx.world_size
    loader = make_loader(dataset, rank_batch, cfg.num_workers, sampler)
    step_fn = TrainStep(ddp.wrap_model(model, ctx), optimizer, fast, device)
    # unreadable files; kept in the snapshot so that a resumed run still lists them
    skipped = SkipLog([tuple(s) for s in progress_state.get("skipped", [])])
    steps_this_call = 0

    def snapshot() -> None:
        progress_state["skipped"] = [list(s) for s in skipped.skipped]
        if main:
            save_training_state(resume_file, model, optimizer, scheduler, progress_state)

    def write_summary(status: str) -> bool:
        if not main or (finished and status != "finished"):   # a failed resume leaves a finished run as it was
            return False
        fileio.write_json(ckpt_dir / SUMMARY_FILE, {
            "name": name, "status": status, "best_epoch": progress_state["best_epoch"],
            "best_metric": progress_state["best_metric"], "val_metric": cfg.val_metric,
            "history": progress_state["history"], "skipped": skipped.as_list()})
        return True

    epoch = progress_state["epoch"]
    while cfg.max_epochs is None or epoch <= cfg.max_epochs:
        model.train()
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch, skip=progress_state["step_in_epoch"] * rank_batch)
        bar = tqdm(loader, desc=f"epoch {epoch}", disable=not progress, unit="batch", leave=False)
        whole_epoch, usable_labels = progress_state["step_in_epoch"] == 0, set()
        epoch_start = time.perf_counter()
        # a resumed epoch keeps the loss of the steps before the interruption (older
        # snapshots did not record it: the mean then starts at the resumed step)
        if whole_epoch or "epoch_loss_sum" not in progress_state:
            progress_state.update(epoch_loss_sum=0.0, epoch_loss_steps=0)
        for batch in bar:
            _record_skips(skipped, batch["errors"])
            if batch["image"] is None or len(batch["label"]) < 1:
                progress_state["step_in_epoch"] += 1
                continue
            usable_labels.update(batch["label"].tolist())
            loss, logits = step_fn(batch["image"], batch["label"])
            progress_state["step_in_epoch"] += 1
            progress_state["global_step"] += 1
            steps_this_call += 1
            # one device->host copy per step (each .item() would wait for the GPU)
            loss_v, patch_acc, vote_acc, avg_acc = torch.cat(
                [loss.reshape(1), step_accuracies(logits, batch["label"].to(logits.device))]).tolist()
            progress_state["epoch_loss_sum"] += loss_v
            progress_state["epoch_loss_steps"] += 1
            step = progress_state["global_step"]
            writer.add_scalar("train/loss", loss_v, step)
            writer.add_scalar("train/acc_patch", patch_acc, step)
            writer.add_scalar("train/acc_vote", vote_acc, step)
            writer.add_scalar("train/acc_avg", avg_acc, step)
            bar.set_postfix(loss=f"{loss_v:.3f}", acc=f"{patch_acc:.2f}")
            if step % cfg.save_latest_freq == 0:
                snapshot()
            if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                snapshot()
                writer.close()
                return _result(name, ckpt_dir, progress_state, skipped)

        # ---- end of epoch: validate, keep the best, decide whether to stop
        if whole_epoch:
            _require_both_classes(usable_labels, "training", skipped, write_summary)
        ddp.broadcast_buffers(model, ctx)
        engine = Engine.from_model(model, card, fast, device)     # a snapshot of this epoch's weights
        preds = engine.predict(val_shard, batch_size=max(cfg.batch_size, 64), num_workers=cfg.num_workers,
                               progress=progress, desc="val", dataset=val_dataset)
        preds = distributed.gather_predictions(preds, val_positions, val_samples, ctx)
        _record_skips(skipped, preds.skipped.skipped)
        _require_both_classes(set(preds.labels.tolist()), "validation", skipped, write_summary)
        val = preds.metrics()
        agg, metric = _split_metric(cfg.val_metric)
        score = float(val[agg][metric])
        for a in AGGREGATIONS + ("patch",):
            writer.add_scalar(f"val/ap_{a}", val[a]["ap"], epoch)
            writer.add_scalar(f"val/acc_{a}", val[a]["acc"], epoch)
        writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], epoch)
        if main:
            _log_heatmaps(writer, engine, val_samples, epoch)
        model.train()
        improved = score > progress_state["best_metric"]
        if improved:
            progress_state["best_metric"], progress_state["best_epoch"] = score, epoch
        if improved and main:
            save_weights(weights_path(ckpt_dir, "bestval"), model, epoch=epoch,
                         val_metric=cfg.val_metric, val_score=score)
        lr_now, seconds = optimizer.param_groups[0]["lr"], time.perf_counter() - epoch_start
        train_loss = progress_state["epoch_loss_sum"] / max(progress_state["epoch_loss_steps"], 1)
        progress_state["history"].append({"epoch": epoch, cfg.val_metric: score, "lr": lr_now,
                                          "train_loss": train_loss, "seconds": seconds,
                                          "val_ap": {a: val[a]["ap"] for a in AGGREGATIONS}})
        if main:
            _log_line(epoch_line(epoch, cfg.max_epochs, train_loss, cfg.val_metric, score,
                                 progress_state, lr_now, seconds), progress)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(score)
        elif scheduler is not None:
            scheduler.step()
        if main and epoch % cfg.save_epoch_freq == 0:
            save_weights(weights_path(ckpt_dir, str(epoch)), model, epoch=epoch)
        if main:
            save_weights(weights_path(ckpt_dir, "latest"), model, epoch=epoch)
        stop = cfg.patience > 0 and epoch - progress_state["best_epoch"] >= cfg.patience
        progress_state.update(epoch=epoch + 1, step_in_epoch=0)
        snapshot()
        if stop:
            if progress:
                tqdm.write(f"no improvement for {cfg.patience} epochs: stopping")
            break
        epoch += 1
    writer.close()
    write_summary("finished")
    if main:
        # decision thresholds on the validation split, scored as the validation passes were
        calibration = calibrate(ckpt_dir, Engine.load(ckpt_dir, "bestval", fast, device, ctx.local_world_size),
                                val_samples, batch_size=max(cfg.batch_size, 64), num_workers=cfg.num_workers,
                                progress=progress, force=True)   # an earlier run's thresholds go to 'previous'
        for warning in calibration.report["warnings"]:          # also in calibration.json
            _log_line(f"calibration warning: {warning}", progress)
    return _result(name, ckpt_dir, progress_state, skipped)


def source_groups(samples, folders: list[str]) -> list[int]:
    """For each sample, the index of the folder in ``folders`` it was listed from."""
    roots = [str(Path(f)) + "/" for f in folders]
    return [next(i for i, r in enumerate(roots) if s.path.startswith(r)) for s in samples]


def epoch_line(epoch: int, max_epochs: int | None, train_loss: float, val_metric: str, score: float,
               state: dict[str, Any], lr: float, seconds: float) -> str:
    """One log line per epoch: epoch, mean training loss, validation metric (and the
    best so far), learning rate, seconds the epoch took (training + validation)."""
    of = f"/{max_epochs}" if max_epochs else ""
    return (f"epoch {epoch}{of} loss {train_loss:.4f} val {val_metric} {score:.4f} "
            f"(best {state['best_metric']:.4f} @ {state['best_epoch']}) lr {lr:.2e} {seconds:.1f}s")


def _log_line(line: str, progress: bool) -> None:
    """Above the progress bars when they are shown, else straight to stderr, so that a
    logged run is never silent until the end."""
    if progress:
        tqdm.write(line)
    else:
        print(line, file=sys.stderr, flush=True)


class _NoWriter:
    """Stands in for the TensorBoard writer on ranks other than 0."""

    def __getattr__(self, _name):
        return lambda *args, **kwargs: None


def _record_skips(skipped: SkipLog, errors) -> None:
    """Add ``(path, reason)`` pairs not yet listed (each epoch meets the same bad files)."""
    known = {p for p, _ in skipped.skipped}
    for path, reason in errors:
        if path not in known:
            skipped.skipped.append((path, reason))
            known.add(path)


def _require_both_classes(labels_seen: set, what: str, skipped: SkipLog, write_summary) -> None:
    """Stop with :class:`NoUsableImagesError` (summary written first) when every
    image of a class failed to load: there is nothing left to learn or measure."""
    missing = [LABEL_NAMES[c] for c in (REAL, FAKE) if c not in labels_seen]
    if missing:
        written = write_summary("failed: no usable " + " or ".join(missing) + f" {what} images")
        where = "listed in train_summary.json" if written or not skipped.skipped else \
            "e.g. " + ": ".join(skipped.skipped[0])
        raise NoUsableImagesError(f"no readable {' or '.join(missing)} {what} images "
                                  f"({len(skipped)} files skipped, {where})")


def _split_metric(val_metric: str) -> tuple[str, str]:
    """``after_softmax_ap`` -> (``after_softmax``, ``ap``)."""
    for m in METRIC_NAMES:
        if val_metric.endswith("_" + m):
            return val_metric[: -len(m) - 1], m
    raise ConfigError(f"val_metric: cannot parse {val_metric!r}")


def _result(name, ckpt_dir, state, skipped) -> TrainResult:
    return TrainResult(name, ckpt_dir, state["best_epoch"], state["best_metric"],
                       len(state["history"]), state["history"], skipped.as_list())


def _log_heatmaps(writer, engine: Engine, val_samples, epoch, n: int = 3) -> None:
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
