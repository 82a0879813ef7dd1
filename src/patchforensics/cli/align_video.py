"""``patchforensics align-video``."""
from __future__ import annotations

import argparse

from .align import add_align_options


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="align faces in video frames (FaceForensics++ layout mirrored)",
                       description="Read every N-th frame with OpenCV, align the faces as 'align' does and write "
                                   "OUT/<same folders as SRC>/<split>/<video>_<frame>.png. An FF++ tree gives "
                                   "OUT/original_sequences/... (reals) and OUT/manipulated_sequences/<method>/... "
                                   "(fakes) for 'test' / 'test-suite'. Splits are by video id (A for A.mp4 and "
                                   "A_B.mp4).")
    p.add_argument("src", metavar="VIDEO_OR_DIR")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--every", type=int, default=10, metavar="N", help="keep frames 0, N, 2N, ... (default 10)")
    p.add_argument("--max-frames", type=int, default=None, metavar="M",
                   help="at most M aligned frames per video (the seed used 100 for val/test)")
    p.add_argument("--splits-dir", default=None, metavar="DIR",
                   help="folder with FF++'s train.json, val.json, test.json (lists of id pairs); "
                        "default: draw splits by video id with --split/--seed")
    p.add_argument("--no-reuse-original-landmarks", dest="reuse_original_landmarks", action="store_false",
                   help="detect faces in manipulated frames themselves instead of reusing the landmarks of the "
                        "same frame of the original video")
    add_align_options(p, style="celebahq", size=128)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.align import VideoAlignConfig, align_videos
    from .options import print_skipped, progress_enabled

    cfg = VideoAlignConfig(src=args.src, out=args.out, style=args.style, size=args.size, every=args.every,
                           max_frames=args.max_frames, faces=args.faces, split=args.split, seed=args.seed,
                           splits_dir=args.splits_dir, reuse_original_landmarks=args.reuse_original_landmarks,
                           max_faces=args.max_faces, min_confidence=args.min_confidence, force=args.force)
    result = align_videos(cfg, progress=progress_enabled())
    c = result.counts
    print(f"{result.videos} videos: aligned {result.frames_aligned} of {result.frames_sampled} sampled frames "
          f"({result.success_rate:.1%}); wrote {sum(c.values())} faces to {result.out} "
          f"(train {c['train']}, val {c['val']}, test {c['test']})")
    print_skipped(result.skipped, "videos (listed in summary.json)")
    return 0 if sum(c.values()) else 1
