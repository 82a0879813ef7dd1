"""``experiment --executor slurm`` and ``--cell`` on a real one-node Slurm cluster (tests/slurm_cluster.py):
a 2-cell grid as one job array gives the rows of a local run, a requeued task resumes its cell,
and bad input (unknown cell, bad partition, no sbatch) is one line with nothing submitted."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from patchforensics.cli import main
from slurm_cluster import slurm  # noqa: F401  (the session's one-node cluster)

CELLS = ("seed-0", "seed-1")


@pytest.fixture(scope="module")
def data(tmp_path_factory, faces) -> Path:
    """FFHQ reals vs generated.photos fakes: 16 train, 6 val and 10 test images each, symlinked."""
    root = tmp_path_factory.mktemp("slurm_faces")
    for src in ("ffhq", "generated-photos"):
        for split, n in {"train": 16, "val": 6, "test": 10}.items():
            d = root / src / split
            d.mkdir(parents=True)
            for p in sorted((faces / src / split).glob("*.png"))[:n]:
                (d / p.name).symlink_to(p)
    (root / "suite.yaml").write_text(yaml.safe_dump({"name": "tiny", "datasets": [
        {"name": "generated-photos", "real": "ffhq", "fake": "generated-photos"}]}))
    return root


def write_grid(folder: Path, data: Path, **base) -> Path:
    """2 cells (seeds 0 and 1) of a tiny patch model, 1 epoch, in fp32 (``bf16: off``) on one thread
    (as the tasks' --slurm-cpus 1): the rows of two runs match exactly."""
    spec = {"name": "tiny", "data_root": str(data),
            "base": {"real": ["ffhq"], "fake": ["generated-photos"], "model": "widenet_kw3_d1", "max_epochs": 1,
                     "batch_size": 8, "save_latest_freq": 1, "cache_mb": 0, "bf16": "off", "threads": 1,
                     **base},
            "vary": {"seed": [0, 1]}, "suites": [str(data / "suite.yaml")], "corruptions": [[], ["jpeg:75"]]}
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def rows(csv_path: Path) -> dict[tuple, tuple[float, float]]:
    """(key, test set, corruption, aggregation) -> (AP, ROC-AUC) of a table (6 significant digits)."""
    with open(csv_path, newline="") as f:
        return {(r["key"], r["test_set"], r["corruption"], r["aggregation"]): (float(r["ap"]), float(r["roc_auc"]))
                for r in csv.DictReader(f)}


def scores(out: Path) -> dict[tuple, tuple[float, float]]:
    """(cell, test set, corruption, aggregation) -> (AP, ROC-AUC) from the cell records (full precision)."""
    found = {}
    for record in (out / "cells" / "tiny").glob("*.json"):
        cell = json.loads(record.read_text())
        for r in cell["rows"]:
            found[(cell["cell"], r["dataset"], r["corruption"], r["aggregation"])] = (r["ap"], r["roc_auc"])
    return found


def same_rows(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(x == pytest.approx(b[k], rel=1e-5) for k, x in a.items())


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, data) -> Path:
    """The ``--out`` folder of a plain local run of the tiny grid."""
    folder = tmp_path_factory.mktemp("local_run")
    assert main(["experiment", str(write_grid(folder, data)), "--out", str(folder / "exp")]) == 0
    return folder / "exp"


@pytest.fixture
def on_cluster(slurm, monkeypatch):
    """This process talks to the test cluster; its jobs import this checkout."""
    for name in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(name, slurm[name])
    monkeypatch.setenv("PYTHONPATH", str(REPO / "src"))
    return slurm


def jobs() -> list[str]:
    """Every job (array task) squeue knows, in every state, sorted: squeue's own order varies."""
    return sorted(subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True,
                                 text=True).stdout.split())


def submitted_job(stdout: str) -> str:
    found = re.search(r"submitted job (\d+)", stdout)
    assert found, stdout
    return found.group(1)


def test_a_grid_as_one_job_array_gives_the_rows_of_a_local_run(tmp_path, data, local_run, on_cluster, capsys):
    grid, out, findings = write_grid(tmp_path, data), tmp_path / "exp", tmp_path / "findings"
    assert main(["experiment", str(grid), "--out", str(out), "--findings", str(findings),
                 "--executor", "slurm", "--slurm-cpus", "1", "--slurm-time", "10", "--wait"]) == 0
    printed = capsys.readouterr().out
    job = submitted_job(printed)
    assert "2 array tasks" in printed and "2 cells" in printed
    # both cells were tasks of that one array, each ran exactly its own cell
    logs = sorted((out / "slurm" / "tiny").glob(f"{job}_*.out"))
    assert [p.name for p in logs] == [f"{job}_0.out", f"{job}_1.out"]
    for log, cell in zip(logs, CELLS):
        text = log.read_text()
        assert f"cell {cell} (" in text and "rows added" not in text       # tasks append to no table
    tasks = json.loads((out / "slurm" / "tiny" / f"{job}.json").read_text())["tasks"]
    assert [t["cell"] for t in tasks] == list(CELLS)
    # the scores are the local run's, exactly (fp32, one thread), and so are the rows of the findings
    # tables the submitter wrote and of the grid's table
    assert scores(out) == scores(local_run)
    local_table = rows(local_run / "results" / "experiment-tiny" / "table.csv")
    assert same_rows(rows(findings / "cells.csv"), local_table)
    assert same_rows(rows(out / "results" / "experiment-tiny" / "table.csv"), local_table)
    # submitting again finds nothing to run
    before = jobs()
    assert main(["experiment", str(grid), "--out", str(out), "--findings", str(findings), "--executor", "slurm"]) == 0
    assert "nothing to submit" in capsys.readouterr().out
    assert jobs() == before


