"""``patchforensics export-tfrecord``."""
from __future__ import annotations

import argparse

from .prepare import _split as split_fractions


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="export an NVIDIA dataset_tool TFRecord (CelebA-HQ, FFHQ) to PNGs",
                       description="Read one resolution level of a dataset_tool TFRecord without TensorFlow "
                                   "(checksums verified) and write OUT/{train,val,test}/NNNNN.png, manifest.csv "
                                   "and summary.json. Without --size the pixels are kept exactly.")
    p.add_argument("src", metavar="SRC", help="a .tfrecords file, or a folder of *-rNN.tfrecords levels")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--resolution", type=int, default=None, metavar="R",
                   help="level to read from a folder, in pixels (default: the highest)")
    p.add_argument("--size", type=int, default=None,
                   help="resize to SIZE pixels with prepare's pipeline (e.g. 128 for 'tfr-1024-resized128')")
    p.add_argument("--jpeg-quality", type=int, default=None, metavar="Q",
                   help="one JPEG round trip at quality Q before resizing (default: none)")
    p.add_argument("--split", type=split_fractions, default=(0.7, 0.1, 0.2), help="train,val,test fractions")
    p.add_argument("--split-order", choices=["shuffled", "ordered"], default="shuffled",
                   help="shuffled: seeded draw like prepare (default); ordered: contiguous blocks by record "
                        "index (the seed's FFHQ split is --split 0.857143,0.071429,0.071428 --split-order ordered)")
    p.add_argument("--seed", type=int, default=0, help="fixes the shuffled split (default 0)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="export only the first N records")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the data checksums (faster; headers are always checked)")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT (kept until the new one is complete)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.tfrecord import ExportConfig, export_tfrecord
    from .options import print_skipped, progress_enabled

    cfg = ExportConfig(src=args.src, out=args.out, resolution=args.resolution, size=args.size,
                       jpeg_quality=args.jpeg_quality, split=args.split, split_order=args.split_order,
                       seed=args.seed, verify=args.verify, limit=args.limit, force=args.force)
    result = export_tfrecord(cfg, progress=progress_enabled())
    c = result.counts
    print(f"exported {sum(c.values())} images from {result.source} to {result.out} "
          f"(train {c['train']}, val {c['val']}, test {c['test']})")
    print_skipped(result.skipped, "(listed in summary.json)")
    return 0 if sum(c.values()) else 1
