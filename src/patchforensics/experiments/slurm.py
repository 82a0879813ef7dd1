"""``experiment GRID --executor slurm``: every unfinished cell as one task of one Slurm job array.

Task i runs ``patchforensics experiment GRID --cell KEY_i`` (:mod:`.one_cell`) with the same
grid, ``--set``, ``--data-root``, ``--out`` and ``--findings`` (read only), in the submitting
folder, so ``--out`` must be on the file system the nodes share. Each task writes its own cell
record only; :func:`wait_and_collect` (``--wait``) or ``experiment GRID --collect`` later puts
the records into the findings tables and writes the grid's table. A preempted or timed-out
task is requeued and resumes its cell from the last snapshot (:mod:`patchforensics.core.cluster`).

Under Slurm the parallelism is the array: each task is one process on one cell, given
``--slurm-cpus`` cores and ``--slurm-gpus`` GPUs; ``--device`` (one value) is every task's
device (``auto``: the task's GPU when it was given one, else its CPUs).

Layout added to ``--out``::

    slurm/<grid>/<grid>-<time>.sbatch   the array's script (task i -> its command line)
    slurm/<grid>/<grid>-<time>.job      the job id and the sbatch command line
    slurm/<grid>/<job>.json             which task holds which cell
    slurm/<grid>/<job>_<task>.out       each task's log (appended to over requeues)
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..core import fileio
from ..core.cluster import (FINAL_STATES, SlurmConfig, SlurmError, slurm_unavailable, submit_array,
                            task_states, wait_for_job)
from ..core.config import require
from .grid import Cell, Grid
from .one_cell import select_cell
from .results_tables import FindingsTables
from .runner import (Context, ExperimentConfig, ExperimentIncomplete, ExperimentResult, collect, finished, prepare,
                     record_usable)


@dataclass
class Submission:
    """What holds the grid's unfinished cells: the job just submitted (``None`` when every such cell
    is still in an earlier job), each job's array size, and every task as ``(job, index, cell)``."""

    job: str | None
    sizes: dict[str, int]
    tasks: list[tuple[str, int, str]]
    folder: Path                       # scripts, ``<job>.json`` and the tasks' logs

    @property
    def cells(self) -> list[str]:
        return [cell for job, _, cell in self.tasks if job == self.job]

    @property
    def earlier(self) -> dict[str, str]:
        """Cells still queued or running in earlier jobs: cell -> ``<job>_<task>``."""
        return {cell: f"{job}_{i}" for job, i, cell in self.tasks if job != self.job}


def check_slurm_options(cfg: ExperimentConfig) -> None:
    """Refuse, in one line, what does not apply to array tasks (before anything is read or submitted)."""
    require(cfg.workers == 1, "workers", "under --executor slurm every cell is its own array task: the array is "
                                         "the parallelism; leave --workers at 1")
    require(len(cfg.devices) == 1, "device", "under --executor slurm give one --device for every task "
                                             "(auto: the task's GPU if --slurm-gpus gave it one, else its CPUs)")
    require(not cfg.force, "force", "--force with --executor slurm would restart a requeued task from scratch; "
                                    "remove OUT/cells/<grid>/ and the cells' checkpoints, or use another --out")
    require(cfg.stop_after is None, "stop_after", "under --executor slurm each task's limit is --slurm-time")


def task_command(cfg: ExperimentConfig, grid: Grid, cell: Cell) -> list[str]:
    """The command line of the task that runs ``cell`` (absolute paths: it runs on another node)."""
    grid_arg = str(Path(cfg.grid).resolve()) if Path(cfg.grid).is_file() else cfg.grid
    cmd = [sys.executable, "-m", "patchforensics", "experiment", grid_arg, "--cell", cell.key,
           "--out", str(Path(grid.out).resolve()), "--data-root", str(Path(grid.data_root).resolve())]
    for override in cfg.overrides:
        cmd += ["--set", override]
    if cfg.findings:
        cmd += ["--findings", str(Path(cfg.findings).resolve())]
    if cfg.devices != ["auto"]:
        cmd += ["--device", cfg.devices[0]]
    return cmd


