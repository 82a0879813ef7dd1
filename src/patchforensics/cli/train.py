"""``patchforensics train``."""
from __future__ import annotations

import argparse

from .options import add_bool, add_fast_path_options, given

S = argparse.SUPPRESS


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="train a patch classifier on real vs fake folders",
                       description="Train a receptive-field-limited patch classifier. Options not given "
                                   "come from --config (YAML), else from the defaults shown.",
                       argument_default=S)
    p.add_argument("--config", help="YAML file of options (keys as in checkpoints/<name>/config.yaml); "
                                    "command-line options override it")
    p.add_argument("--real", action="append", metavar="DIR", help="folder of real images (repeatable); "
                   "with train/ and val/ subfolders they are used, else 10%% is held out for validation")
    p.add_argument("--fake", action="append", metavar="DIR", help="folder of fake images (repeatable)")
    p.add_argument("--model", help="model name, e.g. xception_block2, resnet18_layer1, widenet_kw7_d1 "
                                   "(default xception_block2); see 'patchforensics models'")
    p.add_argument("--name", help="experiment name template (default {model}_size{load_size})")
    p.add_argument("--suffix", help="appended as _SUFFIX, may use config keys: seed{seed}_{model}_p{patience}")
    p.add_argument("--prefix", help="prepended as PREFIX-")
    p.add_argument("--init", help="weight init: kaiming (default) | xavier (the seed's, with --init-gain "
                                  "0.02) | normal | orthogonal")
    p.add_argument("--init-from", dest="init_from", metavar="CKPT",
                   help="start from this checkpoint's weights with this run's options (the seed's --load_model "
                        "--overwrite_config); not with --init")
    p.add_argument("--which-epoch", dest="init_from_epoch", metavar="N",
                   help="with --init-from: its weights bestval (default) | latest | N")
    p.add_argument("--init-gain", dest="init_gain", type=float,
                   help="scale of the xavier/normal/orthogonal inits (default 0.02, the seed's)")
    p.add_argument("--seed", type=int, help="fixes weights, sampling and augmentation (default 0)")
    p.add_argument("--load-size", dest="load_size", type=int, help="resize shorter side to this (default 128)")
    p.add_argument("--fine-size", dest="fine_size", type=int,
                   help="then crop to this for training (default: random 64-px crops for patch models, "
                        "the whole image for full-image models)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="default 32")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 0.001)")
    p.add_argument("--beta1", type=float, help="Adam beta1 (default 0.9)")
    p.add_argument("--weight-decay", dest="weight_decay", type=float,
                   help="decoupled weight decay (AdamW); 0 = the seed's plain Adam (default 0)")
    p.add_argument("--lr-policy", dest="lr_policy", choices=["constant", "plateau", "cosine"],
                   help="constant (the seed's) | plateau (x0.1 when validation stalls) | cosine (to 0 at "
                        "--max-epochs); default cosine")
    p.add_argument("--plateau-patience", dest="plateau_patience", type=int,
                   help="epochs without improvement before the plateau policy lowers lr x0.1 (default 5)")
    p.add_argument("--patience", type=int, help="stop after this many epochs without a better "
                                                "validation metric (default 0 = never; the seed used 10)")
    p.add_argument("--max-epochs", dest="max_epochs", type=int, help="epochs to train (default 30)")
    p.add_argument("--save-epoch-freq", dest="save_epoch_freq", type=int, help="keep epoch_N weights every N epochs")
    p.add_argument("--save-latest-freq", dest="save_latest_freq", type=int,
                   help="steps between resumable snapshots (default 50)")
    p.add_argument("--val-metric", dest="val_metric", help="default after_softmax_ap")
    add_bool(p, "flip", "random horizontal flip (default on)")
    add_bool(p, "random-crop", "random crop of fine_size instead of centre crop (default: on for patch "
                              "models when fine_size < load_size)")
    add_bool(p, "random-resized-crop", "random resized crop instead of resize+crop")
    add_bool(p, "color-jitter", "random brightness/contrast/gamma")
    p.add_argument("--cnn-aug-prob", dest="cnn_aug_prob", type=float,
                   help="CNNDetection blur+JPEG augmentation, each with this probability (e.g. 0.1, 0.5)")
    p.add_argument("--grey-prob", dest="grey_prob", type=float,
                   help="turn a training image greyscale with this probability (e.g. 0.2): a fake "
                        "converted to greyscale stays fake")
    add_bool(p, "balance", "equal numbers of real and fake images per epoch (default on)")
    add_bool(p, "balance-sources", "every --real/--fake folder of a class equally often per epoch (default off: "
                                   "each in proportion to its size)")
    p.add_argument("--max-per-class", dest="max_per_class", type=int, help="use at most N training images per class")
    p.add_argument("--checkpoints-dir", dest="checkpoints_dir", help="default ./checkpoints")
    p.add_argument("--runs-dir", dest="runs_dir", help="TensorBoard logs (default ./runs)")
    p.add_argument("--num-workers", dest="num_workers", type=int, help="data loader processes (default 0)")
    p.add_argument("--device", help="auto (default) | cpu | cuda | cuda:N")
    add_fast_path_options(p, training=True)
    add_bool(p, "allow-leak", "only warn (instead of refusing) when a training image is byte-identical to a "
                              "validation or test image")
    p.add_argument("--resume", action="store_true", default=False, help="continue the run from its latest snapshot")
    p.add_argument("--force", action="store_true", default=False, help="start over, replacing an existing run")
    p.set_defaults(func=run, resume_hint="rerun the same command with --resume to continue from the last snapshot")


def load_train_config(args: argparse.Namespace):
    """Merge ``--config`` YAML and the given options into a validated TrainConfig."""
    from ..core.config import ConfigError, from_dict, load_yaml_file
    from ..models.card import training_options
    from ..training.train import TrainConfig

    values: dict = {}
    if getattr(args, "config", None):
        values = training_options(load_yaml_file(args.config))   # a checkpoint's config.yaml works too
    options = given(args, "config", "resume", "force")
    if "init_from" in options and "init" in options:
        raise ConfigError("init: --init-from starts from trained weights, so --init has nothing to do; "
                          "pass one of them")
    if "init_from_epoch" in options and not (options.get("init_from") or values.get("init_from")):
        raise ConfigError("which_epoch: --which-epoch chooses the weights of --init-from; give --init-from CKPT")
    values.update(options)
    return from_dict(TrainConfig, values)


def run(args: argparse.Namespace) -> int:
    from ..core.ranks import is_main_process
    from ..training.train import train
    from .options import print_skipped, progress_enabled

    cfg = load_train_config(args)
    result = train(cfg, resume=args.resume, force=args.force, progress=progress_enabled())
    if not is_main_process():   # under torchrun, rank 0 reports for all
        return 0
    print(f"trained {result.name}: best {cfg.val_metric}={result.best_metric:.4f} at epoch "
          f"{result.best_epoch} ({result.epochs_run} epochs); checkpoints in {result.checkpoint_dir}")
    print_skipped(result.skipped, "unreadable files (listed in train_summary.json)")
    return 0
