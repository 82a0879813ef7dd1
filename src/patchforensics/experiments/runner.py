"""``experiment``: train every unfinished cell of a grid, run its suites, write the findings.

Layout of ``--out`` (default ``experiments``; several grids may share it)::

    grids/<grid>.yaml               the effective grid of the latest run (after --set)
    checkpoints/<model>_<fakes>_seed<s>_<hash>/   train's checkpoint folder (resume.safetensors while
                                    half-trained); the hash covers the training options, so grids in
                                    the same folder share identical runs instead of training them twice
    checkpoints/<...>.lock          held by the process working on that checkpoint (pid inside)
    runs/<...>/                     TensorBoard logs
    cells/<grid>/<cell>.json        a finished cell: its options, training summary, suite rows, time
    results/<checkpoint>/test/epoch_<which>/<dataset>/   test outputs (and patches/regions)
    results/experiment-<grid>/      the long table, figures and experiment.json (read by ``report``)

A cell is finished when its record exists; it is never retrained unless
``force``, and a grid that changes a finished cell's training options is refused
without ``force`` (growing a grid by seeds, models, datasets or corruptions only runs
what is new). A killed run continues where it stopped: a half-trained checkpoint
resumes from its ``resume.safetensors`` (train's ``--resume``), a trained one is
only tested, and ``test`` itself skips datasets whose results are up to date.
With ``workers > 1`` that many processes each take the next unfinished cell
whose lock they can create (``devices`` round robin: worker i gets the i-th). Several
``experiment`` processes may share ``out`` the same way: one that finds every cell left held
by the others exits without error, naming them (the one that finishes the last cell writes the
table). Under ``torchrun`` (``WORLD_SIZE`` > 1) the command is refused: its ranks would take
different cells into one DDP group; ``workers`` or a Slurm array spread the cells instead.

With ``findings`` (a folder holding the committed ``cells.csv``, ``curves.csv`` and
``regions.csv``, see :mod:`.results_tables`) a cell whose rows are all in the table is finished
too, on any machine and with no checkpoint: it is neither trained nor tested. Every cell
that finishes appends its rows there (test AP and ROC-AUC with 95% bootstrap intervals,
its validation curve, its region counts), and the findings are drawn from those rows. One key
never holds rows of two trainings: of a cell the tables hold in part (a grid asks tests its
rows lack), only the missing tests run where that training's checkpoint is at hand; else the
cell is trained again and every row of its key replaced (:func:`cell_state`).
``stop_after`` (minutes) makes the workers take no new cell after that time, so a run
with a deadline (a GPU lease) ends with whole cells.
"""
from __future__ import annotations

import json
import multiprocessing
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core import fileio
from ..core.config import require, to_dict
from ..core.device import resolve_device
from ..core.ranks import world_size
from ..core.provenance import code_commit
from ..evaluation.suite import run_suite
from ..explain.patches import PatchesConfig, run_patches
from ..explain.regions import RegionsConfig, run_regions
from ..models import is_patch_model
from ..models.checkpoint import RESUME_FILE
from ..scoring.runtime import cpu_has_native_bf16, cpu_kind
from ..training.summary import read_train_summary, training_minutes
from ..training.train import train
from .cell_measures import bootstrap_intervals, cell_runtime
from .estimates import estimate_minutes
from .findings import view_rows, write_findings
from .grid import RESOURCE_KEYS, Cell, Grid, load_grid
from .results_tables import TABLES, FindingsTables, cell_rows, write_cell


