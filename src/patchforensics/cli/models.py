"""``patchforensics models``."""
from __future__ import annotations

import argparse


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="list every registered model with its receptive field and stride",
                       description="Every registered model name (usable as train --model), whether it scores "
                                   "patches or whole images, and, for patch models, the receptive field, stride "
                                   "and patch grid at --size px inputs.")
    p.add_argument("--size", type=int, default=128, help="input side in px (default 128)")
    p.set_defaults(func=run)


def model_table(size: int) -> str:
    """One line per registered model: name, kind, field (px), stride (px), patches at ``size`` px."""
    from ..core.config import ConfigError
    from ..models import architecture_field, is_patch_model, list_models

    if size < 1:
        raise ConfigError("size: must be > 0")
    rows = [f"{'model':<18} {'kind':<10} {'field':>7} {'stride':>7} {'patches':>9}  (at {size} px)"]
    for name in list_models():
        if not is_patch_model(name):
            rows.append(f"{name:<18} {'full':<10} {'whole':>7} {'-':>7} {'1x1':>9}")
            continue
        try:
            rf = architecture_field(name, size)
        except ValueError:
            rows.append(f"{name:<18} {'patch':<10} {'':>7} {'':>7} {'too small':>9}")
            continue
        rows.append(f"{name:<18} {'patch':<10} {rf.size[0]:>7} {rf.stride[0]:>7} "
                    f"{rf.output_size[0]}x{rf.output_size[1]:<5}".rstrip())
    rows.append("widenet takes any kernel/dilation, e.g. widenet_kw5_d2")
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    print(model_table(args.size))
    return 0
