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
whose lock they can create (``devices`` round robin: worker i gets the i-th).

With ``findings`` (a folder holding the committed ``cells.csv``, ``curves.csv`` and
``regions.csv``, see :mod:`.results_tables`) a cell whose rows are all in the table is finished
too, on any machine and with no checkpoint: it is neither trained nor tested. Every cell
that finishes appends its rows there (test AP and ROC-AUC with 95% bootstrap intervals,
its validation curve, its region counts), and the findings are drawn from those rows.
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
from ..core.provenance import code_commit
from ..data.transforms import parse_corruptions
from ..evaluation.evaluate import read_scores_csv, results_dir_for
from ..evaluation.suite import run_suite
from ..explain.patches import PatchesConfig, run_patches
from ..explain.regions import RegionsConfig, run_regions
from ..models import is_patch_model
from ..models.card import ModelCard
from ..models.checkpoint import RESUME_FILE
from ..scoring.runtime import cpu_has_native_bf16, cpu_kind
from ..scoring.metrics import AGGREGATIONS, bootstrap_ci
from ..training.summary import read_train_summary, training_minutes
from ..training.train import train
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


class ExperimentIncomplete(RuntimeError):
    """Some cells are not finished (a worker failed, or ``stop_after`` ended the run); a rerun continues them."""


@dataclass
class ExperimentResult:
    out: Path
    findings_dir: Path
    cells: int
    trained: int                 # cells this call worked on


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
    """Each cell's name, key, checkpoint folder and state (``finished``: its local record;
    ``in table``: its rows are committed; ``regions``: only its region counts are missing;
    ``to run``), and whether the grid wants its regions; nothing is trained or written."""
    grid, _ = prepare(cfg)
    ctx = Context(grid, FindingsTables(Path(cfg.findings)) if cfg.findings else None, cfg.force, None)
    out = []
    for cell in grid.cells:
        if _record_complete(grid, cell):
            state = "finished"
        elif finished(ctx, cell):
            state = "in table"
        elif ctx.tables and ctx.tables.has_rows(grid, cell):
            state = "regions"
        else:
            state = "to run"
        out.append({"cell": cell.name, "key": cell.key, "checkpoint": cell.train.name, "state": state,
                    "regions": wants_regions(grid, cell)})
    return out


