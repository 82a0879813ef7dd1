"""``patchforensics calibrate``."""
from __future__ import annotations

import argparse
import sys

from .options import add_backend_option


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="choose decision thresholds on validation images",
                       description="Choose the equal-error threshold and, for each --target-fpr, the threshold that "
                                   "calls at most that fraction of the validation real images fake (default "
                                   "3%% = fpr3pct, the default decision, and 1%% = fpr1pct); store them in "
                                   "CHECKPOINT_DIR/config.yaml (details in calibration.json). 'train' does "
                                   "this by itself at the end of a run.")
    p.add_argument("checkpoint", metavar="CHECKPOINT_DIR")
    p.add_argument("--which-epoch", default="bestval")
    p.add_argument("--target-fpr", type=float, action="append", default=None,
                   help="largest fraction of real images called fake; repeatable (default 0.03 and 0.01)")
    p.add_argument("--real", action="append", default=[], metavar="DIR",
                   help="calibrate on these folders instead of the checkpoint's validation split")
    p.add_argument("--fake", action="append", default=[], metavar="DIR")
    p.add_argument("--partition", default="val", help="subfolder of --real/--fake to use if present (default val)")
    p.add_argument("--allow-test-split", action="store_true",
                   help="calibrate on --partition test all the same (refused by default: thresholds chosen on "
                        "the test images make the test numbers optimistic)")
    p.add_argument("--force", action="store_true",
                   help="replace stored thresholds (the old ones are kept in calibration.json under 'previous'; "
                        "thresholds of other names stay)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="auto")
    add_backend_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.calibrate import DEFAULT_TARGET_FPRS, CalibrateConfig, run_calibration
    from .options import progress_enabled

    cfg = CalibrateConfig(checkpoint=args.checkpoint, which_epoch=args.which_epoch, real=args.real,
                          fake=args.fake, partition=args.partition,
                          target_fprs=tuple(args.target_fpr or DEFAULT_TARGET_FPRS),
                          batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
                          backend=getattr(args, "backend", "auto"), force=args.force,
                          allow_test_split=args.allow_test_split)
    calibration = run_calibration(cfg, progress=progress_enabled())
    print(calibration.describe())
    print(f"stored in {args.checkpoint}/config.yaml")
    if calibration.report.get("previous"):
        print(f"the replaced thresholds are kept in {args.checkpoint}/calibration.json under 'previous'")
    for warning in calibration.report["warnings"]:
        print(f"patchforensics calibrate: warning: {warning}", file=sys.stderr)
    return 0
