"""``patchforensics probe``."""
from __future__ import annotations

import argparse
import sys

from .options import add_backend_option

FORMATS = ("text", "json")


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="what makes fakes detectable, by intervention: change one region or apply an "
                                  "everyday edit, measure how p(fake) moves",
                       description="On aligned faces (e.g. ../shared/data/faces128/ffhq/test and "
                                   ".../tpdne-stylegan2/test), change one thing per intervention - transplant a "
                                   "face region from a paired face of the other class (and of the same class, the "
                                   "control), occlude it, keep only it, or apply an everyday edit - and measure "
                                   "the mean change of p(fake) with a 95%% bootstrap interval and the share of "
                                   "verdicts flipped, per class. Writes probe.csv, probe.md, probe.png, probe.json "
                                   "and pairs.csv into --out. 'probe --list' names the interventions.")
    p.add_argument("--list", action="store_true", help="list the interventions with what each does, and stop")
    p.add_argument("--model", help="checkpoint folder or .onnx file (default: the bundled detector)")
    p.add_argument("--which-epoch", help="weights in the checkpoint folder: bestval (default) | latest | N")
    add_backend_option(p)
    p.add_argument("--real", metavar="DIR", help="folder of aligned real faces (e.g. .../faces128/ffhq/test)")
    p.add_argument("--fake", metavar="DIR", help="folder of aligned fake faces")
    p.add_argument("--pair-real", metavar="DIR",
                   help="FFHQ reals the fakes' transplants come from (default: --real when its path names ffhq; "
                        "fakes are paired only with FFHQ reals, CelebA-HQ is framed differently)")
    p.add_argument("--interventions", metavar="NAME,...",
                   help="comma-separated names (default all): identity, transplant:REGION, occlude:REGION, "
                        "edit:SPEC, a family alone for all of it …; see --list")
    p.add_argument("--n", type=int, metavar="N", help="at most N faces per class, drawn with --seed (default all)")
    p.add_argument("--seed", type=int, default=0, help="draws the faces, the pairs and the bootstrap (default 0)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of each interval (default 1000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--format", choices=FORMATS, default=FORMATS[0],
                   help="text (default): the tables; json: probe.json's summary on stdout")
    p.add_argument("--out", metavar="DIR", help="results folder (refused when it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--findings", metavar="DIR",
                   help="also append the rows to DIR/probe.csv, the committed findings table (e.g. docs/findings); "
                        "a row already there with other numbers is refused")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..probe.pipeline import SEGMENTER
    from ..probe.registry import list_text

    if args.list:
        print(list_text(SEGMENTER.regions))
        return 0
    missing = [f"--{k}" for k in ("real", "fake", "out") if not getattr(args, k)]
    if missing:
        raise ValueError(f"{', '.join(missing)} needed (or --list to see the interventions)")
    if args.findings and not Path(args.findings).is_dir():
        raise FileNotFoundError(f"--findings {args.findings} is not a folder; pass the findings folder, e.g. "
                                "docs/findings")
    from ..probe.pipeline import ProbeConfig, run_probe
    from ..probe.writer import text_summary, to_json
    from .options import progress_enabled

    cfg = ProbeConfig(real=args.real, fake=args.fake, out=args.out, model=args.model, which_epoch=args.which_epoch,
                      interventions=args.interventions, pair_real=args.pair_real, n=args.n, seed=args.seed,
                      resamples=args.resamples, batch_size=args.batch_size,
                      backend=getattr(args, "backend", "auto"), device=args.device, force=args.force)
    result = run_probe(cfg, progress=progress_enabled())
    sys.stdout.write(to_json(result.summary) if args.format == "json" else text_summary(result.summary) + "\n")
    print(f"probe results in {result.out}", file=sys.stderr)
    if args.findings:
        from ..experiments.results_tables import FindingsTables, probe_rows

        added = FindingsTables(Path(args.findings)).append("probe", probe_rows(result.summary), refuse_conflicts=True)
        print(f"{added} rows added to {Path(args.findings) / 'probe.csv'}", file=sys.stderr)
    return 0