@dataclass
class ExperimentConfig:
    """Options of ``patchforensics experiment``."""

    grid: str                                        # grid YAML or bundled grid name
    overrides: list[str] = field(default_factory=list)   # --set KEY.PATH=VALUE
    out: str | None = None                           # default experiments
    data_root: str | None = None
    workers: int = 1
    devices: list[str] = field(default_factory=lambda: ["auto"])
    force: bool = False
    findings: str | None = None                      # folder of the committed cells/curves/regions tables
    stop_after: float | None = None                  # minutes; no cell is started after that

    def validate(self) -> None:
        require(self.workers >= 1, "workers", "must be >= 1")
        require(bool(self.devices), "device", "give at least one device")
        require(self.stop_after is None or self.stop_after > 0, "stop_after", "must be > 0 minutes")
        require(not (self.force and self.findings), "force",
                "--force retrains every cell, but --findings keeps the rows already committed; use one of them")
        require(world_size() == 1, "torchrun",
                f"experiment is one process per cell, not a torchrun job (WORLD_SIZE={world_size()}: its ranks "
                "would take different cells into one DDP group); run it once, with --workers N to train N cells "
                "at a time, or on a cluster with --executor slurm")


class ExperimentIncomplete(RuntimeError):
    """Some cells are not finished (a worker failed, or ``stop_after`` ended the run); a rerun continues them."""


@dataclass
class ExperimentResult:
    out: Path
    findings_dir: Path | None    # None: the cells left are held by other processes, one of which writes it
    cells: int
    trained: int                 # cells this call worked on
    held: list[str] = field(default_factory=list)   # cells other processes were working on at the end


@dataclass
class Context:
    """What every worker of one run shares."""

    grid: Grid
    tables: FindingsTables | None
    force: bool
    deadline: float | None       # time.time() after which no cell is started
    append: bool = True          # a finished cell's rows go into ``tables`` (not from --cell runs: collect does)


def prepare(cfg: ExperimentConfig) -> tuple[Grid, Path]:
    """Check the options and the grid (every cell's config, suites, folders) and the output
    folder; nothing is trained. A grid may grow (more seeds, models …: only the new cells run),
    but a finished cell whose training options changed is refused unless ``force``."""
    cfg.validate()
    grid = load_grid(cfg.grid, cfg.overrides, cfg.data_root, cfg.out)
    cells_dir = grid.out / "cells" / grid.config.name
    for cell in grid.cells if not cfg.force else []:
        record = _read_json(cells_dir / f"{cell.name}.json")
        if record and Path(record["checkpoint"]).name != cell.train.name:
            new = to_dict(cell.train)
            changed = sorted(k for k in set(new) | set(record["train_config"]) if k not in RESOURCE_KEYS
                             and new.get(k) != record["train_config"].get(k))
            raise fileio.OutputExistsError(
                f"{grid.out}: cell {cell.name} of grid {grid.config.name} was finished with other training "
                f"options (base/vary differ in {', '.join(changed) or 'the data'}); pass --force to rerun "
                "the grid's cells with these, or choose another --out")
    return grid, grid.out


