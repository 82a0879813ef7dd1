"""``TrainConfig``: the options of ``patchforensics train``, their defaults and their validation,
with the checks on its inputs (folders exist, no training image leaks into the held-out ones)
that run before any model is built."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core import ranks
from ..core.config import ConfigError, require, to_dict
from ..data.dataset import collect_samples, duplicate_pairs
from ..data.transforms import TransformConfig
from ..models import INIT_TYPES, SEED_INIT_GAIN, check_model_name, is_patch_model
from ..models.card import ModelCard
from ..models.checkpoint import weights_path
from ..scoring.runtime import FastPath, effective_precision, inference_backend, runtime_info
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
    init_from: str | None = None                      # [load_model + overwrite_config]: start from these weights
    init_from_epoch: str = "bestval"                  # [which_epoch] of init_from: bestval | latest | N
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
    grey_prob: float = 0.0                            # greyscale a training image with this probability
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

    def _check_init_from(self) -> None:
        folder = Path(self.init_from)
        require((folder / "config.yaml").is_file(), "init_from",
                f"{folder} is not a checkpoint folder (config.yaml + *.safetensors); pass one that "
                "'patchforensics train' wrote")
        arch = ModelCard.read(folder).architecture
        require(arch == self.model, "init_from",
                f"{folder} holds a {arch} model; pass --model {arch} (weights only load into their own architecture)")
        require(weights_path(folder, self.init_from_epoch).is_file() or self.init_from_epoch == "bestval",
                "init_from_epoch", f"{weights_path(folder, self.init_from_epoch)} not found")

    def validate(self) -> None:
        try:
            check_model_name(self.model)
        except ValueError as e:
            raise ConfigError(f"model: {e}") from None
        require(self.init in INIT_TYPES, "init", f"must be one of {', '.join(INIT_TYPES)}")
        require(self.init_gain > 0 and math.isfinite(self.init_gain), "init_gain", "must be > 0")
        if self.init_from is not None:
            self._check_init_from()
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
        require(0 <= self.grey_prob <= 1, "grey_prob", "is a probability in [0, 1]")
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
                               is_patch_model(self.model), self.grey_prob)


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


def split_metric(val_metric: str) -> tuple[str, str]:
    """``after_softmax_ap`` -> (``after_softmax``, ``ap``)."""
    for m in METRIC_NAMES:
        if val_metric.endswith("_" + m):
            return val_metric[: -len(m) - 1], m
    raise ConfigError(f"val_metric: cannot parse {val_metric!r}")
