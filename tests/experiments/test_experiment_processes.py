"""``experiment`` beside other processes and committed rows: a worker with nothing left, torchrun,
conflicting ``findings --add`` rows, and one key never holding rows of two trainings."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from patchforensics.cli import main
from patchforensics.experiments import runner
from patchforensics.experiments.grid import load_grid
from patchforensics.experiments.results_tables import CELL_COLUMNS, CURVE_COLUMNS
from test_experiment import MODELS, tiny_data, write_grid  # noqa: F401 (tiny_data: the fixture)

from conftest import REPO  # noqa: E402
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def grid_file(folder: Path, data: Path, models=MODELS[:1], corruptions=([],), **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_grid(folder, data, vary={"model": list(models)}, corruptions=[list(c) for c in corruptions],
                      **changes)


@pytest.fixture(scope="module")
def committed(tmp_path_factory, tiny_data) -> dict[str, Path]:
    """One cell (widenet_kw3_d1, 1 epoch) trained into ``out`` and its clean rows in ``findings``."""
    root = tmp_path_factory.mktemp("committed")
    findings = root / "findings"
    findings.mkdir()
    grid = grid_file(root / "clean", tiny_data)
    assert main(["experiment", str(grid), "--out", str(root / "out"), "--findings", str(findings)]) == 0
    return {"root": root, "out": root / "out", "findings": findings}


def copy_findings(committed, dest: Path) -> Path:
    shutil.copytree(committed["findings"], dest, ignore=shutil.ignore_patterns("*.lock", "generated"))
    return dest


def plan(capsys, grid: Path, out: Path, findings: Path) -> list[dict]:
    capsys.readouterr()
    assert main(["experiment", str(grid), "--out", str(out), "--findings", str(findings), "--plan"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_a_process_that_finds_every_cell_left_held_by_another_exits_0_naming_them(
        committed, tiny_data, tmp_path, monkeypatch, capsys):
    grid = grid_file(tmp_path / "g", tiny_data, models=MODELS)        # cell 1 in the table, cell 2 not
    findings, out = copy_findings(committed, tmp_path / "findings"), tmp_path / "out"
    other = load_grid(grid, out=out).cells[1]
    lock = Path(other.train.checkpoints_dir) / f"{other.train.name}.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from patchforensics.core import fileio; "
                               "assert fileio.try_lock(sys.argv[1]) is not None; print('held', flush=True); "
                               "time.sleep(120)", str(lock)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(runner, "train", lambda *a, **k: pytest.fail("a held cell was trained"))
        assert main(["experiment", str(grid), "--out", str(out), "--findings", str(findings)]) == 0
        err = capsys.readouterr().err
        assert f"nothing left for this process: 1 cell(s) held by other processes sharing {out} " \
               f"({other.name} (pid {holder.pid}))" in err
        assert not (out / "results" / "experiment-tiny").exists()       # the process finishing the last writes it
    finally:
        holder.kill()
        holder.wait()


def test_torchrun_is_refused_before_any_work(tiny_data, tmp_path, monkeypatch, capsys):
    grid = grid_file(tmp_path / "g", tiny_data)
    out = tmp_path / "out"
    torchrun = Path(sys.executable).parent / "torchrun"
    done = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "patchforensics",
                           "experiment", str(grid), "--out", str(out)], env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0                       # (the first rank to stop may end the other before it says so)
    assert "patchforensics experiment: error: torchrun: experiment is one process per cell, not a torchrun job " \
           "(WORLD_SIZE=2" in done.stderr
    assert not out.exists()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert main(["experiment", str(grid), "--out", str(out), "--plan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers N" in err[0] and "--executor slurm" in err[0]


def test_conflicting_add_rows_are_refused_naming_the_key_and_replaced_with_replace(tmp_path, capsys):
    def write(folder: Path, name: str, columns, table: list[dict]) -> None:
        folder.mkdir(exist_ok=True)
        with open(folder / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows({**dict.fromkeys(columns, ""), **row} for row in table)

    def cell(key: str, test: str, ap: str) -> dict:
        return {"key": key, "model": "xception", "test_set": test, "test_data": "6:abc", "corruption": "none",
                "aggregation": "vote", "ap": ap, "epochs": "24", "train_minutes": "2"}

    mine, theirs = tmp_path / "committed", tmp_path / "theirs"
    write(mine, "cells.csv", CELL_COLUMNS, [cell("k1", "a", "0.9"), cell("k1", "b", "0.8"), cell("k2", "a", "0.7")])
    write(mine, "curves.csv", CURVE_COLUMNS, [{"key": "k1", "epoch": "1", "val": "0.5"},
                                             {"key": "k1", "epoch": "2", "val": "0.6"}])
    write(theirs, "cells.csv", CELL_COLUMNS, [cell("k1", "a", "0.95"), cell("k3", "a", "0.6")])
    write(theirs, "curves.csv", CURVE_COLUMNS, [{"key": "k1", "epoch": "1", "val": "0.55"}])
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    command = ["findings", str(mine), "--grid", "findings-rf", "--add", str(theirs)]
    assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--add {theirs}: key k1 holds rows of another training" in err[0]
    assert "ap 0.95 vs committed 0.9" in err[0] and "--replace" in err[0]
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before      # nothing merged
    assert main([*command, "--replace"]) == 0
    assert "(every row of key k1 replaced)" in capsys.readouterr().out
    cells = {(r["key"], r["test_set"]): r["ap"] for r in rows(mine / "cells.csv")}
    assert cells == {("k1", "a"): "0.95", ("k2", "a"): "0.7", ("k3", "a"): "0.6"}    # k1's "b" row went too
    assert [(r["key"], r["epoch"], r["val"]) for r in rows(mine / "curves.csv")] == [("k1", "1", "0.55")]
    assert main(command) == 0                                   # the same rows again: nothing to add, no conflict
    assert "0 rows added to cells.csv" in capsys.readouterr().out


def test_plan_says_what_a_partly_committed_cell_needs_and_how_long_it_trains(committed, tiny_data, tmp_path, capsys):
    both = grid_file(tmp_path / "both", tiny_data, corruptions=([], ["jpeg:75"]))
    (minutes,) = {r["train_minutes"] for r in rows(committed["findings"] / "cells.csv")}
    line = plan(capsys, both, committed["out"], committed["findings"])[0]
    assert (line["state"], line["est_minutes"], line["est_source"]) == ("missing tests", float(minutes), "table")
    assert plan(capsys, both, tmp_path / "elsewhere", committed["findings"])[0]["state"] == "retrain"   # no checkpoint
    other = copy_findings(committed, tmp_path / "other-training")
    text = (other / "cells.csv").read_text()
    (best_val,) = {r["best_val"] for r in rows(other / "cells.csv")}
    (other / "cells.csv").write_text(text.replace(f",{best_val},", ",0.123,"))
    assert plan(capsys, both, committed["out"], other)[0]["state"] == "retest"           # its checkpoint: not that one
    longer = grid_file(tmp_path / "longer", tiny_data, base__max_epochs=4)        # another key, same model
    line = plan(capsys, longer, tmp_path / "elsewhere", committed["findings"])[0]
    assert (line["state"], line["est_minutes"], line["est_source"]) == ("to run", round(4 * float(minutes), 2),
                                                                         "model")
    kw7 = grid_file(tmp_path / "kw7", tiny_data, models=MODELS[1:])             # no row of its model
    line = plan(capsys, kw7, tmp_path / "elsewhere", committed["findings"])[0]
    assert (line["est_minutes"], line["est_source"]) == (None, None)


def test_missing_tests_run_on_the_checkpoint_at_hand_else_the_key_is_retrained_whole(
        committed, tiny_data, tmp_path, monkeypatch, capsys):
    both = grid_file(tmp_path / "both", tiny_data, corruptions=([], ["jpeg:75"]))
    clean = rows(committed["findings"] / "cells.csv")
    # the checkpoint is at hand: only the jpeg:75 tests run, their rows are appended beside the clean ones
    findings, out = copy_findings(committed, tmp_path / "findings"), tmp_path / "out"
    shutil.copytree(committed["out"], out, symlinks=True)
    with monkeypatch.context() as m:
        m.setattr(runner, "train", lambda *a, **k: pytest.fail("the cell was trained again"))
        assert main(["experiment", str(both), "--out", str(out), "--findings", str(findings)]) == 0
    assert "(missing tests: only the tests its committed rows lack run" in capsys.readouterr().err
    now = rows(findings / "cells.csv")
    assert len(now) == 2 * len(clean) and now[:len(clean)] == clean
    assert {r["corruption"] for r in now[len(clean):]} == {"jpeg:75"}
    assert {(r["best_epoch"], r["best_val"]) for r in now} == {(clean[0]["best_epoch"], clean[0]["best_val"])}
    # only the table's rows: trained again, and every row of the key (cells, curves) is the new training's
    findings = copy_findings(committed, tmp_path / "findings-only")
    assert main(["experiment", str(both), "--out", str(tmp_path / "fresh"), "--findings", str(findings)]) == 0
    err = capsys.readouterr().err
    assert "(retrain: its committed rows are of a training not at hand" in err
    assert f"rows of key {clean[0]['key']} replaced in {findings}" in err
    now = rows(findings / "cells.csv")
    assert len(now) == 2 * len(clean) and {r["key"] for r in now} == {clean[0]["key"]}
    assert len({r["finished"] for r in now}) == 1 and now[0]["finished"] != clean[0]["finished"]
    record = json.loads(next((tmp_path / "fresh" / "cells" / "tiny").glob("*.json")).read_text())
    assert [r["seconds"] for r in rows(findings / "curves.csv")] == [f"{h['seconds']:.6g}" for h in record["history"]]
