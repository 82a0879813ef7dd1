"""``patchforensics demo``."""
from __future__ import annotations

import argparse


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="the main job: train, evaluate and explain on the faces data",
                       description="Train xception_block2 on FFHQ vs StyleGAN2 at 128 px on the CPU, evaluate it "
                                   "on the faces128 suite (+ GMM fakes), print the table and explain the model. Data: --data, else "
                                   "$PATCHFORENSICS_DATA, else ../shared/data/faces128.")
    p.add_argument("--data", default=None, help="faces folder with ffhq/, celebahq/, tpdne-stylegan2/, stylegan1/, "
                                                         "generated-photos/")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default 24)")
    p.add_argument("--num-workers", type=int, default=0, help="data loader processes")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import DemoConfig, run_demo
    from .options import progress_enabled

    epochs = DemoConfig.epochs if args.epochs is None else args.epochs
    if epochs < 1:
        raise ValueError("--epochs must be at least 1")
    run_demo(DemoConfig(data=args.data, out=args.out, epochs=epochs, force=args.force,
                        num_workers=args.num_workers), progress=progress_enabled())
    return 0
