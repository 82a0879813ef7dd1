"""``patchforensics visualize``."""
from __future__ import annotations

import argparse

from ..scoring.metrics import AGGREGATIONS
from .options import add_dataset_options, dataset_kwargs


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="heatmaps of the easiest and hardest images of each class",
                       description="For reals and fakes, the --topn easiest (most confidently right) and hardest "
                                   "(most confidently wrong) images with their per-patch p(fake) map, written to "
                                   "results/<name>/<partition>/epoch_<which>/<dataset>/vis/ with an HTML gallery "
                                   "per group.")
    add_dataset_options(p)
    p.add_argument("--topn", type=int, default=100, help="images per class and group (default 100)")
    p.add_argument("--average-mode", default="after_softmax", choices=AGGREGATIONS,
                   help="aggregation that ranks the images (default after_softmax)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..explain.visualize import VisualizeConfig, run_visualize
    from .options import progress_enabled

    cfg = VisualizeConfig(**dataset_kwargs(args), topn=args.topn, average_mode=args.average_mode)
    vis_dir = run_visualize(cfg, progress=progress_enabled())
    print(f"galleries in {vis_dir} (open {vis_dir / 'index.html'})")
    return 0
