"""``experiment GRID --cell KEY``: train and test exactly one cell, what each Slurm array task runs.

The cell is picked by its portable key (12 hex digits) or its name, as ``experiment --plan``
lists them (with the same ``--set`` and ``--data-root``: they change the keys). It writes the
cell's record (``OUT/cells/<grid>/<cell>.json``) and nothing else: the findings tables and the
grid's table are written by ``experiment --collect`` (or a plain ``experiment`` run), so tasks
running at once never append to the same CSV. ``--findings`` is only read: a cell whose rows are
committed there is not trained (one missing only its region counts gets just those).

Run again (a requeued task), it continues: a half-trained checkpoint resumes from its
``resume.safetensors``, a trained one is only tested, a finished cell is left as it is. While
another process holds the cell's lock it waits for that process, and ends when the cell is done.
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

from ..core.config import require
from .grid import Cell, Grid
from .results_tables import FindingsTables
from .runner import Context, ExperimentConfig, finished, prepare, record_usable, run_worker

#: seconds between looks at a cell another process holds
WAIT_POLL_S = 10.0


def select_cell(grid: Grid, key: str, grid_arg: str | None = None) -> Cell:
    """The grid's cell whose key or name is ``key``; one line naming how to list them otherwise
    (``grid_arg``: the grid as the user named it)."""
    found = [c for c in grid.cells if key in (c.key, c.name)]
    require(bool(found), "cell", f"{key}: grid {grid.config.name} has no cell with this key or name; "
                                 f"'patchforensics experiment {grid_arg or grid.config.name} --plan' (with the same "
                                 "--set and --data-root) lists each cell's key and name")
    return found[0]


def run_one_cell(cfg: ExperimentConfig, key: str, progress: bool = True) -> tuple[Cell, Path | None]:
    """Train (or resume) and test the cell ``key`` of the grid; the cell and its record's path
    (``None`` when the cell's rows are in the findings tables and it needed no run). See the
    module docstring."""
    require(cfg.workers == 1, "workers", "--cell runs one cell in this process; leave --workers at 1")
    require(len(cfg.devices) == 1, "device", "--cell runs one cell: give one --device")
    require(cfg.stop_after is None, "stop_after", "--cell runs one whole cell; --stop-after does not apply")
    grid, out = prepare(cfg)
    cell = select_cell(grid, key, cfg.grid)
    tables = FindingsTables(Path(cfg.findings)) if cfg.findings else None
    ctx = Context(replace(grid, cells=[cell]), tables, cfg.force, None, append=False)
    record = out / "cells" / grid.config.name / f"{cell.name}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    if cfg.force:
        record.unlink(missing_ok=True)
    waiting = False
    while not (record_usable(ctx, cell) or finished(ctx, cell)):
        if run_worker(ctx, "", cfg.devices[0], progress):
            break
        if not waiting:
            lock = Path(cell.train.checkpoints_dir) / f"{cell.train.name}.lock"
            print(f"experiment: cell {cell.name} is held by another process ({lock}): waiting for it",
                  file=sys.stderr, flush=True)
            waiting = True
        time.sleep(WAIT_POLL_S)
    else:
        print(f"experiment: cell {cell.name} ({cell.key}) is finished already", file=sys.stderr, flush=True)
    return cell, record if record.is_file() else None
