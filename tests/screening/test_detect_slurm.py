"""``detect --executor slurm --shards 2 --wait`` on a real one-node Slurm cluster (tests/slurm_cluster.py):
the merged output of the 2-task array equals one local run's."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import REPO, mixed_photos
from patchforensics.cli import main
from slurm_cluster import slurm  # noqa: F401  (the session's one-node cluster)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A few shared test faces (real and fake), one wild portrait and an unreadable file."""
    return mixed_photos(tmp_path_factory.mktemp("slurm_detect") / "photos", 2, 2)


def rows(folder: Path) -> list[dict]:
    found = json.loads((folder / "detect.json").read_text())["results"]
    for row in found:                                  # heatmap files are named alike, in each run's folder
        row["heatmap"] = row["heatmap"] and Path(row["heatmap"]).name
    return found


def test_two_shards_on_slurm_merge_into_one_runs_rows(photos, tmp_path, slurm, monkeypatch, capsys):
    assert main(["detect", str(photos), "--out", str(tmp_path / "local"), "--heatmaps", str(tmp_path / "heat1")]) == 0
    capsys.readouterr()
    for name in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(name, slurm[name])
    monkeypatch.setenv("PYTHONPATH", str(REPO / "src"))
    out = tmp_path / "cluster"
    assert main(["detect", str(photos), "--out", str(out), "--heatmaps", str(tmp_path / "heat2"),
                 "--executor", "slurm", "--shards", "2", "--slurm-cpus", "1", "--wait", "--format", "json"]) == 0
    printed = capsys.readouterr()
    job = re.search(r"submitted job (\d+): 2 array tasks", printed.err).group(1)
    assert json.loads(printed.out)["results"]                  # stdout is the merged result alone
    logs = sorted(p.name for p in (out / "shards").glob(f"{job}_*.out"))
    assert logs == [f"{job}_0.out", f"{job}_1.out"]
    assert sorted(p.name for p in (out / "shards").iterdir() if p.is_dir()) == ["1-of-2", "2-of-2"]
    assert rows(out) == rows(tmp_path / "local")
    assert {r["status"] for r in rows(out)} == {"scored", "skipped"}
    heat = {d: sorted(p.name for p in (tmp_path / d).iterdir()) for d in ("heat1", "heat2")}
    assert heat["heat2"] == heat["heat1"] and heat["heat1"]
    for name in heat["heat1"]:
        assert (tmp_path / "heat2" / name).read_bytes() == (tmp_path / "heat1" / name).read_bytes()


def test_slurm_detect_needs_out_and_shards(photos, tmp_path, capsys):
    for args, words in ((["--shards", "2"], "--executor slurm"),
                        (["--executor", "slurm"], "--shards N"),
                        (["--executor", "slurm", "--shards", "2"], "--out DIR")):
        assert main(["detect", str(photos), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
