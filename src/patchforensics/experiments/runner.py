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
"""
from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core import fileio
from ..core.config import require, to_dict
from ..evaluation.suite import run_suite
from ..explain.patches import PatchesConfig, run_patches
from ..explain.regions import RegionsConfig, run_regions
from ..models import is_patch_model
from ..models.checkpoint import RESUME_FILE
from ..training.train import train
from .findings import write_findings
from .grid import RESOURCE_KEYS, Cell, Grid, load_grid


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

    def validate(self) -> None:
        require(self.workers >= 1, "workers", "must be >= 1")
        require(bool(self.devices), "device", "give at least one device")


@dataclass
class ExperimentIncomplete(RuntimeError):
    """A worker process failed: some cells are not finished (a rerun continues them)."""


@dataclass
class ExperimentResult:
    out: Path
    findings_dir: Path
    cells: int
    trained: int                 # cells this call worked on


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


def run_experiment(cfg: ExperimentConfig, progress: bool = True) -> ExperimentResult:
    """Run (or continue) a grid and write its findings; see the module docstring."""
    grid, out = prepare(cfg)
    fileio.write_yaml(out / "grids" / f"{grid.config.name}.yaml", grid.spec())
    cells_dir = out / "cells" / grid.config.name
    cells_dir.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    fileio.remove_stale_temps(cells_dir)
    if cfg.force:                  # every cell again: the old records go, the locks of live workers stay
        for record in cells_dir.glob("*.json"):
            record.unlink()
    todo = [c for c in grid.cells if not finished(grid, c)]
    _log(f"experiment {grid.config.name}: {len(grid.cells)} cells, {len(grid.cells) - len(todo)} finished, "
         f"{len(todo)} to run, {cfg.workers} worker(s); output {out}")
    if cfg.workers == 1 or len(todo) <= 1:
        worked = run_worker(grid, out, "", cfg.devices[0], cfg.force, progress)
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=run_worker, args=(grid, out, f"[worker {i}] ", cfg.devices[i % len(cfg.devices)],
                                                      cfg.force, False), name=f"worker {i}")
                 for i in range(cfg.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        failed = [p.name for p in procs if p.exitcode != 0]
        if failed:
            raise ExperimentIncomplete(f"{', '.join(failed)} failed (see above); rerun to continue")
        worked = len(todo)
    missing = [c.name for c in grid.cells if not finished(grid, c)]
    if missing:
        raise ExperimentIncomplete(f"{len(missing)} cells unfinished ({', '.join(missing[:5])}); rerun to continue")
    records = [json.loads((cells_dir / f"{c.name}.json").read_text()) for c in grid.cells]
    findings_dir = write_findings(grid, records, out / "results" / f"experiment-{grid.config.name}")
    _log(f"experiment {grid.config.name}: table and figures in {findings_dir}")
    return ExperimentResult(out, findings_dir, len(grid.cells), worked)


def run_worker(grid: Grid, out: Path, tag: str, device: str, force: bool, progress: bool) -> int:
    """Take the unfinished cells one after another (skipping those another process holds);
    returns how many this worker finished. ``tag`` starts its log lines."""
    cells_dir = out / "cells" / grid.config.name
    done = 0
    for cell in grid.cells:
        record = cells_dir / f"{cell.name}.json"
        lock = Path(cell.train.checkpoints_dir) / f"{cell.train.name}.lock"
        if finished(grid, cell) or not _acquire(lock):
            continue
        try:
            if finished(grid, cell):     # finished by another worker between the check and the lock
                continue
            left = sum(not finished(grid, c) for c in grid.cells)
            index = grid.cells.index(cell) + 1
            _log(f"{tag}cell {index}/{len(grid.cells)} ({left} left, this one included): {cell.label()}")
            start = time.perf_counter()
            result = run_cell(grid, cell, out, device, force, progress)
            seconds = time.perf_counter() - start
            result["seconds"] = round(seconds, 1)
            fileio.write_json(record, result)
            done += 1
            left -= 1
            _log(f"{tag}cell {index}/{len(grid.cells)} done in {seconds:.0f} s; {left} left"
                 + (f", about {left * seconds / 60:.0f} min at this pace" if left else ""))
        finally:
            lock.unlink(missing_ok=True)
    return done


def finished(grid: Grid, cell: Cell) -> bool:
    """The cell's record exists, is of this checkpoint and holds every suite dataset × corruption of the grid."""
    record = _read_json(grid.out / "cells" / grid.config.name / f"{cell.name}.json")
    if not record or Path(record["checkpoint"]).name != cell.train.name:
        return False
    have = {(r["suite"], r["dataset"], r["corruption"]) for r in record["rows"]}
    datasets = [d.name for s in grid.suites for d in s.datasets]
    return all((s.name, d.name, ",".join(c) or "none") in have
               for s in grid.suites for d in s.datasets for c in s.corruptions) \
        and (not wants_regions(grid, cell) or set(datasets) <= set(record.get("regions", {})))


def wants_regions(grid: Grid, cell: Cell) -> bool:
    """Whether the grid's ``regions`` spec picks this cell (patch models only)."""
    spec, tcfg = grid.config.regions, cell.train
    return spec is not None and is_patch_model(tcfg.model) and (not spec.models or tcfg.model in spec.models) \
        and tcfg.seed in spec.seeds


def run_cell(grid: Grid, cell: Cell, out: Path, device: str, force: bool, progress: bool) -> dict[str, Any]:
    """Train (or resume, or reuse) one cell's checkpoint, run the suites and the regions; the cell's record."""
    tcfg = replace(cell.train, device=device) if device != "auto" else cell.train
    ckpt = Path(tcfg.checkpoints_dir) / tcfg.experiment_name()
    summary = _read_json(ckpt / "train_summary.json")
    start = time.perf_counter()
    if summary and summary.get("status") == "finished" and not force:
        _log(f"  trained already ({ckpt}); testing")
    else:
        resume = (ckpt / RESUME_FILE).is_file() and not force
        _log(f"  {'resuming' if resume else 'training'} {tcfg.model} ({tcfg.max_epochs} epochs) -> {ckpt}")
        train(tcfg, resume=resume, force=not resume, progress=progress)
        summary = _read_json(ckpt / "train_summary.json")
    train_s = time.perf_counter() - start
    results_dir = out / "results"
    rows = []
    for suite in grid.suites:
        result = run_suite(ckpt, suite, grid.config.which_epoch, "test", str(results_dir), device=device,
                           force=force, progress=progress)
        fakes = {d.name: Path(d.fake).name for d in suite.datasets}
        reals = {d.name: Path(d.real).name for d in suite.datasets}
        rows += [{"suite": suite.name, "test_real": reals[r["dataset"]], "test_fake": fakes[r["dataset"]], **r}
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
    return {"cell": cell.name, "options": cell.options, "train_config": to_dict(tcfg),
            "checkpoint": str(ckpt), "best_epoch": (summary or {}).get("best_epoch"),
            "best_val": (summary or {}).get("best_metric"), "epochs": len((summary or {}).get("history", [])),
            "train_s": round(train_s, 1), "rows": rows, "regions": regions}


def _acquire(lock: Path) -> bool:
    """Create ``lock`` holding our pid; a lock whose process is gone (killed run) is taken over."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                text, age = lock.read_text().strip(), time.time() - lock.stat().st_mtime
            except OSError:
                continue                     # released meanwhile
            if (not text and age < 60) or (text.isdigit() and _alive(int(text))):
                return False                 # being written, or held by a live process
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
