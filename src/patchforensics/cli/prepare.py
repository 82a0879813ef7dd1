"""``patchforensics prepare``."""
from __future__ import annotations

import argparse


def _split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected three fractions like 0.7,0.1,0.2") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected three fractions like 0.7,0.1,0.2")
    return parts


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="preprocess a folder of images into train/val/test PNGs",
                       description="Decode, optionally JPEG round-trip, centre-crop and Lanczos-resize every "
                                   "image under SRC into OUT/{train,val,test}/*.png, with manifest.csv and "
                                   "summary.json. Put reals and fakes through the same options.")
    p.add_argument("src", metavar="SRC")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--size", type=int, default=128, help="output size in pixels (default 128)")
    p.add_argument("--jpeg-quality", type=int, default=None, metavar="Q",
                   help="one JPEG round trip at quality Q before resizing (default: none)")
    p.add_argument("--jpeg-size", type=int, default=None, metavar="PX",
                   help="do that JPEG round trip after a Lanczos resize to PX (the shared data's recipe: "
                        "--jpeg-quality 75 --jpeg-size 256; default: at the source resolution)")
    p.add_argument("--split", type=_split, default=(0.7, 0.1, 0.2), help="train,val,test fractions")
    p.add_argument("--crop", choices=["center", "none"], default="center",
                   help="center: square centre crop (default); none: keep the aspect ratio")
    p.add_argument("--seed", type=int, default=0, help="fixes the split (default 0)")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT (kept until the new one is complete)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.prepare import PrepareConfig, prepare
    from .options import print_skipped, progress_enabled

    cfg = PrepareConfig(src=args.src, out=args.out, size=args.size, jpeg_quality=args.jpeg_quality,
                        jpeg_size=args.jpeg_size, split=args.split, crop=args.crop, seed=args.seed, force=args.force)
    result = prepare(cfg, progress=progress_enabled())
    print(f"wrote {sum(result.counts.values())} images to {result.out} "
          f"(train {result.counts['train']}, val {result.counts['val']}, test {result.counts['test']})")
    print_skipped(result.skipped, "files (listed in summary.json)")
    return 0 if sum(result.counts.values()) else 1
