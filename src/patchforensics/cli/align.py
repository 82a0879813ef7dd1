"""``patchforensics align``."""
from __future__ import annotations

import argparse

from ..data.align import STYLES
from .prepare import _split as split_fractions


def add_align_options(p: argparse.ArgumentParser, style: str, size: int) -> None:
    """Options shared by ``align`` and ``align-video``."""
    p.add_argument("--style", choices=list(STYLES), default=style,
                   help=f"crop recipe (default {style}): ffhq uses the eye-contour centres, celebahq the iris "
                        "centres and CelebA-HQ's half-pixel convention")
    p.add_argument("--size", type=int, default=size, help=f"output side in pixels (default {size})")
    p.add_argument("--faces", choices=["largest", "all"], default="largest",
                   help="largest: one face per picture (default); all: every face, suffixed _face<rank>")
    p.add_argument("--split", type=split_fractions, default=(0.7, 0.1, 0.2), help="train,val,test fractions")
    p.add_argument("--seed", type=int, default=0, help="fixes the split (default 0)")
    p.add_argument("--max-faces", type=int, default=10, help="most faces looked for per picture (default 10)")
    p.add_argument("--min-confidence", type=float, default=0.5, help="face detector threshold (default 0.5)")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT (kept until the new one is complete)")


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="detect and align faces in photos (FFHQ / CelebA-HQ crops)",
                       description="Find faces with mediapipe's face mesh, cut the FFHQ- or CelebA-HQ-style "
                                   "oriented square from the eyes and mouth (reflective padding, blurred borders) "
                                   "and write OUT/{train,val,test}/*.png, report.json (faces, landmarks, "
                                   "transform per picture) and summary.json (success rate, skipped pictures).")
    p.add_argument("src", metavar="SRC", help="a picture or a folder of pictures")
    p.add_argument("out", metavar="OUT")
    add_align_options(p, style="ffhq", size=256)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.align import AlignConfig, align_images
    from .options import print_skipped, progress_enabled

    cfg = AlignConfig(src=args.src, out=args.out, style=args.style, size=args.size, faces=args.faces,
                      split=args.split, seed=args.seed, max_faces=args.max_faces,
                      min_confidence=args.min_confidence, force=args.force)
    result = align_images(cfg, progress=progress_enabled())
    c = result.counts
    print(f"aligned {result.images_aligned} of {result.images} pictures ({result.success_rate:.1%}); "
          f"wrote {sum(c.values())} faces to {result.out} (train {c['train']}, val {c['val']}, test {c['test']})")
    print_skipped(result.skipped, "(listed in summary.json)")
    return 0 if sum(c.values()) else 1
