"""``patchforensics sample``."""
from __future__ import annotations

import argparse

from .options import print_skipped
from .prepare import _split as split_fractions


def value_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected low,high like 0,1 (write --range=-1,1 for a negative low)") \
            from None
    return lo, hi


def shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected sizes like 512 or 512,1,1") from None


def add_network_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``sample`` and ``invert``."""
    p.add_argument("--range", dest="value_range", type=value_range, default=(-1.0, 1.0), metavar="LO,HI",
                   help="value range of the generator's images (and the encoder's inputs); default "
                        "--range=-1,1, e.g. --range 0,1")
    p.add_argument("--layout", choices=["nchw", "nhwc"], default="nchw", help="image layout (default nchw)")
    p.add_argument("--size", type=int, default=128,
                   help="output side in pixels, resized as 'prepare' does (default 128; 0 keeps the generator's)")
    p.add_argument("--jpeg-quality", type=int, default=None, metavar="Q",
                   help="one JPEG round trip at quality Q before resizing, as the reals had (default: none)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto", help="for TorchScript networks: auto, cpu, cuda (default auto)")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT (kept until the new one is complete)")


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="sample a fake dataset from an ONNX or TorchScript generator",
                       description="Draw standard-normal latents, run the generator (latent -> image) and write "
                                   "OUT/{train,val,test}/NNNNNN.png through prepare's resize pipeline, with "
                                   "latents.npy (row i = sample i), manifest.csv and summary.json.")
    p.add_argument("generator", metavar="GENERATOR", help=".onnx or TorchScript (.pt/.ts) file")
    p.add_argument("out", metavar="OUT")
    p.add_argument("-n", type=int, default=1000, help="number of samples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="fixes the latents and the split (default 0)")
    p.add_argument("--latent-shape", type=shape, default=None, metavar="SHAPE",
                   help="per-sample latent shape, e.g. 512 (read from ONNX files with fixed input sizes)")
    p.add_argument("--latents", default=None, metavar="NPY",
                   help="re-generate from saved latents (an (N, ...) .npy) instead of drawing new ones")
    p.add_argument("--split", type=split_fractions, default=(0.7, 0.1, 0.2), help="train,val,test fractions")
    add_network_options(p)
    p.set_defaults(func=run)


def print_result(result) -> None:
    print(f"wrote {sum(result.counts.values())} images to {result.out} "
          f"({', '.join(f'{k} {v}' for k, v in result.counts.items())})")
    print_skipped(result.skipped, "(listed in summary.json)")


def run(args: argparse.Namespace) -> int:
    from ..data.sample import SampleConfig, sample
    from .options import progress_enabled

    cfg = SampleConfig(generator=args.generator, out=args.out, n=args.n, seed=args.seed, batch_size=args.batch_size,
                       size=args.size or None, value_range=args.value_range, layout=args.layout,
                       latent_shape=args.latent_shape, latents=args.latents, jpeg_quality=args.jpeg_quality,
                       split=args.split, device=args.device, force=args.force)
    result = sample(cfg, progress=progress_enabled())
    print_result(result)
    return 0 if sum(result.counts.values()) else 1
