"""``patchforensics patches``."""
from __future__ import annotations

import argparse
import json

from .options import add_dataset_options, dataset_kwargs


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="the most predictive patches of a dataset",
                       description="The --topn patches with the highest probability of their true class over the "
                                   "dataset, cut out with the receptive-field boxes; written to "
                                   "results/<name>/<partition>/epoch_<which>/<dataset>/patches/.")
    add_dataset_options(p)
    p.add_argument("--topn", type=int, default=10000, help="patches per class (default 10000)")
    p.add_argument("--unique", action="store_true", help="at most one patch per image (as in the paper)")
    p.add_argument("--grid-max", type=int, default=400, help="patches shown in each grid image (default 400)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..explain.patches import PatchesConfig, run_patches
    from .options import print_skipped, progress_enabled

    cfg = PatchesConfig(**dataset_kwargs(args), topn=args.topn, unique=args.unique, grid_max=args.grid_max)
    out = run_patches(cfg, progress=progress_enabled())
    meta = json.loads((out / "patches.json").read_text())
    for cls, c in meta["counts"].items():
        print(f"{cls}: {c['patches']} patches from {c['images']} images")
    print_skipped(meta["skipped"], "unreadable files")
    print(f"patches in {out}")
    return 0