def test_one_cell_by_hand_then_collect(tmp_path, data, local_run, capsys):
    grid, out = write_grid(tmp_path, data), tmp_path / "exp"
    plan = [json.loads(line) for line in _plan(grid, out, capsys)]
    assert main(["experiment", str(grid), "--out", str(out), "--cell", plan[0]["key"]]) == 0
    assert f"record {out / 'cells' / 'tiny' / CELLS[0]}.json" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "cells" / "tiny").iterdir()) == [f"{CELLS[0]}.json"]
    assert not (out / "results" / "experiment-tiny").exists()        # --cell writes no table
    # --collect names what is missing, then (the other cell by its name) collects both
    assert main(["experiment", str(grid), "--out", str(out), "--collect"]) == 1
    assert CELLS[1] in capsys.readouterr().err
    assert main(["experiment", str(grid), "--out", str(out), "--cell", CELLS[1]]) == 0
    assert main(["experiment", str(grid), "--out", str(out), "--collect"]) == 0
    assert scores(out) == scores(local_run)
    assert same_rows(rows(out / "results" / "experiment-tiny" / "table.csv"),
                     rows(local_run / "results" / "experiment-tiny" / "table.csv"))
    # a finished cell is not run again
    assert main(["experiment", str(grid), "--out", str(out), "--cell", CELLS[1]]) == 0
    assert "finished already" in capsys.readouterr().err


def _plan(grid: Path, out: Path, capsys) -> list[str]:
    assert main(["experiment", str(grid), "--out", str(out), "--plan"]) == 0
    return capsys.readouterr().out.splitlines()


def test_a_requeued_task_resumes_its_cell(tmp_path, data, on_cluster, capsys):
    from patchforensics.core.cluster import wait_for_job

    grid, out = write_grid(tmp_path, data, max_epochs=3), tmp_path / "exp"
    assert main(["experiment", str(grid), "--out", str(out), "--executor", "slurm", "--cell", CELLS[0]]) == 0
    job = submitted_job(capsys.readouterr().out)
    deadline = time.time() + 120
    while not list(out.glob("checkpoints/*/resume.safetensors")) and time.time() < deadline:
        time.sleep(0.1)
    # what Slurm sends before the time limit (--signal=B:USR1): the task requeues itself
    subprocess.run(["scancel", "--batch", "--signal=USR1", f"{job}_0"], check=True)
    # submitting again meanwhile puts no second task on the cell
    before = jobs()
    assert main(["experiment", str(grid), "--out", str(out), "--executor", "slurm", "--cell", CELLS[0]]) == 0
    assert f"{CELLS[0]} (task {job}_0)" in capsys.readouterr().out and jobs() == before
    states = wait_for_job(job, 1, poll_s=1, progress=False)
    assert states == {0: "COMPLETED"}
    log = (out / "slurm" / "tiny" / f"{job}_0.out").read_text()
    assert "requeueing" in log and "(restart 1)" in log, log[-3000:]
    assert "resuming widenet_kw3_d1" in log or "trained already" in log, log[-3000:]
    (ckpt,) = (out / "checkpoints").glob("widenet_kw3_d1_*_seed0_*/train_summary.json")
    summary = json.loads(ckpt.read_text())
    assert summary["status"] == "finished" and len(summary["history"]) == 3
    assert (out / "cells" / "tiny" / f"{CELLS[0]}.json").is_file()


def test_a_task_that_fails_is_named_with_its_state_and_log(tmp_path, data, on_cluster):
    from patchforensics.core.cluster import SlurmConfig, submit_array
    from patchforensics.experiments.runner import ExperimentConfig, ExperimentIncomplete
    from patchforensics.experiments.slurm import Submission, wait_and_collect

    job = submit_array([["false"], ["true"]], SlurmConfig(), tmp_path / "logs", "fails")
    cfg = ExperimentConfig(str(write_grid(tmp_path, data)), out=str(tmp_path / "exp"))
    with pytest.raises(ExperimentIncomplete) as failed:
        wait_and_collect(cfg, Submission(job, {job: 2}, [(job, 0, CELLS[0])], tmp_path / "logs"), progress=False)
    assert f"{CELLS[0]}: task {job}_0 failed, log {tmp_path / 'logs' / f'{job}_0.out'}" in str(failed.value)


def test_bad_input_is_one_line_and_nothing_is_submitted(tmp_path, data, on_cluster, capsys):
    grid, out = write_grid(tmp_path, data), tmp_path / "exp"
    before = jobs()
    for extra, words in ((["--slurm-partition", "nope"], "invalid partition"),
                         (["--cell", "0123456789ab"], "--plan"),
                         (["--slurm-extra", "array=0-3"], "array is set by patchforensics"),
                         (["--workers", "2"], "the array is the parallelism")):
        assert main(["experiment", str(grid), "--out", str(out), "--executor", "slurm", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert jobs() == before
    assert not list(out.glob("cells/tiny/*.json"))


def test_no_sbatch_is_one_line(tmp_path, data, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))         # no Slurm commands here
    assert main(["experiment", str(write_grid(tmp_path, data)), "--out", str(tmp_path / "exp"),
                 "--executor", "slurm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sbatch not found on PATH" in err[0], err
    assert not (tmp_path / "exp").exists()
