"""``patchforensics import-seed``."""
from __future__ import annotations

import argparse


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="import a seed *_net_D.pth as a checkpoint folder (safely, no pickle code)",
                       description="Convert a checkpoint of the original patch-forensics code "
                                   "(checkpoints/<name>/bestval_net_D.pth) into config.yaml + safetensors. "
                                   "The .pth is read with torch.load(weights_only=True): a file holding "
                                   "anything but tensors and plain values is refused. Model and sizes come "
                                   "from the seed's opt.yml beside the file unless given.")
    p.add_argument("pth", metavar="PTH", help="seed checkpoint, e.g. bestval_net_D.pth")
    p.add_argument("--model", help="the seed's which_model_netD, e.g. xception_block2 (default: from opt.yml)")
    p.add_argument("--load-size", type=int, help="the seed's loadSize (default: opt.yml, else the seed default)")
    p.add_argument("--fine-size", type=int, help="the seed's fineSize (default: opt.yml, else the seed default)")
    p.add_argument("--name", help="checkpoint folder name (default: opt.yml name, else the .pth's folder)")
    p.add_argument("--which", help="bestval | latest | N (default: from the file name)")
    p.add_argument("--checkpoints-dir", default="checkpoints", help="default ./checkpoints")
    p.add_argument("--force", action="store_true", help="replace existing weights of the same name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.seed_import import ImportSeedConfig, import_seed

    cfg = ImportSeedConfig(pth=args.pth, model=args.model, load_size=args.load_size, fine_size=args.fine_size,
                           name=args.name, which=args.which, checkpoints_dir=args.checkpoints_dir,
                           force=args.force)
    result = import_seed(cfg)
    print(f"imported {args.pth} as {result.model} ({result.which}, load {result.load_size} / fine "
          f"{result.fine_size}) into {result.checkpoint_dir}")
    print(f"it has no decision thresholds yet: patchforensics calibrate {result.checkpoint_dir} --real DIR "
          "--fake DIR (validation folders) stores the screening default (fpr3pct) and a strict one (fpr1pct)")
    return 0
