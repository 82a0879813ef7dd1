"""``patchforensics test-suite``."""
from __future__ import annotations

import argparse

from .options import add_backend_option


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="evaluate a checkpoint on a suite of datasets and corruptions",
                       description="Runs 'test' for every (name, real, fake) dataset of SUITE (a YAML file or a "
                                   "bundled suite name such as faces128) under each listed corruption, and "
                                   "writes one table (CSV and Markdown).")
    p.add_argument("checkpoint", metavar="CHECKPOINT_DIR")
    p.add_argument("suite", metavar="SUITE", help="suite YAML, or a bundled suite name (faces128)")
    p.add_argument("--data-root", default=None, help="folder the suite's relative paths start from")
    p.add_argument("--corrupt", action="append", default=None, metavar="SPEC",
                   help="add a corruption setting (e.g. jpeg:75 or blur:1,jpeg:90); clean is always included")
    p.add_argument("--which-epoch", default="bestval")
    p.add_argument("--partition", default="test")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="auto")
    add_backend_option(p)
    p.add_argument("--force", action="store_true", help="recompute results that are up to date")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.suite import load_suite, run_suite
    from ..data.transforms import parse_corruptions
    from .options import progress_enabled

    suite = load_suite(args.suite, args.data_root)
    for spec in args.corrupt or []:
        parse_corruptions(spec)  # fail before any work
        suite.corruptions.append(spec.split(","))
    result = run_suite(args.checkpoint, suite, args.which_epoch, args.partition, args.results_dir,
                       args.batch_size, args.num_workers, args.device, args.force, progress_enabled(),
                       backend=getattr(args, "backend", "auto"))
    print(result.markdown())
    print(f"table: {result.csv_path} and {result.markdown_path}")
    return 0
