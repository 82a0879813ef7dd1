"""Command lines as one Slurm job array: submit, watch, wait; no accounting database needed.

Used by ``experiment --executor slurm`` (one task per unfinished cell) and ``detect --executor
slurm`` (one task per shard). The API is three calls::

    job = submit_array([cmd0, cmd1, ...], SlurmConfig(partition="gpu", gpus=1, time=240), folder, "grid")
    states = wait_for_job(job, done=lambda: all_results_there())     # task index -> final state
    slurm_unavailable()                                              # why Slurm cannot be used, or None

Everything goes through ``sbatch --array`` itself (not submitit): submitit watches its jobs with
``sacct``, which answers only where slurmdbd runs, and passes pickles through the shared folder;
here the tasks are plain command lines in a bash script a person can read and resubmit, and the
job is watched with ``squeue``, which every cluster has, plus the caller's result files once
``squeue`` has forgotten the job (``MinJobAge``, 300 s by default).

Requeue: the job is submitted with ``--requeue`` (a preempted task goes back to the queue) and
``--signal=B:USR1@<s>``: shortly before a task's time limit its script runs ``scontrol requeue``
on itself, so a timed-out task runs its command again, at most :data:`MAX_REQUEUES` times. The
commands must resume by themselves (``experiment`` continues a cell from its
``resume.safetensors``; a finished cell is not redone).
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

from . import fileio
from .config import require

#: how often a task may be requeued (time limit or preemption) before it is left failed
MAX_REQUEUES = 10
#: seconds before the time limit at which a task requeues itself
REQUEUE_SIGNAL_S = 120
#: task states after which a task does not run again (squeue's long names)
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY",
                          "PREEMPTED", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"})
#: sbatch options set here or by a dedicated flag: not accepted in ``extra``
OWN_OPTIONS = {"array": "", "output": "", "error": "", "open-mode": "", "job-name": "", "requeue": "",
               "no-requeue": "", "signal": "", "chdir": "", "parsable": "", "wrap": "",
               "partition": "--slurm-partition", "cpus-per-task": "--slurm-cpus", "gres": "--slurm-gpus",
               "gpus": "--slurm-gpus", "mem": "--slurm-mem", "time": "--slurm-time"}


class SlurmError(ValueError):
    """Slurm cannot be used, or refused the job (one line: what it said and what to do)."""


@dataclass
class SlurmConfig:
    """What each array task asks for. ``None`` leaves the cluster's default."""

    partition: str | None = None
    cpus: int | None = None          # --cpus-per-task (also the task's OMP_NUM_THREADS)
    gpus: int | None = None          # --gres=gpu:N per task
    mem: str | None = None           # --mem per task, Slurm's syntax: 16G, 4000M
    time: int | None = None          # --time, minutes
    extra: list[str] = field(default_factory=list)   # KEY=VALUE or KEY: --KEY=VALUE / --KEY

    def validate(self) -> None:
        require(self.cpus is None or self.cpus >= 1, "slurm_cpus", "must be >= 1")
        require(self.gpus is None or self.gpus >= 0, "slurm_gpus", "must be >= 0")
        require(self.time is None or self.time >= 5, "slurm_time",
                f"must be >= 5 minutes (a task requeues itself {REQUEUE_SIGNAL_S} s before its limit)")
        require(self.mem is None or re.fullmatch(r"\d+[KMGT]?", self.mem) is not None, "slurm_mem",
                f"{self.mem!r}: a size as Slurm writes it, e.g. 16G or 4000M")
        for item in self.extra:
            key = item.partition("=")[0]
            require(re.fullmatch(r"[a-z][a-z0-9-]*", key) is not None, "slurm_extra",
                    f"{item!r}: give KEY=VALUE with sbatch's long option name, e.g. account=myproject")
            require(key not in OWN_OPTIONS, "slurm_extra",
                    f"{key} is set by patchforensics" + (f"; use {OWN_OPTIONS[key]}" if OWN_OPTIONS[key] else ""))

    def sbatch_options(self) -> list[str]:
        """The options for ``sbatch`` (long form)."""
        out = [f"--partition={self.partition}"] if self.partition else []
        out += [f"--cpus-per-task={self.cpus}"] if self.cpus else []
        out += [f"--gres=gpu:{self.gpus}"] if self.gpus else []
        out += [f"--mem={self.mem}"] if self.mem else []
        out += [f"--time={self.time}"] if self.time else []
        return out + [f"--{item}" for item in self.extra]