def submit_grid(cfg: ExperimentConfig, slurm: SlurmConfig, cell_key: str | None = None) -> Submission | None:
    """Submit the grid's unfinished cells (or only ``cell_key``) as one job array, leaving out those
    an earlier job of this ``--out`` still has queued or running; ``None`` when every cell is
    finished. Bad options, a broken grid, an unknown cell, a missing ``sbatch`` and a job sbatch
    refuses raise one line before anything is submitted."""
    check_slurm_options(cfg)
    slurm.validate()
    if (why := slurm_unavailable()) is not None:
        raise SlurmError(why)
    grid, out = prepare(cfg)
    cells = [select_cell(grid, cell_key, cfg.grid)] if cell_key else grid.cells
    ctx = Context(grid, FindingsTables(Path(cfg.findings)) if cfg.findings else None, False, None)
    todo = [c for c in cells if not (finished(ctx, c) or record_usable(ctx, c))]
    if not todo:
        return None
    folder = (out / "slurm" / grid.config.name).resolve()
    sizes, busy = _in_flight(folder, {c.name for c in todo})
    todo = [c for c in todo if c.name not in busy]
    job = submit_array([task_command(cfg, grid, c) for c in todo], slurm, folder, grid.config.name) if todo \
        else None
    if job:
        fileio.write_json(folder / f"{job}.json", {"job": job, "grid": grid.config.name,
                                                   "tasks": [{"cell": c.name, "key": c.key} for c in todo]})
        sizes[job] = len(todo)
    return Submission(job, sizes, [(*busy[name], name) for name in busy] + [(job, i, c.name) for i, c in
                                                                             enumerate(todo)], folder)


def _in_flight(folder: Path, cells: set[str]) -> tuple[dict[str, int], dict[str, tuple[str, int]]]:
    """Of ``cells``, those that an earlier submission (``<job>.json`` in ``folder``) still has queued
    or running, as ``cell -> (job, task index)``, and those jobs' array sizes: a second submission
    while the first runs (a ``--wait`` interrupted, say) does not put two tasks on one cell."""
    sizes: dict[str, int] = {}
    busy: dict[str, tuple[str, int]] = {}
    for path in sorted(folder.glob("*.json")):
        info = json.loads(path.read_text())
        if not cells & {t["cell"] for t in info["tasks"]}:
            continue
        states = task_states(info["job"])
        for i, task in enumerate(info["tasks"]):
            if task["cell"] in cells and i in states and states[i] not in FINAL_STATES:
                busy[task["cell"]] = (info["job"], i)
                sizes[info["job"]] = len(info["tasks"])
    return sizes, busy


def wait_and_collect(cfg: ExperimentConfig, submission: Submission, progress: bool = True) -> ExperimentResult:
    """Wait for the jobs that hold the cells (``squeue`` and the cell records; no ``sacct``), then
    :func:`collect`. :class:`ExperimentIncomplete` names the tasks that ended without their cell's
    record, with their last state and log."""
    grid, _ = prepare(cfg)
    ctx = Context(grid, FindingsTables(Path(cfg.findings)) if cfg.findings else None, False, None)
    cells = {c.name: c for c in grid.cells}
    failed = []
    for job, size in submission.sizes.items():
        mine = [(i, cells[name]) for j, i, name in submission.tasks if j == job]

        def written() -> bool:
            return all(record_usable(ctx, c) or finished(ctx, c) for _, c in mine)

        states = wait_for_job(job, size, done=written, progress=progress)
        failed += [(f"{job}_{i}", c, states.get(i, "gone from squeue")) for i, c in mine
                   if not (record_usable(ctx, c) or finished(ctx, c))]
    if failed:
        shown = "; ".join(f"{c.name}: task {task} {state.lower()}, log {submission.folder / f'{task}.out'}"
                          for task, c, state in failed[:3])
        raise ExperimentIncomplete(f"{len(failed)} of {len(submission.tasks)} tasks ended without their cell's "
                                   f"record ({shown}{' …' if len(failed) > 3 else ''}); submit again to rerun "
                                   "them (finished cells are kept)")
    return collect(cfg)
