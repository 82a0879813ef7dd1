"""``patchforensics experiment``."""
from __future__ import annotations

import argparse

from ..experiments.grid import bundled_grids
from .options import add_slurm_options


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
                        "exits 0 naming them. Not under torchrun (refused). Under --executor slurm leave it at 1: "
                        "each cell is its own array task")
    p.add_argument("--device", action="append", default=None, metavar="DEVICE",
                   help="device of the cells (auto, cpu, cuda:0 ...); repeat to give worker i the i-th "
                        "(round robin), e.g. --workers 2 --device cuda:0 --device cuda:1; under --executor "
                        "slurm one value for every task (auto: the task's GPU from --slurm-gpus, else its CPUs)")
    p.add_argument("--force", action="store_true", help="retrain and retest every cell")
    p.add_argument("--findings", metavar="DIR",
                   help="folder of the committed findings tables (cells.csv, curves.csv, regions.csv; e.g. "
                        "docs/findings): a cell whose rows are all there is not trained, on any machine; every "
                        "cell that finishes appends its rows")
    p.add_argument("--stop-after", type=float, metavar="MINUTES",
                   help="start no cell after this many minutes (a run with a deadline ends with whole cells)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--plan", action="store_true",
                      help="list each cell's key, checkpoint, state (finished, in table, regions, missing tests, "
                           "retrain, retest, to run) and est_minutes of training (est_source: table, record, model "
                           "median) as JSON lines; trains nothing")
    what.add_argument("--cell", metavar="KEY",
                      help="train and test only this cell (its 12-hex key or its name, as --plan lists them) "
                           "and write its record, not the tables (--collect does): what each Slurm array task "
                           "runs; with --executor slurm, submit only this cell")
    what.add_argument("--collect", action="store_true",
                      help="put the cell records that --cell runs or a Slurm array wrote into --findings and "
                           "write the grid's table; trains nothing")
    add_slurm_options(p, "one task per unfinished cell, each running --cell KEY into the shared --out")
    p.set_defaults(func=run, resume_hint="run the same command again to resume: finished cells are kept and a "
                                         "half-trained cell continues from its last snapshot")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..experiments.runner import ExperimentConfig, ExperimentIncomplete, collect, plan, run_experiment
    from .options import progress_enabled, refuse_unused_slurm_options

    cfg = ExperimentConfig(grid=args.grid, overrides=args.overrides, out=args.out, data_root=args.data_root,
                           workers=args.workers, devices=args.device or ["auto"], force=args.force,
                           findings=args.findings, stop_after=args.stop_after)
    if args.executor == "local":
        refuse_unused_slurm_options(args)
    if args.plan:
        for cell in plan(cfg):
            print(json.dumps(cell))
        return 0
    try:
        if args.executor == "slurm":
            result = _submit(args, cfg)
            if result is None:
                return 0
        elif args.cell:
            return _one_cell(args, cfg)
        else:
            result = collect(cfg) if args.collect else run_experiment(cfg, progress=progress_enabled())
    except ExperimentIncomplete as e:
        print(f"patchforensics experiment: {e}", file=sys.stderr)
        return 1
    if result.findings_dir is None:          # the cells left are other processes' (said on stderr): not a failure
        return 0
    print((result.findings_dir / "tables.md").read_text())
    print(f"{result.cells} cells, {result.trained} run by this call; table: {result.findings_dir / 'table.csv'}; "
          f"report: patchforensics report {result.out / 'results'}")
    return 0


def _submit(args: argparse.Namespace, cfg):
    """``--executor slurm``: submit the array and print its job id; with ``--wait`` (or nothing to
    run) the collected result, else None."""
    from ..experiments.runner import collect
    from ..experiments.slurm import submit_grid, wait_and_collect
    from .options import progress_enabled, slurm_config

    if args.collect:
        return collect(cfg)
    submission = submit_grid(cfg, slurm_config(args), args.cell)
    if submission is None:
        print("nothing to submit: every cell is finished")
        return collect(cfg) if args.wait else None
    if submission.earlier:
        print(f"{len(submission.earlier)} cell(s) still queued or running in earlier jobs, not submitted again: "
              + ", ".join(f"{cell} (task {task})" for cell, task in list(submission.earlier.items())[:3])
              + (" …" if len(submission.earlier) > 3 else ""))
    if submission.job:
        n = len(submission.cells)
        print(f"submitted job {submission.job}: {n} array task{'s' if n != 1 else ''} "
              f"({', '.join(submission.cells[:3])}{' …' if n > 3 else ''}); "
              f"logs: {submission.folder}/{submission.job}_<task>.out", flush=True)
    args.resume_hint = (f"the job(s) keep running (squeue -j {','.join(submission.sizes)}; scancel "
                        f"{' '.join(submission.sizes)} stops them); when done: {_collect_command(args)}")
    if not args.wait:
        print(f"when it is done: {_collect_command(args)}")
        return None
    return wait_and_collect(cfg, submission, progress=progress_enabled())


def _one_cell(args: argparse.Namespace, cfg) -> int:
    from ..experiments.one_cell import run_one_cell
    from .options import progress_enabled

    cell, record = run_one_cell(cfg, args.cell, progress=progress_enabled())
    print(f"cell {cell.name} ({cell.key}): " + (f"record {record}" if record else "its rows are in --findings")
          + f"; the tables: {_collect_command(args)}")
    return 0


def _collect_command(args: argparse.Namespace) -> str:
    """The ``--collect`` command line matching this call's grid and folders."""
    import shlex

    cmd = ["patchforensics", "experiment", args.grid]
    for override in args.overrides:
        cmd += ["--set", override]
    for flag, value in (("--out", args.out), ("--data-root", args.data_root), ("--findings", args.findings)):
        cmd += [flag, value] if value else []
    return shlex.join([*cmd, "--collect"])
