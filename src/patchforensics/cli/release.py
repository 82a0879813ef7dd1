"""``patchforensics release``."""
from __future__ import annotations

import argparse


def register(sub, name: str) -> None:
    from ..release.recipe import CANDIDATES

    p = sub.add_parser(name, help="train, choose, calibrate, export and describe the bundled detector (resumable)",
                       description="Train every candidate recipe to the end on the full shared training split, "
                                   "choose on validation (recall at 3%% false alarms, averaged over the "
                                   "generators), calibrate, export to ONNX, measure the cross-source transfer and "
                                   "write MODEL_CARD.md. Run the same command again to resume after a kill.")
    p.add_argument("--data-root", help="faces folder (default: $PATCHFORENSICS_DATA, else ../shared/data/faces128)")
    p.add_argument("--out", default="release", help="output folder (default release)")
    p.add_argument("--candidate", dest="candidates", action="append", choices=[c.name for c in CANDIDATES],
                   help="train and compare only these (repeatable; default all)")
    p.add_argument("--epochs", type=int, help="train every run this long instead (smoke tests, a GPU trial)")
    p.add_argument("--max-per-class", type=int, help="cap the training images of each class (smoke tests)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--bf16", choices=["on", "off"], default="on",
                   help="pinned precision of the runs (default on: native on GPUs and AVX512-BF16/AMX CPUs, "
                        "emulated and slow on AVX2 ones)")
    p.add_argument("--no-cross-source", dest="cross_source", action="store_false",
                   help="skip training the winner's recipe without stylegan2-nvidia")
    p.add_argument("--wild", help="unaligned portraits for the false-alarm rows (default <data root>/../raw/"
                                  "wild-portraits)")
    p.add_argument("--stop-after", choices=["train", "card"], default="card",
                   help="train: stop after the training runs and the choice (a GPU machine); card (default): "
                        "every step")
    p.add_argument("--install", metavar="DIR", help="make DIR the chosen detector and its card "
                                                     "(src/patchforensics/bundled to ship it)")
    p.add_argument("--force", action="store_true", help="replace an existing --install folder (with --card-only: "
                   "the evasion table of --previous)")
    p.add_argument("--previous", metavar="DIR", help="an installed release (e.g. src/patchforensics/bundled) "
                   "chosen against the candidates on validation: when it wins it stays and nothing is installed")
    p.add_argument("--card-only", action="store_true",
                   help="train and choose nothing: add the everyday edits' evasion table to the card of the "
                        "release in --previous (kept in --out/evasion.json) and render its MODEL_CARD.md again "
                        "(--force: replace a table it holds)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..release.pipeline import CANDIDATES, ReleaseConfig, run_release
    from .options import progress_enabled

    cfg = ReleaseConfig(data_root=args.data_root, out=args.out,
                        candidates=args.candidates or [c.name for c in CANDIDATES], epochs=args.epochs,
                        max_per_class=args.max_per_class, device=args.device, bf16=args.bf16,
                        cross_source=args.cross_source, wild=args.wild, install=args.install, force=args.force,
                        stop_after=args.stop_after, previous=args.previous, card_only=args.card_only)
    summary = run_release(cfg, progress=progress_enabled())
    if args.card_only:
        print(f"card: {args.previous}/MODEL_CARD.md (the evasion table in {args.previous}/card_metrics.json)")
    elif summary["winner"] == "previous":
        print(f"chosen: the previous release in {args.previous}, which stays; nothing installed")
    else:
        print(f"chosen: {summary['winner']}; card: {args.out}/MODEL_CARD.md")
    return 0