def slurm_unavailable() -> str | None:
    """Why Slurm cannot take jobs from here (``sbatch`` not on PATH, the controller not answering), or None."""
    if shutil.which("sbatch") is None:
        return ("sbatch not found on PATH: run this on a Slurm login node (or load the cluster's slurm "
                "module), or use --executor local")
    try:
        answer = subprocess.run(["squeue", "-h", "-j", "0"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"squeue did not answer ({e}); is this a Slurm login node?"
    if answer.returncode != 0 and "invalid job id" not in answer.stderr.lower():
        return f"the Slurm controller does not answer: {_one_line(answer.stderr)}"
    return None


def batch_script(commands: Sequence[Sequence[str]]) -> str:
    """The bash script of the array: task i runs ``commands[i]``; near the time limit it requeues itself."""
    cases = "\n".join(f"  {i}) cmd=({shlex.join(c)}) ;;" for i, c in enumerate(commands))
    return f"""#!/bin/bash
# A job array written by patchforensics: task i runs command i below. Near its time limit
# (SIGUSR1, --signal=B:USR1@{REQUEUE_SIGNAL_S}) a task requeues itself, at most {MAX_REQUEUES} times; a
# requeued or preempted task runs its command again, which resumes from its last checkpoint.
set -u
case "$SLURM_ARRAY_TASK_ID" in
{cases}
  *) echo "no command for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;
esac
if [ -n "${{SLURM_CPUS_PER_TASK:-}}" ]; then export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK; fi
task="${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
requeue() {{
  if [ "${{SLURM_RESTART_COUNT:-0}}" -lt {MAX_REQUEUES} ]; then
    echo "patchforensics: time limit near: requeueing $task (restart ${{SLURM_RESTART_COUNT:-0}})" >&2
    scontrol requeue "$task"
  else
    echo "patchforensics: time limit near and $task was requeued {MAX_REQUEUES} times: not again" >&2
  fi
}}
trap requeue USR1
echo "patchforensics: task $task on $(hostname) (restart ${{SLURM_RESTART_COUNT:-0}}): ${{cmd[*]}}" >&2
"${{cmd[@]}}" &
child=$!
while true; do
  wait "$child"; status=$?
  kill -0 "$child" 2>/dev/null || break     # wait returned for the signal: the command still runs
done
exit "$status"
"""


def submit_array(commands: Sequence[Sequence[str]], cfg: SlurmConfig, folder: Path, name: str,
                 workdir: Path | None = None) -> str:
    """Submit ``commands`` as one job array (task i runs ``commands[i]`` in ``workdir``, default
    the current folder); returns the job id. The script and the tasks' logs
    (``<job>_<task>.out``, appended to over requeues) go to ``folder``, which must be on the file
    system the nodes share. Raises :class:`SlurmError` with sbatch's own words where it refuses."""
    require(bool(commands), "commands", "nothing to submit")
    cfg.validate()
    if (why := slurm_unavailable()) is not None:
        raise SlurmError(why)
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    script = folder / f"{name}-{stamp}.sbatch"
    fileio.write_text(script, batch_script(commands))
    argv = ["sbatch", "--parsable", f"--job-name=pf-{name}", f"--array=0-{len(commands) - 1}",
            f"--output={folder}/%A_%a.out", "--open-mode=append", "--requeue",
            f"--signal=B:USR1@{REQUEUE_SIGNAL_S}", f"--chdir={Path(workdir or Path.cwd()).resolve()}",
            *cfg.sbatch_options(), str(script)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        script.unlink(missing_ok=True)
        raise SlurmError(f"sbatch did not run: {e}") from None
    if done.returncode != 0:
        script.unlink(missing_ok=True)
        raise SlurmError(f"sbatch refused the job: {_one_line(done.stderr) or f'exit status {done.returncode}'}")
    job = done.stdout.strip().split(";")[0]
    fileio.write_text(folder / f"{name}-{stamp}.job", f"{job}\n# submitted with: {shlex.join(argv)}\n")
    return job


def task_states(job: str) -> dict[int, str]:
    """``task index -> state`` as ``squeue`` knows them (pending, running and, for ``MinJobAge``
    seconds, finished tasks); ``{}`` once it has forgotten the job. Raises :class:`SlurmError`
    when ``squeue`` fails otherwise (the controller is down)."""
    done = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", job, "-o", "%K|%T"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        if "invalid job id" in done.stderr.lower():
            return {}
        raise SlurmError(f"squeue failed: {_one_line(done.stderr)}")
    states = {}
    for line in done.stdout.split():
        index, _, state = line.partition("|")
        if index.isdigit():
            states[int(index)] = state
    return states


def wait_for_job(job: str, tasks: int, done: Callable[[], bool] | None = None, poll_s: float = 30.0,
                 progress: bool = True) -> dict[int, str]:
    """Wait until no task of ``job`` will run again (each is in a final state, or ``squeue`` no
    longer lists it) or ``done()`` says every result is there; returns the last states seen
    (task index -> state; a task ``squeue`` had forgotten is missing). ``squeue`` is asked after
    1 s, then less and less often, at most every ``poll_s`` seconds (a busy controller is not
    flooded). A failing ``squeue`` is retried for 10 minutes (a controller restart), then
    :class:`SlurmError`."""
    from tqdm import tqdm

    states: dict[int, str] = {}
    failing_since = None
    pause = 1.0
    with tqdm(total=tasks, desc=f"job {job}", unit="task", disable=not progress) as bar:
        while True:
            try:
                states = task_states(job)
                failing_since = None
            except (SlurmError, OSError, subprocess.TimeoutExpired):
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > 600:
                    raise
                time.sleep(poll_s)
                continue
            ended = tasks - sum(s not in FINAL_STATES for s in states.values())
            bar.update(ended - bar.n)
            bar.set_postfix_str(", ".join(f"{n} {s.lower()}" for s, n in sorted(_count(states).items())))
            if ended >= tasks or (done is not None and done()):
                return states
            time.sleep(pause)
            pause = min(poll_s, pause * 1.5)


def _count(states: dict[int, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for state in states.values():
        out[state] = out.get(state, 0) + 1
    return out


def _one_line(text: str) -> str:
    """Slurm's messages as one line (``sbatch: error: ...`` prefixes dropped, repeats joined)."""
    lines = [re.sub(r"^s\w+: (error|fatal): ", "", line.strip()) for line in text.strip().splitlines()]
    return "; ".join(dict.fromkeys(line for line in lines if line))
