"""``detect --shard K/N`` and ``detect --merge``: two shards merged give what one run gives."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import mixed_photos
from patchforensics.cli import main
from patchforensics.screening.shards import SHARD_FILE, parse_shard, shard_indices


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder of a few shared test faces (real and fake), one wild portrait (found faces) and
    an unreadable file, so that rows of every status are split over the shards."""
    return mixed_photos(tmp_path_factory.mktemp("shard_inputs") / "photos", 3, 2)


@pytest.fixture(scope="module")
def runs(photos, tmp_path_factory):
    """One run over ``photos``, its two shards and their merge, each with heatmaps and a report."""
    root = tmp_path_factory.mktemp("shard_runs")

    def outputs(name: str) -> list[str]:
        return ["--out", str(root / name), "--heatmaps", str(root / name / "heat"),
                "--report", str(root / f"{name}.html")]

    assert main(["detect", str(photos), *outputs("single")]) == 0
    for k in (1, 2):
        assert main(["detect", str(photos), "--shard", f"{k}/2", *outputs(f"shard{k}")]) == 0
    assert main(["detect", "--merge", str(root / "shard1"), str(root / "shard2"), *outputs("merged")]) == 0
    return root


def _rows(folder: Path) -> list[dict]:
    rows = json.loads((folder / "detect.json").read_text())["results"]
    for row in rows:                                   # heatmap files are named alike, in each run's folder
        row["heatmap"] = row["heatmap"] and Path(row["heatmap"]).name
    return rows


def test_shard_split_is_every_nth_input():
    assert shard_indices(7, 1, 3) == [0, 3, 6] and shard_indices(7, 3, 3) == [2, 5]
    assert sorted(i for k in (1, 2, 3) for i in shard_indices(10, k, 3)) == list(range(10))
    assert parse_shard("2/4") == (2, 4)


def test_two_shards_merged_equal_one_run(runs):
    single, merged = _rows(runs / "single"), _rows(runs / "merged")
    shard1 = _rows(runs / "shard1")
    order = [row["path"] for row in single]
    assert len(order) == 7 and [r["path"] for r in shard1] == order[0::2]      # i mod 2 == 0: shard 1
    assert {r["status"] for r in single} == {"scored", "skipped"}
    assert merged == single
    one, joined = (json.loads((runs / d / "detect.json").read_text()) for d in ("single", "merged"))
    assert joined["skipped"] == one["skipped"] and joined["model"] == one["model"]
    csv_of = {d: re.sub(r"[^,\n]*/heat/", "", (runs / d / "detect.csv").read_text()) for d in ("single", "merged")}
    assert csv_of["merged"] == csv_of["single"]
    heat = {d: sorted(p.name for p in (runs / d / "heat").iterdir()) for d in ("single", "merged")}
    assert heat["merged"] == heat["single"] and len(heat["single"]) >= 6
    for name in heat["single"]:
        assert (runs / "merged" / "heat" / name).read_bytes() == (runs / "single" / "heat" / name).read_bytes()
    page = {d: (runs / f"{d}.html").read_text() for d in ("single", "merged")}
    assert page["merged"] == page["single"]                     # the same cards, sorted alike, the same summary


def test_merge_refuses_a_missing_a_doubled_or_a_foreign_shard(runs, photos, tmp_path, capsys):
    def merge(*shards: str) -> str:
        assert main(["detect", "--merge", *map(str, shards), "--out", str(tmp_path / "m")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and not (tmp_path / "m").exists()
        return err

    assert "shard 2/2 missing" in merge(runs / "shard1")
    assert "are both shard 1/2" in merge(runs / "shard1", runs / "shard1", runs / "shard2")
    other = tmp_path / "other"
    assert main(["detect", str(photos), "--shard", "2/2", "--top-k", "1", "--out", str(other)]) == 0
    capsys.readouterr()
    assert "top_k=1 vs 3" in merge(runs / "shard1", other)
    assert f"no {SHARD_FILE}" in merge(runs / "shard1", tmp_path)
    assert main(["detect", str(photos), "--shard", "3/2", "--out", str(other)]) == 2
    assert "1 <= K <= N" in capsys.readouterr().err
    assert main(["detect", str(photos), "--shard", "1/2"]) == 2
    assert "needs --out" in capsys.readouterr().err