def run_experiment(cfg: ExperimentConfig, progress: bool = True) -> ExperimentResult:
    """Run (or continue) a grid and write its findings; see the module docstring."""
    grid, out = prepare(cfg)
    ctx = open_grid(cfg, grid, clean=True)
    tables = ctx.tables
    todo = [c for c in grid.cells if not finished(ctx, c)]
    _log(f"experiment {grid.config.name}: {len(grid.cells)} cells, {len(grid.cells) - len(todo)} finished"
         + (f" (in {tables.path('cells')} or here)" if tables else "")
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
    missing = [c.name for c in grid.cells if not finished(ctx, c)]
    if missing:
        why = f"stopped after {cfg.stop_after:g} min (--stop-after)" if ctx.deadline and time.time() > ctx.deadline \
            else "unfinished"
        raise ExperimentIncomplete(f"{len(missing)} cells {why} ({_names(missing)}); rerun to continue")
    return ExperimentResult(out, write_grid_findings(ctx), len(grid.cells), worked)


def collect(cfg: ExperimentConfig) -> ExperimentResult:
    """Gather the cell records that other processes wrote (a Slurm array's tasks, ``--cell`` runs)
    into the findings tables and write the grid's table; trains nothing.
    :class:`ExperimentIncomplete` names the cells that have no record yet."""
    grid, out = prepare(cfg)
    ctx = open_grid(cfg, grid, clean=False)
    missing = [c.name for c in grid.cells if not finished(ctx, c)]
    if missing:
        raise ExperimentIncomplete(f"{len(missing)} of {len(grid.cells)} cells have no record in "
                                   f"{out / 'cells' / grid.config.name} yet ({_names(missing)}): wait for their "
                                   "tasks, or run them (--executor slurm submits the unfinished ones)")
    return ExperimentResult(out, write_grid_findings(ctx), len(grid.cells), 0)


def open_grid(cfg: ExperimentConfig, grid: Grid, clean: bool) -> Context:
    """Make the output folders and the workers' context; the records of cells finished here but
    not yet in the findings tables (a table named later, other processes' ``--cell`` runs) are
    added to them. ``clean`` (a run of this process's own workers): temp files of dead writers
    go, and ``force`` drops the old records; a collecting call leaves both (on a cluster a writer
    may live on another node, where its pid means nothing)."""
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
    if tables:                     # cells finished here before the table was named: their rows go in now
        for cell in grid.cells:
            if record_usable(ctx, cell) and not in_tables(ctx, cell):
                write_cell(tables, grid, cell, _read_json(cells_dir / f"{cell.name}.json"))
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
            _log(f"{tag}cell {index}/{len(grid.cells)} ({left} left, this one included): {cell.label()}")
            start = time.perf_counter()
            result = run_cell(ctx, cell, device, progress)
            seconds = time.perf_counter() - start
            result["seconds"] = round(seconds, 1)
            fileio.write_json(record, result)
            if ctx.tables and ctx.append:
                added = write_cell(ctx.tables, grid, cell, result)
                _log(f"{tag}  rows added to {ctx.tables.folder}: "
                     + ", ".join(f"{n} to {t}.csv" for t, n in added.items()))
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
    """The cell's record can go into the findings tables: it is complete, or its rows are in the
    tables already and it holds the region counts the grid wants (a regions-only run)."""
    if _record_complete(ctx.grid, cell):
        return True
    record = _read_json(ctx.grid.out / "cells" / ctx.grid.config.name / f"{cell.name}.json")
    datasets = {d.name for s in ctx.grid.suites for d in s.datasets}
    return bool(record) and Path(record["checkpoint"]).name == cell.train.name and ctx.tables is not None \
        and ctx.tables.has_rows(ctx.grid, cell) and datasets <= set(record.get("regions", {}))


def wants_regions(grid: Grid, cell: Cell) -> bool:
    """Whether the grid's ``regions`` spec picks this cell (patch models only)."""
    spec, tcfg = grid.config.regions, cell.train
    return spec is not None and is_patch_model(tcfg.model) and (not spec.models or tcfg.model in spec.models) \
        and tcfg.seed in spec.seeds


def run_cell(ctx: Context, cell: Cell, device: str, progress: bool) -> dict[str, Any]:
    """Train (or resume, or reuse) one cell's checkpoint, run the suites and the regions; the cell's record.
    A cell whose rows are already in the findings tables is only given its region counts."""
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
    for suite in grid.suites if not (ctx.tables and ctx.tables.has_rows(grid, cell)) else []:
        result = run_suite(ckpt, suite, grid.config.which_epoch, "test", str(results_dir), device=device,
                           force=force, progress=progress)
        fakes = {d.name: Path(d.fake).name for d in suite.datasets}
        reals = {d.name: Path(d.real).name for d in suite.datasets}
        intervals = {(d.name, ",".join(c) or "none"): _intervals(results_dir, ckpt.name, grid.config.which_epoch,
                                                                 d.name, c)
                     for d in suite.datasets for c in suite.corruptions}
        rows += [{"suite": suite.name, "test_real": reals[r["dataset"]], "test_fake": fakes[r["dataset"]], **r,
                  **intervals[(r["dataset"], r["corruption"])].get(r["aggregation"], {})}
                 for r in result.rows]
    regions = {}
    spec = grid.config.regions
    if wants_regions(grid, cell):
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
            "history": (summary or {}).get("history", []), "runtime": _runtime(ckpt),
            "train_s": round(train_s, 1), "rows": rows, "regions": regions, "commit": code_commit(),
            "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _intervals(results_root: Path, name: str, which_epoch: str, dataset: str,
               corruption: list[str]) -> dict[str, dict[str, float]]:
    """``aggregation -> {ap_lo, ap_hi, roc_auc_lo, roc_auc_hi}``: 95% bootstrap intervals over the
    test images, from the ``scores.csv`` that ``test`` wrote (none for the per-patch rows)."""
    scores = read_scores_csv(results_dir_for(results_root, name, "test", which_epoch, dataset,
                                             parse_corruptions(corruption)) / "scores.csv")
    if scores is None:
        return {}
    _, labels, p_fake = scores
    out = {}
    for aggregation in AGGREGATIONS:
        ci = bootstrap_ci(p_fake[aggregation], labels == 0)
        out[aggregation] = {"ap_lo": ci["ap"][0], "ap_hi": ci["ap"][1],
                            "roc_auc_lo": ci["roc_auc"][0], "roc_auc_hi": ci["roc_auc"][1]}
    return out


def _runtime(ckpt: Path) -> dict[str, str]:
    """What the cell trained with (precision, backend, device, CPU) and ``machine``: the GPU's
    name on CUDA, else the CPU kind."""
    runtime = dict(ModelCard.read(ckpt).runtime)
    device = runtime.get("device", "")
    if device.startswith("cuda"):
        import torch

        # the GPU's name where the cell is measured on one (regions of GPU cells run on a CPU later)
        gpu = torch.cuda.get_device_name(torch.device(device)) if torch.cuda.is_available() else "GPU"
        runtime["machine"] = f"{device}: {gpu}"
    else:
        runtime["machine"] = f"{device}: {runtime.get('cpu', '')}"
    return runtime


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