def plan(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """Each cell's name, key, checkpoint folder and state (:func:`cell_state`), whether the grid
    wants its regions, and its training time (``est_minutes``, from ``est_source``:
    :mod:`.estimates`); nothing is trained or written."""
    grid, _ = prepare(cfg)
    ctx = Context(grid, FindingsTables(Path(cfg.findings)) if cfg.findings else None, cfg.force, None)
    table = ctx.tables.read("cells") if ctx.tables else []
    out = []
    for cell in grid.cells:
        minutes, source = estimate_minutes(cell, table, _read_json(grid.out / "cells" / grid.config.name
                                                                   / f"{cell.name}.json"))
        out.append({"cell": cell.name, "key": cell.key, "checkpoint": cell.train.name,
                    "state": cell_state(ctx, cell), "regions": wants_regions(grid, cell),
                    "est_minutes": minutes, "est_source": source})
    return out


#: :func:`cell_state`'s states in which the cell's rows replace every row of its key in the tables
REPLACING = ("retrain", "retest")
#: what a worker does with a cell in each state but the plain ones, in its log line
STATE_NOTES = {"missing tests": "only the tests its committed rows lack run on its checkpoint",
               "regions": "only its region counts are computed",
               "retrain": "its committed rows are of a training not at hand: trained again, its key's rows replaced",
               "retest": "the checkpoint here is of another training of its key: tested, its key's rows replaced"}


def cell_state(ctx: Context, cell: Cell) -> str:
    """What a run does with ``cell``: ``finished`` (its local record holds every test) and ``in
    table`` (the findings tables hold all its rows, and its region counts when wanted): nothing.
    Where the tables hold only part of it, ``regions`` (its region counts are missing) and ``missing
    tests`` (tests of the grid its rows lack) when the checkpoint of that training is at hand:
    only what is missing runs on it and is appended; else ``retrain`` (no finished checkpoint here:
    trained again) or ``retest`` (a checkpoint of another training of the key is here: tested),
    and in both its key's rows in every table are replaced together. ``to run``: nothing of it yet."""
    if _record_complete(ctx.grid, cell):
        return "finished"
    if finished(ctx, cell):
        return "in table"
    tables = ctx.tables
    if tables is None or not tables.holds_key(cell.key):
        return "to run"
    summary = read_train_summary(Path(cell.train.checkpoints_dir) / cell.train.name)
    if not summary or summary.get("status") != "finished":
        return "retrain"
    if not tables.trained_as(cell.key, summary.get("best_epoch"), summary.get("best_metric")):
        return "retest"
    return "regions" if tables.has_rows(ctx.grid, cell) else "missing tests"


def run_experiment(cfg: ExperimentConfig, progress: bool = True) -> ExperimentResult:
    """Run (or continue) a grid and write its findings; see the module docstring."""
    grid, out = prepare(cfg)
    ctx = open_grid(cfg, grid, clean=True)
    todo = [c for c in grid.cells if not finished(ctx, c)]
    _log(f"experiment {grid.config.name}: {len(grid.cells)} cells, {len(grid.cells) - len(todo)} finished"
         + (f" (in {ctx.tables.path('cells')} or here)" if ctx.tables else "")
         + f", {len(todo)} to run, {cfg.workers} worker(s); output {out}")
    _warn_emulated_bf16(todo, cfg.devices)
    if cfg.workers == 1 or len(todo) <= 1:
        worked = run_worker(ctx, "", cfg.devices[0], progress)
    else:
        mp = multiprocessing.get_context("spawn")
        procs = [mp.Process(target=run_worker, args=(ctx, f"[worker {i}] ", cfg.devices[i % len(cfg.devices)], False),
                            name=f"worker {i}")
                 for i in range(cfg.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        failed = [p.name for p in procs if p.exitcode != 0]
        if failed:
            raise ExperimentIncomplete(f"{', '.join(failed)} failed (see above); rerun to continue")
        worked = len(todo) - sum(not finished(ctx, c) for c in todo)
    left = [c for c in grid.cells if not finished(ctx, c)]
    holders = {c.name: fileio.lock_holder(Path(c.train.checkpoints_dir) / f"{c.train.name}.lock") for c in left}
    missing = [c.name for c in left if not finished(ctx, c)]     # checked again: a holder may have finished since
    held = {name: holders[name] for name in missing if holders[name]}
    stopped = ctx.deadline and time.time() > ctx.deadline
    if missing and set(missing) == set(held) and not stopped:
        _log(f"experiment {grid.config.name}: nothing left for this process: {len(held)} cell(s) held by other "
             f"processes sharing {out} ({', '.join(f'{n} (pid {p})' for n, p in held.items())}); they finish them, "
             "and the one that finishes the last cell writes the table")
        return ExperimentResult(out, None, len(grid.cells), worked, list(held))
    if missing:
        why = f"stopped after {cfg.stop_after:g} min (--stop-after)" if stopped else "unfinished"
        others = f", {len(held)} of them held by other processes" if held else ""
        raise ExperimentIncomplete(f"{len(missing)} cells {why} ({_names(missing)}{others}); rerun to continue")
    return ExperimentResult(out, write_grid_findings(ctx), len(grid.cells), worked)


def collect(cfg: ExperimentConfig) -> ExperimentResult:
    """Put the cell records other processes wrote (Slurm tasks, ``--cell`` runs) into the findings
    tables and write the grid's table; trains nothing. :class:`ExperimentIncomplete` names the rest."""
    grid, out = prepare(cfg)
    ctx = open_grid(cfg, grid, clean=False)
    missing = [c.name for c in grid.cells if not finished(ctx, c)]
    if missing:
        raise ExperimentIncomplete(f"{len(missing)} of {len(grid.cells)} cells have no record in "
                                   f"{out / 'cells' / grid.config.name} yet ({_names(missing)}): wait for their "
                                   "tasks, or run them (--executor slurm submits the unfinished ones)")
    return ExperimentResult(out, write_grid_findings(ctx), len(grid.cells), 0)


def open_grid(cfg: ExperimentConfig, grid: Grid, clean: bool) -> Context:
    """The output folders and the workers' context; records not yet in the findings tables (a table
    named later, ``--cell`` runs, Slurm tasks) go in (replacing their key's rows if of another
    training). ``clean`` (this process's workers run): dead writers' temp files go, and ``force``
    drops the records; not when collecting (a writer's pid on another node means nothing here)."""
    out = grid.out
    fileio.write_yaml(out / "grids" / f"{grid.config.name}.yaml", grid.spec())
    cells_dir = out / "cells" / grid.config.name
    cells_dir.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    if clean:
        fileio.remove_stale_temps(cells_dir)
    if clean and cfg.force:        # every cell again: the old records go, the locks of live workers stay
        for record in cells_dir.glob("*.json"):
            record.unlink()
    tables = FindingsTables(Path(cfg.findings)) if cfg.findings else None
    deadline = time.time() + cfg.stop_after * 60 if cfg.stop_after else None
    ctx = Context(grid, tables, cfg.force, deadline)
    for cell in grid.cells if tables else []:
        if record_usable(ctx, cell) and not in_tables(ctx, cell):
            record = _read_json(cells_dir / f"{cell.name}.json")
            write_cell(tables, grid, cell, record, replace=tables.holds_key(cell.key) and not tables.trained_as(
                cell.key, record.get("best_epoch"), record.get("best_val")))
    return ctx


def write_grid_findings(ctx: Context) -> Path:
    """The grid's long table and figures (from the findings tables, else from the cell records)."""
    grid, tables = ctx.grid, ctx.tables
    cells_dir = grid.out / "cells" / grid.config.name
    if tables:
        tests = {(d.name, ",".join(c) or "none") for s in grid.suites for d in s.datasets for c in s.corruptions}
        rows = view_rows({t: tables.read(t) for t in TABLES}, {c.key for c in grid.cells}, tests)
    else:
        rows = {"cells": [], "curves": [], "regions": []}
        for cell in grid.cells:
            for table, part in cell_rows(grid, cell, _read_json(cells_dir / f"{cell.name}.json")).items():
                rows[table] += part
    findings_dir = write_findings(grid.config.name, rows, grid.out / "results" / f"experiment-{grid.config.name}",
                                  {"grid": grid.spec(), "data_root": str(grid.data_root)})
    _log(f"experiment {grid.config.name}: table and figures in {findings_dir}")
    return findings_dir


def _names(cells: list[str]) -> str:
    return ", ".join(cells[:5]) + (" …" if len(cells) > 5 else "")


def run_worker(ctx: Context, tag: str, device: str, progress: bool) -> int:
    """Take the unfinished cells one after another (skipping those another process holds);
    returns how many this worker finished. ``tag`` starts its log lines."""
    grid = ctx.grid
    cells_dir = grid.out / "cells" / grid.config.name
    done = 0
    for cell in grid.cells:
        if ctx.deadline and time.time() > ctx.deadline:
            _log(f"{tag}time is up (--stop-after): no new cell")
            break
        record = cells_dir / f"{cell.name}.json"
        lock = Path(cell.train.checkpoints_dir) / f"{cell.train.name}.lock"
        if finished(ctx, cell):
            continue
        held = fileio.try_lock(lock)
        if held is None:            # another worker has it
            continue
        try:
            if finished(ctx, cell):     # finished by another worker between the check and the lock
                continue
            left = sum(not finished(ctx, c) for c in grid.cells)
            index = grid.cells.index(cell) + 1
            state = cell_state(ctx, cell)
            _log(f"{tag}cell {index}/{len(grid.cells)} ({left} left, this one included): {cell.label()}"
                 + (f" ({state}: {STATE_NOTES[state]})" if state in STATE_NOTES else ""))
            start = time.perf_counter()
            tests = ctx.tables.missing_tests(grid, cell) if state in ("missing tests", "regions") else None
            result = run_cell(ctx, cell, device, progress, tests)
            seconds = time.perf_counter() - start
            result["seconds"] = round(seconds, 1)
            fileio.write_json(record, result)
            if ctx.tables and ctx.append:
                added = write_cell(ctx.tables, grid, cell, result, replace=state in REPLACING)
                _log(f"{tag}  rows {'of key ' + cell.key + ' replaced in' if state in REPLACING else 'added to'} "
                     f"{ctx.tables.folder}: " + ", ".join(f"{n} to {t}.csv" for t, n in added.items()))
            done += 1
            left -= 1
            _log(f"{tag}cell {index}/{len(grid.cells)} done in {seconds:.0f} s; {left} left"
                 + (f", about {left * seconds / 60:.0f} min at this pace" if left else ""))
        finally:
            fileio.unlock(lock, held)
    return done


def finished(ctx: Context, cell: Cell) -> bool:
    """The cell's local record is complete, or the findings tables hold all its rows (and its
    region counts, when the grid wants them)."""
    return _record_complete(ctx.grid, cell) or in_tables(ctx, cell)


def in_tables(ctx: Context, cell: Cell) -> bool:
    """The findings tables hold all the cell's rows (and its region counts, when the grid wants them)."""
    tables = ctx.tables
    return tables is not None and tables.has_rows(ctx.grid, cell) \
        and (not wants_regions(ctx.grid, cell) or tables.has_regions(ctx.grid, cell))


def _record_complete(grid: Grid, cell: Cell) -> bool:
    """The cell's record exists, is of this checkpoint and holds every suite dataset × corruption of the grid."""
    record = _read_json(grid.out / "cells" / grid.config.name / f"{cell.name}.json")
    if not record or Path(record["checkpoint"]).name != cell.train.name:
        return False
    have = {(r["suite"], r["dataset"], r["corruption"]) for r in record["rows"]}
    datasets = [d.name for s in grid.suites for d in s.datasets]
    return all((s.name, d.name, ",".join(c) or "none") in have
               for s in grid.suites for d in s.datasets for c in s.corruptions) \
        and (not wants_regions(grid, cell) or set(datasets) <= set(record.get("regions", {})))


def record_usable(ctx: Context, cell: Cell) -> bool:
    """The cell's record can go into the findings tables: it is complete, or (a ``--cell`` run of a
    cell the tables hold in part) it has the tests and regions they lack, of the training they hold."""
    grid, tables = ctx.grid, ctx.tables
    record = _read_json(grid.out / "cells" / grid.config.name / f"{cell.name}.json")
    if _record_complete(grid, cell) or not record or tables is None:
        return _record_complete(grid, cell)
    datasets = {d.name for s in grid.suites for d in s.datasets}
    return Path(record["checkpoint"]).name == cell.train.name \
        and tables.trained_as(cell.key, record.get("best_epoch"), record.get("best_val")) \
        and tables.missing_tests(grid, cell) <= {(r["dataset"], r["corruption"]) for r in record["rows"]} \
        and (not wants_regions(grid, cell) or tables.has_regions(grid, cell) or datasets <= set(record["regions"]))


def wants_regions(grid: Grid, cell: Cell) -> bool:
    """Whether the grid's ``regions`` spec picks this cell (patch models only)."""
    spec, tcfg = grid.config.regions, cell.train
    return spec is not None and is_patch_model(tcfg.model) and (not spec.models or tcfg.model in spec.models) \
        and tcfg.seed in spec.seeds


def run_cell(ctx: Context, cell: Cell, device: str, progress: bool,
             tests: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Train (or resume, or reuse) one cell's checkpoint, run the suites and the regions; the cell's record.
    ``tests``: only these ``(suite dataset, corruption)`` tests run (default: every test of the grid;
    empty for a cell whose rows are in the tables but its region counts)."""
    grid, force = ctx.grid, ctx.force
    tcfg = replace(cell.train, device=device) if device != "auto" else cell.train
    ckpt = Path(tcfg.checkpoints_dir) / tcfg.experiment_name()
    summary = read_train_summary(ckpt)
    if summary and summary.get("status") == "finished" and not force:
        _log(f"  trained already ({ckpt}); testing")
    else:
        resume = (ckpt / RESUME_FILE).is_file() and not force
        _log(f"  {'resuming' if resume else 'training'} {tcfg.model} ({tcfg.max_epochs} epochs) -> {ckpt}")
        train(tcfg, resume=resume, force=not resume, progress=progress)
        summary = read_train_summary(ckpt)
    train_s = 60 * training_minutes(summary.get("history", []))   # every call of a resumed run
    results_dir = grid.out / "results"
    rows = []
    for suite in (part for whole in grid.suites for part in ([whole] if tests is None else whole.parts(tests))):
        result = run_suite(ckpt, suite, grid.config.which_epoch, "test", str(results_dir), device=device,
                           force=force, progress=progress)
        fakes = {d.name: Path(d.fake).name for d in suite.datasets}
        reals = {d.name: Path(d.real).name for d in suite.datasets}
        intervals = {(d.name, ",".join(c) or "none"): bootstrap_intervals(results_dir, ckpt.name, grid.config.which_epoch,
                                                                 d.name, c)
                     for d in suite.datasets for c in suite.corruptions}
        rows += [{"suite": suite.name, "test_real": reals[r["dataset"]], "test_fake": fakes[r["dataset"]], **r,
                  **intervals[(r["dataset"], r["corruption"])].get(r["aggregation"], {})}
                 for r in result.rows]
    regions = {}
    spec = grid.config.regions
    if wants_regions(grid, cell) and not (tests is not None and ctx.tables.has_regions(grid, cell)):
        for suite in grid.suites:
            for ds in suite.datasets:
                pcfg = PatchesConfig(checkpoint=str(ckpt), real=[ds.real], fake=[ds.fake], dataset_name=ds.name,
                                     which_epoch=grid.config.which_epoch, results_dir=str(results_dir),
                                     device=device, topn=spec.topn, unique=True, force=True)
                patches_dir = run_patches(pcfg, progress=progress)
                regions_dir = run_regions(RegionsConfig(str(patches_dir), device=device, force=True),
                                          progress=progress)
                regions[ds.name] = str(regions_dir / "regions.json")
    return {"cell": cell.name, "key": cell.key, "options": cell.options, "train_config": to_dict(tcfg),
            "checkpoint": str(ckpt), "best_epoch": (summary or {}).get("best_epoch"),
            "best_val": (summary or {}).get("best_metric"), "epochs": len((summary or {}).get("history", [])),
            "history": (summary or {}).get("history", []), "runtime": cell_runtime(ckpt),
            "train_s": round(train_s, 1), "rows": rows, "regions": regions, "commit": code_commit(),
            "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _warn_emulated_bf16(todo: list[Cell], devices: list[str]) -> None:
    """Say before any work when cells pinned to bf16 (the findings grids) would train on a CPU
    that only emulates it: they would run, at about a tenth of the speed."""
    on_cpu = any(resolve_device(d).type == "cpu" for d in devices)
    if on_cpu and not cpu_has_native_bf16() and any(c.train.bf16 == "on" for c in todo):
        _log("experiment: warning: these cells train in bf16 (bf16: on), which this CPU only emulates "
             f"({cpu_kind()}): about 10x slower than on a GPU or a CPU with AMX/AVX512-BF16. Run them on "
             "one of those (scripts/device_grid.sh for a lent GPU); --set 'base.bf16=\"off\"' makes other cells "
             "(another key, another precision), not these")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
