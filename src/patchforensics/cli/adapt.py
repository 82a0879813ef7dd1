"""``patchforensics adapt`` and ``patchforensics adapt-benchmark``."""
from __future__ import annotations

import argparse
import json

from ..adapt.config import DEFAULT_METHOD, AdaptConfig
from ..adapt.methods import METHODS, VIEWS, Recipe
from ..data.align import STYLES
from ..scoring.runtime import BF16_CHOICES
from ..screening.detector import DEFAULT_FACE_MODE, FACE_MODES, face_modes_text
from .options import add_bool, progress_enabled


def register(sub, name: str) -> None:
    if name == "adapt-benchmark":
        return register_benchmark(sub, name)
    p = sub.add_parser(name, help="teach a detector a new generator from a few of its samples",
                       description="Adapt a detector (default: the bundled one) to a generator it misses, from "
                                   "tens to hundreds of its samples, on a CPU. Splits the samples only to "
                                   "estimate what it reports (k-fold); the model it writes trains on all of them. "
                                   "Writes a checkpoint folder (weights, card, thresholds re-chosen on validation "
                                   "reals, ONNX file, MODEL_CARD.md with recall on held-back samples and what "
                                   "it forgot on the base's test sets) that detect, serve, test and export take.")
    p.add_argument("--fake", action="append", required=True, metavar="DIR",
                   help="the new generator's samples: folders (searched recursively) or files; repeatable")
    p.add_argument("--real", action="append", default=[], metavar="DIR",
                   help="your own real photos: they choose the thresholds (default: the base's validation reals)")
    p.add_argument("--model", help="the checkpoint folder to adapt (default: the bundled detector)")
    p.add_argument("--which-epoch", help="its weights: bestval (default) | latest | N")
    p.add_argument("--name", default="", metavar="GENERATOR",
                   help="the new generator's name for the card and the scope line (default: the first --fake "
                        "folder's name)")
    add_bool(p, "diffusion", "the new generator is a diffusion model (the card's scope note says so)")
    p.add_argument("--out", required=True, metavar="DIR", help="the adapted checkpoint folder to write")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS,
                   help=f"what is trained: head = the 1x1 classifier only, block = the last block and the head, "
                        f"full = everything (default {DEFAULT_METHOD}, chosen by measurement: docs/adapt.md)")
    add_bool(p, "replay", "replay the base's training data (the folders its card records; default on)")
    p.add_argument("--replay-root", metavar="DIR",
                   help="the folder holding the base's training folders, when they are not where the card says")
    p.add_argument("--replay-per-class", type=int, default=300, help="replayed images per class (default 300)")
    p.add_argument("--steps", type=int, default=Recipe.steps, help=f"optimisation steps (default {Recipe.steps})")
    p.add_argument("--lr", type=float, default=Recipe.lr, help=f"Adam step size (default {Recipe.lr:g})")
    p.add_argument("--l2sp", type=float, default=Recipe.l2sp,
                   help=f"pull toward the starting weights, weight of sum((w - w0)^2) (default {Recipe.l2sp:g})")
    p.add_argument("--views", default=",".join(Recipe.views),
                   help=f"cached augmentations, comma-separated from {', '.join(VIEWS)} (default "
                        f"{','.join(Recipe.views)})")
    p.add_argument("--folds", type=int, default=5, help="folds of the held-back estimate (default 5)")
    add_bool(p, "estimate", "estimate recall on held-back samples (k-fold; default on)")
    p.add_argument("--faces", default=DEFAULT_FACE_MODE, choices=FACE_MODES,
                   help=face_modes_text() + " (a found photo gives its largest face)")
    p.add_argument("--align-style", default="ffhq", choices=list(STYLES))
    p.add_argument("--bf16", default="auto", choices=BF16_CHOICES,
                   help="bf16 autocast for the training steps: auto (default) = only where the CPU has it natively")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..adapt.pipeline import adapt

    cfg = AdaptConfig(fake=args.fake, real=args.real, out=args.out, model=args.model, which_epoch=args.which_epoch,
                      name=args.name, diffusion=getattr(args, "diffusion", False), method=args.method, replay=getattr(args, "replay", True),
                      replay_root=args.replay_root, replay_per_class=args.replay_per_class, steps=args.steps,
                      lr=args.lr, l2sp=args.l2sp, views=tuple(v for v in args.views.split(",") if v),
                      folds=args.folds, estimate=getattr(args, "estimate", True), faces=args.faces, align_style=args.align_style,
                      bf16=args.bf16, seed=args.seed, force=args.force)
    numbers = adapt(cfg, progress=progress_enabled())
    samples = numbers["samples"]
    print(f"adapted {numbers['base']['name']} to {numbers['generator']} from {samples['used']} faces "
          f"({len(samples['no_face'])} without a face, {len(samples['unreadable'])} unreadable) in "
          f"{numbers['seconds']:.0f} s -> {args.out}")
    for path in samples["no_face"]:
        print(f"  no face: {path}")
    for item in samples["unreadable"]:
        print(f"  unreadable: {item['path']} ({item['reason']})")
    est = numbers["estimate"]
    if est:
        r = est["fpr3pct"]
        print(f"recall on held-back samples at the default threshold: {r['rate']:.1%} ({r['k']}/{r['n']}, 95% "
              f"{r['ci'][0]:.1%}-{r['ci'][1]:.1%}); card: {args.out}/MODEL_CARD.md")
    return 0


