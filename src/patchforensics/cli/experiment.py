"""``patchforensics experiment``."""
from __future__ import annotations

import argparse

from ..experiments.grid import bundled_grids


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="train and test a grid of cells (models x seeds x fake sets ...) into one table",
                       description="Trains every cell of GRID that is not finished (a half-trained cell resumes, "
                                   "a finished one is never retrained without --force), runs the grid's suites, "
                                   "and writes one long table (CSV and Markdown) plus summary figures under "
                                   "OUT/results/experiment-<grid>/, where 'report OUT/results' shows them.")
    p.add_argument("grid", metavar="GRID", help=f"grid YAML, or a bundled grid name: {', '.join(bundled_grids())}")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a grid key (dotted path, YAML value), e.g. --set base.max_epochs=4 "
                        "--set vary.seed=[0,1]; repeatable")
    p.add_argument("--out", help="output folder (default: experiments, shared by every grid so that identical "
                                 "cells are trained once)")
    p.add_argument("--data-root", help="folder the grid's real/fake/suite folders start from "
                                       "(default: the grid's data_root, $PATCHFORENSICS_DATA, ../shared/data/faces128)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes, each taking the next unfinished cell (a lock file per cell; default 1). Other "
                        "experiment processes may share --out: one that finds every cell left held by the others "
                        "exits 0 naming them. Not under torchrun (refused)")
    p.add_argument("--device", action="append", default=None, metavar="DEVICE",
                   help="device of the cells (auto, cpu, cuda:0 ...); repeat to give worker i the i-th "
                        "(round robin), e.g. --workers 2 --device cuda:0 --device cuda:1")
    p.add_argument("--force", action="store_true", help="retrain and retest every cell")
    p.add_argument("--findings", metavar="DIR",
                   help="folder of the committed findings tables (cells.csv, curves.csv, regions.csv; e.g. "
                        "docs/findings): a cell whose rows are all there is not trained, on any machine; every "
                        "cell that finishes appends its rows")
    p.add_argument("--stop-after", type=float, metavar="MINUTES",
                   help="start no cell after this many minutes (a run with a deadline ends with whole cells)")
    p.add_argument("--plan", action="store_true",
                   help="list each cell's key, checkpoint, state (finished, in table, regions, missing tests, "
                        "retrain, retest, to run) and est_minutes of training (est_source: table, record, model "
                        "median) as JSON lines; trains nothing")
    p.set_defaults(func=run, resume_hint="run the same command again to resume: finished cells are kept and a "
                                         "half-trained cell continues from its last snapshot")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..experiments.runner import ExperimentConfig, ExperimentIncomplete, plan, run_experiment
    from .options import progress_enabled

    cfg = ExperimentConfig(grid=args.grid, overrides=args.overrides, out=args.out, data_root=args.data_root,
                           workers=args.workers, devices=args.device or ["auto"], force=args.force,
                           findings=args.findings, stop_after=args.stop_after)
    if args.plan:
        for cell in plan(cfg):
            print(json.dumps(cell))
        return 0
    try:
        result = run_experiment(cfg, progress=progress_enabled())
    except ExperimentIncomplete as e:
        print(f"patchforensics experiment: {e}", file=sys.stderr)
        return 1
    if result.findings_dir is None:          # the cells left are other processes' (said on stderr): not a failure
        return 0
    print((result.findings_dir / "tables.md").read_text())
    print(f"{result.cells} cells, {result.trained} run by this call; table: {result.findings_dir / 'table.csv'}; "
          f"report: patchforensics report {result.out / 'results'}")
    return 0
