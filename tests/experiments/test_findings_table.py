"""The committed findings tables: portable cell keys, the GPU script at a tiny size on the CPU,
and a second checkout that finds every cell in the table and trains nothing.

One tiny grid (2 cells, 1 epoch, a few dozen real faces) runs once, through
``scripts/device_grid.sh`` as it would run on a lent GPU: from 256-px JPEGs rebuilt into
128-px PNGs (checked pixel by pixel against the shared faces128), with the region
histograms left for the CPU. A second checkout (another folder, the data under another
absolute path, no checkpoint) then merges the rows, computes only the missing regions from
the weights the script sent back, and after that trains and tests nothing at all.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from patchforensics.cli import main
from patchforensics.core.config import ConfigError
from patchforensics.experiments import runner
from patchforensics.experiments.grid import load_grid
from patchforensics.experiments.results_tables import CELL_COLUMNS

from conftest import REPO  # noqa: E402
SHARED = REPO.parent / "shared" / "data"
COUNTS = {"train": 8, "val": 4, "test": 6}
#: faces256 folder -> the faces128 folder it becomes (the "140k" FFHQ reals join ffhq at 128 px)
FOLDERS = {"ffhq": "ffhq", "ffhq-140k": "ffhq", "generated-photos": "generated-photos", "stylegan1": "stylegan1"}
MODELS = ("widenet_kw3_d1", "widenet_kw7_d1")


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """The same few images twice: as faces256 JPEGs (the GPU script's input, with a data README)
    and as the shared faces128 PNGs under another root; a grid file and suite beside them."""
    root = tmp_path_factory.mktemp("tiny_findings")
    src256, faces128 = root / "carried" / "faces256", root / "shared" / "faces128"
    for folder256, folder128 in FOLDERS.items():
        for split, n in COUNTS.items():
            for jpg in sorted((SHARED / "faces256" / folder256 / split).glob("*.jpg"))[:n]:
                for link, target in ((src256 / folder256 / split / jpg.name, jpg),
                                     (faces128 / folder128 / split / f"{jpg.stem}.png",
                                      SHARED / "faces128" / folder128 / split / f"{jpg.stem}.png")):
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(target)
    (root / "carried" / "README.md").write_text("# faces\n\nVersion 9.1 (a test release).\n")
    grids = root / "grids"
    grids.mkdir()
    (grids / "tiny-suite.yaml").write_text(yaml.safe_dump({"name": "tiny", "datasets": [
        {"name": "generated-photos", "real": "ffhq", "fake": "generated-photos"},
        {"name": "stylegan1", "real": "ffhq", "fake": "stylegan1"}]}))
    (grids / "tiny-findings.yaml").write_text(yaml.safe_dump({
        "name": "tiny-findings",
        "base": {"real": ["ffhq"], "fake": ["generated-photos"], "max_epochs": 1, "batch_size": 8, "cache_mb": 0,
                 "fine_size": 128, "random_crop": False, "bf16": "off"},
        "vary": {"model": list(MODELS)},
        "suites": ["tiny-suite.yaml"],
        "regions": {"models": [MODELS[1]], "seeds": [0], "topn": 4}}))
    return {"root": root, "src256": src256, "faces128": faces128, "grid": grids / "tiny-findings.yaml"}


@pytest.fixture(scope="module")
def device_run(tiny) -> Path:
    """``scripts/device_grid.sh run`` on the tiny data, on the CPU, from an empty committed table."""
    committed = tiny["root"] / "committed"
    committed.mkdir()
    out = tiny["root"] / "device-out"
    scratch = tiny["root"] / "scratch"             # the script's work folder (data, checkpoints)
    scratch.mkdir()
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO / "src"), "TMPDIR": str(scratch)}
    done = subprocess.run(["bash", str(REPO / "scripts" / "device_grid.sh"), "run", "--device", "cpu",
                           "--workers", "1", "--minutes", "5", "--grids", str(tiny["grid"]),
                           "--src", str(tiny["src256"]), "--subset", "--findings", str(committed), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_cell_keys_do_not_depend_on_where_the_data_or_checkout_is(tiny, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere" / "faces"
    other.parent.mkdir()
    other.symlink_to(tiny["faces128"])
    monkeypatch.chdir(tmp_path)
    here = load_grid(tiny["grid"], data_root=tiny["faces128"], out=tmp_path / "a")
    there = load_grid(tiny["grid"], data_root=other, out=tmp_path / "b")
    assert [c.key for c in here.cells] == [c.key for c in there.cells]
    assert [c.train.name for c in here.cells] == [c.train.name for c in there.cells]
    assert here.test_data == there.test_data
    assert str(tiny["faces128"]) not in json.dumps([c.key for c in here.cells])
    # what is trained changes the key: another length, or other training images
    longer = load_grid(tiny["grid"], ["base.max_epochs=2"], data_root=tiny["faces128"])
    assert not {c.key for c in longer.cells} & {c.key for c in here.cells}
    fewer = tmp_path / "fewer"
    shutil.copytree(tiny["faces128"], fewer, symlinks=True)
    next((fewer / "ffhq" / "train").iterdir()).unlink()
    assert not {c.key for c in load_grid(tiny["grid"], data_root=fewer).cells} & {c.key for c in here.cells}


def test_device_script_rebuilds_the_data_and_returns_whole_cells(device_run, tiny):
    log = (device_run / "log.txt").read_text()
    n_images = sum(COUNTS.values()) * len(FOLDERS)
    assert f"faces128 rebuilt: {n_images} images, {n_images} pixel-identical" in log
    assert sorted(p.name for p in device_run.iterdir()) == ["cells.csv", "curves.csv", "log.txt",
                                                            "region-checkpoints.tar"]
    cells = rows(device_run / "cells.csv")
    # 2 cells x 2 test sets x 1 corruption x 4 aggregations, each with its provenance
    assert len(cells) == 16
    assert {r["model"] for r in cells} == set(MODELS)
    assert {(r["crop"], r["epochs"], r["precision"], r["data_version"]) for r in cells} == \
        {("whole", "1", "fp32", "9.1")}
    assert all(r["device"].startswith("cpu") and r["commit"] and r["train_data"] and r["test_data"] for r in cells)
    assert {r["relation"] for r in cells if r["test_set"] == "stylegan1"} == {"unseen"}
    curves = rows(device_run / "curves.csv")
    assert len(curves) == 2 and all(0 <= float(r["val_ap_after_softmax"]) <= 1 for r in curves)
    # the regions (mediapipe) are left for the CPU: the weights of the cell that wants them come back
    with tarfile.open(device_run / "region-checkpoints.tar") as tar:
        names = tar.getnames()
    assert {Path(n).parts[0] for n in names} == {next(c["checkpoint"] for c in map(json.loads, plan_lines(
        tiny, device_run)) if c["regions"])}
    assert any(n.endswith("bestval.safetensors") for n in names)
    assert not any(n.endswith(("resume.safetensors", "latest.safetensors")) for n in names)


def plan_lines(tiny, findings: Path) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "patchforensics", "experiment", str(tiny["grid"]), "--data-root",
                           str(tiny["faces128"]), "--out", str(tiny["root"] / "plan-out"), "--findings", str(findings),
                           "--plan"], env={**os.environ, "PYTHONPATH": str(REPO / "src")},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_a_second_checkout_trains_nothing_the_table_holds(device_run, tiny, tmp_path, monkeypatch, capsys):
    # a fresh clone elsewhere: the committed (empty) tables, plus the rows the GPU call returned
    clone = tmp_path / "clone"
    findings = clone / "docs" / "findings"
    findings.mkdir(parents=True)
    data = tmp_path / "data-elsewhere"
    data.symlink_to(tiny["faces128"])
    monkeypatch.chdir(clone)
    assert main(["findings", str(findings), "--grid", str(tiny["grid"]), "--add", str(device_run)]) == 0
    assert "16 rows added to cells.csv" in capsys.readouterr().out
    before = (findings / "cells.csv").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a cell in the table was trained again")

    monkeypatch.setattr(runner, "train", no_training)
    # the cell that wants regions gets them from the weights sent back: no training, no testing
    out = clone / "exp"
    (out / "checkpoints").mkdir(parents=True)
    with tarfile.open(device_run / "region-checkpoints.tar") as tar:
        tar.extractall(out / "checkpoints", filter="data")
    common = ["experiment", str(tiny["grid"]), "--data-root", str(data), "--findings", str(findings)]
    assert main([*common, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 finished" in err and "1 to run" in err and "trained already" in err
    assert (findings / "cells.csv").read_text() == before          # its rows were not tested again
    assert {r["test_set"] for r in rows(findings / "regions.csv")} == {"generated-photos", "stylegan1"}

    # from now on the whole grid is in the table: a third folder without any checkpoint runs nothing
    empty = clone / "exp-empty"
    assert main([*common, "--out", str(empty)]) == 0
    assert "2 finished" in capsys.readouterr().err
    assert not [p for p in (empty / "checkpoints").rglob("*") if p.is_file()]
    assert [json.loads(line)["state"] for line in plan_lines(tiny, findings)] == ["in table", "in table"]
    table = rows(empty / "results" / "experiment-tiny-findings" / "table.csv")
    assert sorted((r["key"], r["test_set"], r["aggregation"], r["ap"]) for r in table) == \
        sorted((r["key"], r["test_set"], r["aggregation"], r["ap"]) for r in rows(findings / "cells.csv"))


def test_findings_regenerate_from_the_committed_tables_alone(device_run, tiny, tmp_path, capsys):
    findings = tmp_path / "findings"
    shutil.copytree(device_run, findings, ignore=shutil.ignore_patterns("*.txt", "*.tar"))
    doc = tmp_path / "doc.md"
    doc.write_text("# numbers\n\nBlocks look like `<!-- generated: GRID/ID -->`, quoted here.\n\n"
                   "<!-- generated: tiny-findings/rf-generated-photos-none -->\nold\n<!-- /generated -->\n"
                   "\n<!-- generated: findings-rf/rf-tpdne-stylegan2-none -->\n<!-- /generated -->\n"
                   "<!-- generated: tiny-findings/ap_vs_rf.png -->\n<!-- /generated -->\ntail\n")
    # no data, no checkpoint: only the tables and the grid files
    assert main(["findings", str(findings), "--grid", str(tiny["grid"]), "--grid", "findings-rf",
                 "--doc", str(doc)]) == 0
    printed = capsys.readouterr().out
    assert "findings-rf: no cells" in printed and "3 generated block(s) filled" in printed
    generated = findings / "generated" / "tiny-findings"
    info = json.loads((generated / "experiment.json").read_text())
    assert {f["file"] for f in info["figures"]} == {"ap_vs_rf.png", "curves.png"}
    assert all((generated / f["file"]).stat().st_size > 5000 for f in info["figures"])
    text = doc.read_text()
    assert "old" not in text and text.endswith("tail\n") and "No cells of findings-rf" in text
    assert "Blocks look like `<!-- generated: GRID/ID -->`, quoted here.\n\n<!-- generated: tiny" in text
    assert "](findings/generated/tiny-findings/ap_vs_rf.png)" in text
    ap = {r["model"]: float(r["ap"]) for r in rows(findings / "cells.csv")
          if r["test_set"] == "stylegan1" and r["aggregation"] == "after_softmax"}
    for model, value in ap.items():            # the doc's table row of each model holds its AP
        line = next(line for line in text.splitlines() if line.startswith(f"| {model} |"))
        assert f"{value:.3f}" in line
    # a block naming nothing the rows give (yet) says so, and the command names what there is
    doc.write_text("<!-- generated: tiny-findings/regions -->\n<!-- /generated -->\n")
    assert main(["findings", str(findings), "--grid", str(tiny["grid"]), "--doc", str(doc)]) == 0
    assert "tiny-findings/regions: not drawn" in capsys.readouterr().out
    assert "tiny-findings has no `regions` yet" in doc.read_text()


def test_stop_after_starts_no_cell_past_the_deadline(tiny, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["experiment", str(tiny["grid"]), "--data-root", str(tiny["faces128"]), "--out", str(out),
                 "--stop-after", "1e-9"]) == 1
    err = capsys.readouterr().err
    assert "2 cells stopped after" in err and "rerun to continue" in err
    assert not list((out / "checkpoints").iterdir())


def synthetic_rows(models: dict[str, str], fakes: list[str], seeds: list[int], epochs: int = 24) -> list[dict]:
    """cells.csv rows (as strings) with known numbers: AP = the model's base + 0.01 * seed, minus 0.1 on the
    other source of the training generator and 0.3 on another generator."""
    base = {"xception_block2": 0.9, "xception": 0.8}
    tests = {"tpdne-stylegan2": "stylegan2", "stylegan2-nvidia": "stylegan2", "stylegan1": "stylegan1"}
    out = []
    for fake, model, seed in ((f, m, s) for f in fakes for m in models for s in seeds):
        for test, generator in tests.items():
            relation = "seen" if test == fake else "other-source" if generator == tests[fake] else "unseen"
            ap = base[model] + 0.01 * seed - {"seen": 0, "other-source": 0.1, "unseen": 0.3}[relation]
            out.append({**dict.fromkeys(CELL_COLUMNS, ""), "key": f"{model}-{fake}-{seed}-{epochs}", "model": model,
                        "field": models[model],
                        "load_size": "128", "train_real": "ffhq", "train_fakes": fake, "seed": str(seed),
                        "epochs": str(epochs), "crop": "whole", "test_set": test, "relation": relation,
                        "corruption": "none", "aggregation": "after_softmax", "ap": f"{ap:.4f}",
                        "ap_lo": f"{ap - 0.051:.4f}", "ap_hi": f"{ap + 0.051:.4f}", "roc_auc": f"{ap:.4f}",
                        "train_minutes": "1.5", "device": "cuda:0: a GPU"})
    return out


def test_findings_views_of_synthetic_rows(tmp_path):
    """The summary tables of claims (a) and (d) and the length check, on rows with known numbers, and a
    grid's view picking its cells by what they trained (no data, no key needed)."""
    from patchforensics.core.config import load_yaml_file
    from patchforensics.experiments.findings import grid_view, spec_tests, typed, write_findings_into
    from patchforensics.experiments.grid import grid_path

    models = {"xception_block2": "43", "xception": "full"}
    cells = synthetic_rows(models, ["tpdne-stylegan2", "stylegan2-nvidia"], [0, 1]) \
        + synthetic_rows(models, ["stylegan1"], [0, 1]) + synthetic_rows({"xception": "full"}, ["tpdne-stylegan2"],
                                                                         [0], epochs=48)
    tables = {"cells": cells + [dict(cells[0], corruption="jpeg:75")], "curves": [], "regions": []}
    tests = spec_tests(load_yaml_file(grid_path("findings-source")), grid_path("findings-source"))
    assert tests == {(t, "none") for t in ("tpdne-stylegan2", "stylegan1", "generated-photos",
                                           "celebahq-vs-tpdne-stylegan2", "stylegan2-nvidia")}
    view = grid_view(load_yaml_file(grid_path("findings-source")), tables, tests)
    assert {(r["train_fakes"], r["epochs"]) for r in view["cells"]} == {("tpdne-stylegan2", "24"),
                                                                        ("stylegan2-nvidia", "24")}
    assert {r["corruption"] for r in view["cells"]} == {"none"}     # findings-rf's JPEG rows of a shared cell
    write_findings_into("source", {t: [typed(r) for r in part] for t, part in view.items()}, tmp_path, {})
    info = json.loads((tmp_path / "experiment.json").read_text())
    by_id = {t["id"]: t for t in info["tables"]}
    source = by_id["source"]["rows"]
    row = next(r for r in source if r[0] == "xception_block2" and r[2] == "stylegan2-nvidia")
    # seen 0.9 / 0.91, other source 0.8 / 0.81 over seeds 0 and 1: the drop is 0.1 for both seeds
    assert row[4] == "stylegan2-nvidia: 0.905 ± 0.007 [0.85, 0.96]"
    assert row[5] == "tpdne-stylegan2: 0.805 ± 0.007 [0.75, 0.86]" and row[6] == "0.100 ± 0.000"
    # claim (a)'s "unseen" leaves the other source out: only stylegan1 (0.6 / 0.61) counts
    full = next(r for r in by_id["patch-vs-full"]["rows"] if r[0] == "xception_block2")
    assert full[2].startswith("0.605 ± 0.007 (seen 0.905")
    assert by_id["cross-xception"]["rows"][0] == ["tpdne-stylegan2", 2, "0.805 ± 0.007 (seen)",
                                                  "0.705 ± 0.007 (other source)", "0.505 ± 0.007", "0.505 ± 0.007"]
    # the length check compares one model at its two lengths
    length = grid_view(load_yaml_file(grid_path("findings-length")), tables, tests)
    write_findings_into("length", {t: [typed(r) for r in part] for t, part in length.items()}, tmp_path / "l", {})
    rows_ = json.loads((tmp_path / "l" / "experiment.json").read_text())["tables"][0]["rows"]
    assert [r[2] for r in rows_] == [24, 48] and rows_[0][4] == "0.800" and rows_[1][5] == "0.700"
    # one cell under two keys (other options or other images) is refused by name
    clash = dict(cells[0], key="another-key")
    with pytest.raises(ValueError, match="another-key"):
        grid_view(load_yaml_file(grid_path("findings-source")), {"cells": cells + [clash], "curves": [],
                                                                   "regions": []}, tests)


def test_findings_drawn_twice_are_the_same_bytes(tmp_path):
    """Redrawing unchanged rows changes no committed byte: no wall-clock time in experiment.json (its
    ``finished`` is the newest cell's), no date in the PNGs."""
    from patchforensics.experiments.findings import write_findings

    cells = synthetic_rows({"xception_block2": "43", "xception": "full"}, ["tpdne-stylegan2"], [0, 1])
    for i, row in enumerate(cells):
        row["finished"] = f"2026-01-0{1 + i % 3}T12:00:00Z"
    for folder in ("a", "b"):
        write_findings("twice", {"cells": cells, "curves": [], "regions": []}, tmp_path / folder)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "ap_vs_rf.png" in files and files == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert json.loads((tmp_path / "a" / "experiment.json").read_text())["finished"] == "2026-01-03T12:00:00Z"


def test_findings_grids_describe_the_must_have_cells_under_one_protocol(faces):
    """The bundled findings grids: one protocol (whole 128-px images, 24 epochs, bf16), the test sets
    with StyleGAN2 from its second source, and the cells they share trained once (same key)."""
    from patchforensics.experiments.findings import findings_grids

    grids = {name: load_grid(name, data_root=faces) for name in findings_grids()}
    assert set(grids) == {"findings-rf", "findings-cross", "findings-source", "findings-length", "findings-rf-all"}
    for grid in grids.values():
        assert {(c.train.fine_size, c.train.load_size, c.train.random_crop, c.train.bf16) for c in grid.cells} == \
            {(128, 128, False, "on")}
        assert "stylegan2-nvidia" in grid.test_data
        assert grid.relation(["tpdne-stylegan2"], "stylegan2-nvidia") == "other-source"
    assert {c.train.max_epochs for g in grids.values() for c in g.cells} == {24, 48}
    rf = grids["findings-rf"]
    assert {(c.train.model, c.train.seed) for c in rf.cells} == {
        (m, s) for m in ("xception_block1", "xception_block2", "xception_block3", "xception") for s in (0, 1, 2)}
    must_have = {c.key for name in ("findings-rf", "findings-cross", "findings-source", "findings-length")
                 for c in grids[name].cells}
    assert len(must_have) == 12 + 20 + 8 + 2
    assert len(must_have | {c.key for c in grids["findings-rf-all"].cells}) == 42 + 10


def test_bf16_cells_on_a_cpu_that_emulates_bf16_are_warned_about_before_any_work(faces, monkeypatch, capsys):
    """The findings grids pin bf16; on an AVX2-only CPU that is ~10x slower, which the run says at
    once (it still runs: the cells are the same). Native hardware or fp32 cells: no warning."""
    cells = load_grid("findings-rf", data_root=faces).cells
    monkeypatch.setattr(runner, "cpu_has_native_bf16", lambda: False)
    runner._warn_emulated_bf16(cells, ["cpu"])
    assert "only emulates" in capsys.readouterr().err
    with pytest.raises(ConfigError, match='quote it, e.g. bf16: "off"'):   # YAML reads off as false
        load_grid("findings-rf", ["base.bf16=off"], data_root=faces)
    fp32 = load_grid("findings-rf", ['base.bf16="off"'], data_root=faces).cells
    runner._warn_emulated_bf16(fp32, ["cpu"])
    monkeypatch.setattr(runner, "cpu_has_native_bf16", lambda: True)
    runner._warn_emulated_bf16(cells, ["cpu"])
    assert capsys.readouterr().err == ""
