"""``patchforensics visualize``."""
from __future__ import annotations

import argparse

from ..metrics import AGGREGATIONS


def add_dataset_options(p: argparse.ArgumentParser) -> None:
    """The checkpoint/dataset/results options shared with ``test`` and ``patches``."""
    p.add_argument("checkpoint", metavar="CHECKPOINT_DIR")
    p.add_argument("--real", action="append", required=True, metavar="DIR")
    p.add_argument("--fake", action="append", required=True, metavar="DIR")
    p.add_argument("--dataset-name", required=True, help="name of this dataset in the results path")
    p.add_argument("--which-epoch", default="bestval", help="bestval (default) | latest | an epoch number")
    p.add_argument("--partition", default="test", help="subfolder of --real/--fake to use if present (default test)")
    p.add_argument("--corrupt", action="append", default=[], metavar="SPEC",
                   help="test-time corruption, combinable: jpeg:75, blur:1.0, gamma:1.2, flip, resize:0.5")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")


def dataset_kwargs(args: argparse.Namespace) -> dict:
    return dict(checkpoint=args.checkpoint, real=args.real, fake=args.fake, dataset_name=args.dataset_name,
                which_epoch=args.which_epoch, partition=args.partition, corrupt=args.corrupt,
                results_dir=args.results_dir, batch_size=args.batch_size, num_workers=args.num_workers,
                device=args.device, force=args.force)


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="heatmaps of the easiest and hardest images of each class",
                       description="For reals and fakes, the --topn easiest (most confidently right) and hardest "
                                   "(most confidently wrong) images with their per-patch P(real) map, written to "
                                   "results/<name>/<partition>/epoch_<which>/<dataset>/vis/ with an HTML gallery "
                                   "per group.")
    add_dataset_options(p)
    p.add_argument("--topn", type=int, default=100, help="images per class and group (default 100)")
    p.add_argument("--average-mode", default="after_softmax", choices=AGGREGATIONS,
                   help="aggregation that ranks the images (default after_softmax)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..visualize import VisualizeConfig, run_visualize
    from .common import progress_enabled

    cfg = VisualizeConfig(**dataset_kwargs(args), topn=args.topn, average_mode=args.average_mode)
    vis_dir = run_visualize(cfg, progress=progress_enabled())
    print(f"galleries in {vis_dir} (open {vis_dir / 'index.html'})")
    return 0
