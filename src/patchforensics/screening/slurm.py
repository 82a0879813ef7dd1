"""``detect --executor slurm --shards N``: one screening as the N tasks of one Slurm job array.

Task k runs ``detect PATHS ... --shard k/N --out OUT/shards/k-of-N`` (:mod:`.shards`) in the
submitting folder, with the same model and options, its heatmaps and report pictures (when
``--heatmaps`` / ``--report`` are given) in its own folder there; ``OUT`` must be on the file
system the nodes share. :func:`wait_and_merge` (``--wait``) waits for the array (``squeue`` and
the shards' records; no ``sacct``) and merges the shards into ``OUT``, ``--heatmaps`` and
``--report`` as ``detect --merge`` does: the rows one run over every input gives. A requeued
shard scores its part again from the start (it rewrites only its own folder).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..core import fileio
from ..core.cluster import SlurmConfig, SlurmError, slurm_unavailable, submit_array, wait_for_job
from ..core.config import require
from .detect import DetectConfig, expand_paths
from .results import DetectResult
from .shards import SHARD_FILE, MergeConfig, merge_shards

#: the folder under ``--out`` that holds the shards' folders, the array's script and its logs
SHARDS_DIR = "shards"


class ShardsIncomplete(RuntimeError):
    """Some shards ended without their record; the message names them, their state and log."""


@dataclass
class ShardSubmission:
    job: str
    shards: list[Path]         # shard k's --out folder at index k - 1
    logs: Path                 # where ``<job>_<task>.out`` are


def shard_folder(out: str | Path, k: int, n: int) -> Path:
    return Path(out).resolve() / SHARDS_DIR / f"{k}-of-{n}"


def shard_command(cfg: DetectConfig, k: int, n: int) -> list[str]:
    """The command line of shard ``k`` of ``n``: ``cfg``'s inputs and options, its own output folders."""
    folder = shard_folder(cfg.out, k, n)
    cmd = [sys.executable, "-m", "patchforensics", "detect", *cfg.paths, "--shard", f"{k}/{n}", "--out", str(folder)]
    for flag, value in (("--model", cfg.model), ("--which-epoch", cfg.which_epoch), ("--backend", cfg.backend),
                        ("--threshold", cfg.threshold), ("--faces", cfg.faces), ("--align-style", cfg.align_style),
                        ("--top-k", cfg.top_k), ("--batch-size", cfg.batch_size),
                        ("--max-pixels", cfg.max_pixels), ("--device", cfg.device)):
        cmd += [flag, str(value)] if value is not None else []
    cmd += ["--heatmaps", str(folder / "heatmaps")] if cfg.heatmaps else []
    cmd += ["--report", str(folder / "report.html")] if cfg.report else []
    return cmd + ["--force"]           # a requeued shard rewrites its own folder


def submit_shards(cfg: DetectConfig, n: int, slurm: SlurmConfig) -> ShardSubmission:
    """Check everything (options, inputs, that ``--out``, ``--heatmaps`` and ``--report`` are new),
    then submit the ``n`` shards as one job array; bad input raises one line, nothing submitted."""
    require(cfg.out is not None, "out", "--executor slurm needs --out DIR (on the shared file system): the "
                                        "shards go to DIR/shards/, the merged results to DIR")
    require(cfg.shard is None, "shard", "--executor slurm gives each task its --shard; use --shards N")
    require(n >= 1, "shards", "must be >= 1")
    cfg.validate()
    slurm.validate()
    if (why := slurm_unavailable()) is not None:
        raise SlurmError(why)
    count = len(expand_paths(cfg.paths))        # a missing input fails here, before anything is submitted
    require(n <= count, "shards", f"{n} shards for {count} inputs: give at most {count}")
    fileio.ensure_new_output(cfg.out, cfg.force)
    if cfg.heatmaps:
        fileio.ensure_new_output(cfg.heatmaps, cfg.force)
    if cfg.report:
        fileio.ensure_new_file(cfg.report, cfg.force)
    logs = Path(cfg.out).resolve() / SHARDS_DIR
    job = submit_array([shard_command(cfg, k, n) for k in range(1, n + 1)], slurm, logs, "detect")
    return ShardSubmission(job, [shard_folder(cfg.out, k, n) for k in range(1, n + 1)], logs)


def merge_command(cfg: DetectConfig, n: int) -> str:
    """The ``detect --merge`` command that joins the shards later (their folders as a shell pattern)."""
    import shlex

    cmd = f"patchforensics detect --merge {shlex.quote(str(shard_folder(cfg.out, 1, n).parent))}/*-of-{n} " \
          f"--out {shlex.quote(str(cfg.out))}"
    for flag, value in (("--heatmaps", cfg.heatmaps), ("--report", cfg.report)):
        cmd += f" {flag} {shlex.quote(value)}" if value else ""
    return cmd


def wait_and_merge(cfg: DetectConfig, submission: ShardSubmission, progress: bool = True) -> DetectResult:
    """Wait for the array, then merge its shards into ``cfg.out`` (and ``--heatmaps``, ``--report``).
    :class:`ShardsIncomplete` names the shards that ended without their record."""
    shards = submission.shards
    states = wait_for_job(submission.job, len(shards), progress=progress,
                          done=lambda: all((folder / SHARD_FILE).is_file() for folder in shards))
    failed = [(i, folder) for i, folder in enumerate(shards) if not (folder / SHARD_FILE).is_file()]
    if failed:
        shown = "; ".join(f"shard {i + 1}/{len(shards)}: {states.get(i, 'gone from squeue').lower()}, log "
                          f"{submission.logs / f'{submission.job}_{i}.out'}" for i, _ in failed[:3])
        raise ShardsIncomplete(f"{len(failed)} of {len(shards)} shards of job {submission.job} ended without "
                               f"their record ({shown}); rerun those (the command is in the log's first line), "
                               f"then: {merge_command(cfg, len(shards))}")
    return merge_shards(MergeConfig([str(f) for f in shards], cfg.out, cfg.heatmaps, cfg.report,
                                    force=cfg.force))

