"""``patchforensics detect``."""
from __future__ import annotations

import argparse
import sys

from ..core.imageio import FORMATS_TEXT, SCREEN_MAX_PIXELS
from ..data.align import STYLES
from ..screening.decode import MAX_PIXELS_HELP
from ..screening.detector import DEFAULT_ALIGN_STYLE, DEFAULT_FACE_MODE, DEFAULT_THRESHOLD, FACE_MODES, face_modes_text
from ..screening.faces import PICK_MARGIN
from ..screening.results import FORMATS
from .options import add_backend_option, add_slurm_options


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="score every face in images: p(fake), decision, most suspicious patch",
                       description="Score images (files, folders, glob patterns) with the bundled detector or "
                                   "--model. Every face is found and aligned as the training faces were, then "
                                   "scored; an image exactly the model's input square is taken as one aligned "
                                   "face (--faces). An image with no face gets no verdict. Boxes are in "
                                   "original-image pixels.")
    p.add_argument("paths", nargs="*", metavar="PATH", help=f"image files ({FORMATS_TEXT}), folders (searched "
                                                            "recursively) or glob patterns (quote them, e.g. "
                                                            "'photos/**/*.jpg')")
    p.add_argument("--model", help="checkpoint folder or .onnx file (default: the bundled detector)")
    p.add_argument("--which-epoch", help="weights in the checkpoint folder: bestval (default) | latest | N")
    add_backend_option(p)
    p.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                   help="stored threshold name or a p(fake) value such as 0.5: default = the model's screening "
                        "threshold (fpr3pct: at most 3%% of validation reals called fake; eer for models "
                        "calibrated before it existed); fpr1pct = strict (at most 1%%); eer = equal error")
    p.add_argument("--faces", default=DEFAULT_FACE_MODE, choices=FACE_MODES, help=face_modes_text())
    p.add_argument("--align-style", default=DEFAULT_ALIGN_STYLE, choices=STYLES,
                   help=f"how found faces are aligned (default {DEFAULT_ALIGN_STYLE}, as the shared training faces)")
    p.add_argument("--heatmaps", metavar="OUT", help="write one heatmap PNG per image with a face into this folder")
    p.add_argument("--report", metavar="OUT.html",
                   help="write one offline HTML page: every face with its heatmap, sorted by p(fake), the verdicts, "
                        "the files with no face or unreadable, the model's scope and the threshold's false-alarm rate")
    p.add_argument("--format", default=FORMATS[0], choices=FORMATS, help=f"default {FORMATS[0]}")
    p.add_argument("--top-k", type=int, default=3, help="most suspicious patches per face, at most (default 3; "
                                                         f"fewer when fewer are within {PICK_MARGIN:g} of the best)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-pixels", type=int, default=SCREEN_MAX_PIXELS, metavar="N", help=MAX_PIXELS_HELP)
    p.add_argument("--device", default="auto", help="auto (default: a GPU if there is one), cpu, cuda:0 ...; "
                                                    "under --executor slurm every task's")
    p.add_argument("--out", metavar="DIR", help="also write the JSON and CSV forms into DIR (detect.json, "
                                                "detect.csv), and with --shard the shard's record for --merge")
    p.add_argument("--shard", metavar="K/N", help="score only shard K of N (1 <= K <= N) of the expanded inputs: the "
                                                  "file at 0-based position i (in the order detect scores them) "
                                                  "goes to shard i mod N + 1; needs --out")
    p.add_argument("--merge", nargs="+", metavar="SHARD_DIR",
                   help="join the --out folders of every shard of one run into --out as one run over every input "
                        "gives (no PATH; the model and options are the shards'); --heatmaps copies their heatmap "
                        "files, --report draws the page from the merged rows")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty --heatmaps or --out folder, replace --report")
    p.add_argument("--shards", type=int, metavar="N",
                   help="with --executor slurm: split the run over N array tasks (--shard K/N each)")
    add_slurm_options(p, "--shards N tasks, task K running --shard K/N into OUT/shards/K-of-N; --wait merges "
                         "them into --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.config import ConfigError
    from ..screening.results import format_result
    from .options import refuse_unused_slurm_options

    if args.executor == "slurm":
        from ..screening.slurm import ShardsIncomplete

        try:
            result = _submit(args)
        except ShardsIncomplete as e:
            print(f"patchforensics detect: {e}", file=sys.stderr)
            return 1
        if result is None:
            return 0
    else:
        refuse_unused_slurm_options(args)
        if args.shards is not None:
            raise ConfigError("shards: --shards N submits N Slurm array tasks (--executor slurm); one process "
                              "scores shard K of N with --shard K/N")
        result = _merge(args) if args.merge else _detect(args)
    print(format_result(result, args.format))
    if not result.faces and not args.shard:           # a shard is done once its record is: the merge tells
        print("patchforensics detect: " + ("no face found in any image, so no verdict (--faces aligned scores "
                                           "images as they are)" if result.no_face else "no image could be read"),
              file=sys.stderr)
        return 1
    return 0


def _merge(args: argparse.Namespace):
    from ..core.config import ConfigError
    from ..screening.shards import MergeConfig, merge_shards

    if args.paths:
        raise ConfigError("merge: give the shards' --out folders after --merge and no PATH "
                          "(the inputs are the shards')")
    if not args.out:
        raise ConfigError("out: --merge needs --out DIR for the merged detect.json and detect.csv")
    return merge_shards(MergeConfig(args.merge, args.out, args.heatmaps, args.report, args.force))


def _config(args: argparse.Namespace):
    from ..screening.detect import DetectConfig

    return DetectConfig(paths=args.paths, model=args.model, which_epoch=args.which_epoch,
                        backend=getattr(args, "backend", "auto"),
                        threshold=args.threshold, heatmaps=args.heatmaps, report=args.report, faces=args.faces,
                        align_style=args.align_style, top_k=args.top_k,
                        batch_size=args.batch_size, max_pixels=args.max_pixels, device=args.device,
                        force=args.force, out=args.out, shard=args.shard)


def _detect(args: argparse.Namespace):
    from ..screening.detect import detect
    from .options import progress_enabled

    def on_skip(path: str, reason: str) -> None:
        print(f"skipped {path}: {reason}", file=sys.stderr)

    return detect(_config(args), progress=progress_enabled(), on_skip=on_skip)


def _submit(args: argparse.Namespace):
    """``--executor slurm --shards N``: submit the shards, print the job id (to stderr with
    ``--wait``, whose stdout is the merged result); with ``--wait`` the merged result, else None."""
    from ..core.config import ConfigError
    from ..screening.slurm import merge_command, submit_shards, wait_and_merge
    from .options import progress_enabled, slurm_config

    if args.merge or args.shards is None:
        raise ConfigError("shards: --executor slurm needs --shards N (and no --merge: it merges with --wait)")
    cfg = _config(args)
    submission = submit_shards(cfg, args.shards, slurm_config(args))
    print(f"submitted job {submission.job}: {args.shards} array task{'s' * (args.shards > 1)} (shards 1/"
          f"{args.shards} to {args.shards}/{args.shards}); logs: {submission.logs}/{submission.job}_<task>.out",
          file=sys.stderr if args.wait else sys.stdout, flush=True)
    args.resume_hint = (f"job {submission.job} keeps running (scancel {submission.job} stops it); when it is "
                        f"done: {merge_command(cfg, args.shards)}")
    if not args.wait:
        print(f"when it is done: {merge_command(cfg, args.shards)}")
        return None
    return wait_and_merge(cfg, submission, progress=progress_enabled())
