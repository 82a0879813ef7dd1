"""``patchforensics invert``."""
from __future__ import annotations

import argparse

from .sample import add_network_options, print_result


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="reconstruct reals through an encoder -> generator pair ('inverted' fakes)",
                       description="Encode each real with ENCODER, decode with GENERATOR and write the "
                                   "reconstruction under OUT with the reals' folder layout, plus latents.npy, "
                                   "manifest.csv and summary.json.")
    p.add_argument("encoder", metavar="ENCODER", help=".onnx or TorchScript file (image -> latent)")
    p.add_argument("generator", metavar="GENERATOR", help=".onnx or TorchScript file (latent -> image)")
    p.add_argument("real", metavar="REAL_DIR")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--input-size", type=int, default=None,
                   help="encoder input side in pixels (read from ONNX files with fixed input sizes)")
    add_network_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.sample import InvertConfig, invert
    from .options import progress_enabled

    cfg = InvertConfig(encoder=args.encoder, generator=args.generator, real=args.real, out=args.out,
                       input_size=args.input_size, size=args.size or None, value_range=args.value_range,
                       layout=args.layout, batch_size=args.batch_size, jpeg_quality=args.jpeg_quality,
                       device=args.device, force=args.force)
    result = invert(cfg, progress=progress_enabled())
    print_result(result)
    return 0 if sum(result.counts.values()) else 1
