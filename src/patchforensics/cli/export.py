"""``patchforensics export``."""
from __future__ import annotations

import argparse


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="export a checkpoint to ONNX (dynamic batch)",
                       description="Write CHECKPOINT_DIR's weights as an ONNX model with its config and "
                                   "thresholds as metadata; 'detect --model FILE.onnx' runs it with ONNX Runtime.")
    p.add_argument("checkpoint", metavar="CHECKPOINT_DIR")
    p.add_argument("output", metavar="MODEL.onnx")
    p.add_argument("--which-epoch", default="bestval", help="bestval (default) | latest | N | weights (bundled)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..scoring.onnx_backend import export_onnx

    out = export_onnx(args.checkpoint, args.output, which=args.which_epoch, force=args.force, opset=args.opset)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0