def register_benchmark(sub, name: str) -> None:
    p = sub.add_parser(name, help="measure adapt: leave one generator out on the shared data (docs/adapt.md)",
                       description="Train a base without each generator, adapt it from N of its train-split samples, "
                                   "score every val and test split; rows go to RESULTS/cells.csv by key (a rerun "
                                   "skips what is there), then docs/adapt.md's tables and figure are redrawn.")
    p.add_argument("--data", help="the faces128 folder (default ../shared/data/faces128)")
    p.add_argument("--out", default="experiments/adapt", help="bases and adapted models (default experiments/adapt)")
    p.add_argument("--results", default="docs/adapt", help="the committed table and figure (default docs/adapt)")
    p.add_argument("--doc", default="docs/adapt.md", help="the page whose generated block is filled")
    p.add_argument("--folds", default="stylegan2,stylegan1,generated-photos")
    p.add_argument("--methods", default=DEFAULT_METHOD)
    p.add_argument("--sizes", default="10,25,50,100,200")
    p.add_argument("--draws", type=int, default=2)
    p.add_argument("--base-epochs", type=int, default=15)
    p.add_argument("--recipes", default="{}", help='per-method AdaptConfig overrides as JSON, e.g. \'{"block": {"steps": 150}}\'')
    p.add_argument("--stop-after", type=float, metavar="MINUTES", help="start no cell after this many minutes")
    add_bool(p, "run", "run the missing cells (off: only redraw the tables and figure; default on)")
    p.set_defaults(func=run_benchmark)


def run_benchmark(args: argparse.Namespace) -> int:
    from ..adapt.benchmark import FOLDS, BenchConfig
    from ..adapt.benchmark import run_benchmark as run_cells
    from ..adapt.benchmark_report import write_report
    from ..core.config import ConfigError
    from ..data.dataset import default_data_root

    folds = tuple(f for f in args.folds.split(",") if f)
    unknown = sorted(set(folds) - set(FOLDS))
    methods = tuple(m for m in args.methods.split(",") if m)
    if unknown or not set(methods) <= set(METHODS):
        raise ConfigError(f"folds are {', '.join(FOLDS)} and methods {', '.join(METHODS)}")
    cfg = BenchConfig(data=str(default_data_root(args.data)), out=args.out, results=args.results, folds=folds,
                      methods=methods, sizes=tuple(int(n) for n in args.sizes.split(",") if n), draws=args.draws,
                      base_epochs=args.base_epochs, recipes=json.loads(args.recipes), stop_after_minutes=args.stop_after)
    if getattr(args, "run", True):
        print(json.dumps(run_cells(cfg, progress=progress_enabled())))
    write_report(args.results, args.doc)
    print(f"tables and figure: {args.results}/cells.csv, {args.results}/curves.png, {args.doc}")
    return 0
