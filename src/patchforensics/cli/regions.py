"""``patchforensics regions``."""
from __future__ import annotations

import argparse
import json

from ..explain.regions import NORMALISE, SEGMENTERS


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="which face regions hold the most predictive patches",
                       description="Segment each source image of a 'patches' folder into face regions, assign "
                                   "every top patch (and a random baseline patch) to the region of the class "
                                   "holding the largest size-normalised share of its pixels; counts, grids and a "
                                   "histogram.")
    p.add_argument("patches_dir", metavar="PATCHES_DIR",
                   help="results/<name>/<partition>/epoch_<which>/<dataset>/patches")
    p.add_argument("--segmenter", default="mediapipe", choices=SEGMENTERS,
                   help="mediapipe (built in, default) or bisenet (needs --bisenet-weights)")
    p.add_argument("--bisenet-weights", metavar="FILE",
                   help="19-class CelebAMask-HQ BiSeNet face-parsing weights (.safetensors or .pth)")
    p.add_argument("--bisenet-size", type=int, default=512, help="BiSeNet input size in pixels (default 512)")
    p.add_argument("-o", "--output", metavar="DIR", help="output folder (default PATCHES_DIR/regions[_bisenet])")
    p.add_argument("--seed", type=int, default=0, help="seed of the random baseline patches")
    p.add_argument("--grid-max", type=int, default=225, help="patches shown per region grid (default 225)")
    p.add_argument("--normalise", choices=NORMALISE, default="class",
                   help="divide a patch's pixels of each fine class (left eye, right eye, …) by that class's size, "
                        "then take the winner's region (class, the seed's rule, default); or group the classes "
                        "into regions first and divide by the region's size (region)")
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..explain.regions import RegionsConfig, run_regions
    from .options import progress_enabled

    cfg = RegionsConfig(patches_dir=args.patches_dir, segmenter=args.segmenter, bisenet_weights=args.bisenet_weights,
                        bisenet_size=args.bisenet_size, output=args.output, seed=args.seed, grid_max=args.grid_max,
                        device=args.device, force=args.force, normalise=args.normalise)
    out = run_regions(cfg, progress=progress_enabled())
    print(format_regions(json.loads((out / "regions.json").read_text())))
    print(f"regions in {out}")
    return 0


def format_regions(summary: dict) -> str:
    lines = []
    for cls, c in summary["classes"].items():
        lines.append(f"{cls}: {c['assigned']} of {c['patches']} patches assigned ({summary['segmenter']})")
        lines.append("  region          top   share   random  share")
        for region in sorted(summary["regions"], key=lambda r: -c["counts"][r]["top"]):
            k = c["counts"][region]
            lines.append(f"  {region:<14} {k['top']:>4}  {k['top_share']:6.1%}  {k['random']:>5}  "
                         f"{k['random_share']:6.1%}")
        if c["no_face_images"]:
            lines.append(f"  no face found in {c['no_face_images']} images ({c['no_face_patches']} patches):")
            lines.extend(f"    {f}" for f in c["no_face_files"][:20])
    if summary["skipped"]:
        lines.append(f"skipped {len(summary['skipped'])} unreadable files:")
        lines.extend(f"  {s['path']}: {s['reason']}" for s in summary["skipped"][:20])
    return "\n".join(lines)
