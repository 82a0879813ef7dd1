"""``patchforensics experiment``: a tiny grid (2 cells, 1 epoch) on a few dozen real faces,
end to end, killed and resumed, refused when broken, and shown by ``report``."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import headless_chromium
from patchforensics.cli import main

from conftest import REPO  # noqa: E402
CELLS = ("model-widenet_kw3_d1", "model-widenet_kw7_d1")
MODELS = ("widenet_kw3_d1", "widenet_kw7_d1")


def checkpoint(out: Path, model: str) -> Path:
    """The checkpoint folder of the tiny grid's cell of ``model`` (named <model>_<fakes>_seed0_<hash>)."""
    (found,) = [p for p in (out / "checkpoints").glob(f"{model}_generated-photos_seed0_*") if p.is_dir()]
    return found


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, faces) -> Path:
    """FFHQ reals vs generated.photos (training) and StyleGAN1 (unseen) fakes: 16 train,
    6 val and 10 test images each, symlinked."""
    root = tmp_path_factory.mktemp("tiny_faces")
    counts = {"train": 16, "val": 6, "test": 10}
    for src in ("ffhq", "generated-photos", "stylegan1"):
        for split, n in counts.items():
            d = root / src / split
            d.mkdir(parents=True)
            for p in sorted((faces / src / split).glob("*.png"))[:n]:
                (d / p.name).symlink_to(p)
    (root / "tiny.yaml").write_text(yaml.safe_dump({"name": "tiny", "datasets": [
        {"name": "generated-photos", "real": "ffhq", "fake": "generated-photos"},
        {"name": "stylegan1", "real": "ffhq", "fake": "stylegan1"}]}))
    return root


def write_grid(folder: Path, data: Path, **changes) -> Path:
    spec = {"name": "tiny", "data_root": str(data),
            "base": {"real": ["ffhq"], "fake": ["generated-photos"], "max_epochs": 1, "batch_size": 8,
                     "save_latest_freq": 1, "cache_mb": 0},
            "vary": {"model": ["widenet_kw3_d1", "widenet_kw7_d1"]},
            "suites": [str(data / "tiny.yaml")], "corruptions": [[], ["jpeg:75"]]}
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            spec[section][name] = value
        else:
            spec[section] = value
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def table(out: Path) -> list[dict]:
    with open(out / "results" / "experiment-tiny" / "table.csv", newline="") as f:
        return list(csv.DictReader(f))


def mtimes(out: Path) -> dict[str, float]:
    return {m: (checkpoint(out, m) / "bestval.safetensors").stat().st_mtime_ns for m in MODELS}


def test_experiment_end_to_end_then_nothing_is_retrained(tmp_path, tiny_data, capsys):
    grid = write_grid(tmp_path, tiny_data, regions={"models": ["widenet_kw7_d1"], "seeds": [0], "topn": 8})
    out = tmp_path / "exp"
    assert main(["experiment", str(grid), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "cell 1/2 (2 left" in printed.err and "cell 2/2 done in" in printed.err
    rows = table(out)
    # 2 cells x 2 datasets x 2 corruptions x 4 aggregations (vote, before/after_softmax, patch)
    assert len(rows) == 32
    assert {r["aggregation"] for r in rows} == {"vote", "before_softmax", "after_softmax", "patch"}
    assert {(r["model"], r["test_set"], r["corruption"]) for r in rows} == {
        (m, d, c) for m in ("widenet_kw3_d1", "widenet_kw7_d1") for d in ("generated-photos", "stylegan1")
        for c in ("none", "jpeg:75")}
    assert {r["field"] for r in rows} == {"7", "11"}
    assert {r["relation"] for r in rows if r["test_set"] == "stylegan1"} == {"unseen"}
    assert {r["relation"] for r in rows if r["test_set"] == "generated-photos"} == {"seen"}
    for r in rows:
        assert 0 <= float(r["ap"]) <= 1 and 0 <= float(r["roc_auc"]) <= 1
        if r["aggregation"] != "patch":      # 95% bootstrap intervals over the test images
            assert 0 <= float(r["ap_lo"]) <= float(r["ap_hi"]) <= 1
            assert 0 <= float(r["roc_auc_lo"]) <= float(r["roc_auc_hi"]) <= 1
    findings = out / "results" / "experiment-tiny"
    info = json.loads((findings / "experiment.json").read_text())
    assert [f["file"] for f in info["figures"]] == ["ap_vs_rf.png", "curves.png", "regions.png"]
    for f in info["figures"]:
        assert (findings / f["file"]).stat().st_size > 5000
    # claim (c): region shares of the fakes' top patches, per test dataset, from the regions machinery
    assert set(info["regions"]) == {"generated-photos", "stylegan1"}
    shares = info["regions"]["stylegan1"]
    assert sum(v["top"] for v in shares.values()) == pytest.approx(1.0, abs=1e-6) or \
        all(v["top"] == 0 for v in shares.values())

    # a second run trains and tests nothing: the checkpoints stay as they were
    before = mtimes(out)
    assert main(["experiment", str(grid), "--out", str(out)]) == 0
    assert "2 finished, 0 to run" in capsys.readouterr().err
    assert mtimes(out) == before
    assert len(table(out)) == 32

    # changing a finished cell's training options is refused (naming what differs), before any work
    other = write_grid(tmp_path, tiny_data, base__max_epochs=2)
    assert main(["experiment", str(other), "--out", str(out)]) == 2
    assert "differ in max_epochs" in capsys.readouterr().err
    assert mtimes(out) == before

    # growing the grid by a model runs only the new cell
    bigger = write_grid(tmp_path, tiny_data, regions={"models": ["widenet_kw7_d1"], "seeds": [0], "topn": 8},
                        vary={"model": [*MODELS, "widenet_kw5_d1"]})
    assert main(["experiment", str(bigger), "--out", str(out)]) == 0
    assert "2 finished, 1 to run" in capsys.readouterr().err
    assert mtimes(out) == before
    assert len(table(out)) == 48


def test_a_killed_grid_continues_where_it_stopped(tmp_path, tiny_data):
    grid = write_grid(tmp_path, tiny_data, base__max_epochs=2)
    out = tmp_path / "exp"
    cmd = [sys.executable, "-m", "patchforensics", "experiment", str(grid), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = out / "cells" / "tiny" / f"{CELLS[0]}.json"
    deadline = time.time() + 300
    while not (first.is_file() and list(out.glob(f"checkpoints/{MODELS[1]}_*/resume.safetensors"))) \
            and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the grid ended before it could be killed: " + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGKILL)                # mid-way through the second cell's training
    proc.wait()
    assert not (out / "cells" / "tiny" / f"{CELLS[1]}.json").exists()
    first_weights = (checkpoint(out, MODELS[0]) / "bestval.safetensors").stat().st_mtime_ns

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 finished, 1 to run" in done.stderr
    assert f"cell 1/2" not in done.stderr            # the finished cell is not touched again
    assert "resuming widenet_kw7_d1" in done.stderr or "trained already" in done.stderr
    assert (checkpoint(out, MODELS[0]) / "bestval.safetensors").stat().st_mtime_ns == first_weights
    summary = json.loads((checkpoint(out, MODELS[1]) / "train_summary.json").read_text())
    assert summary["status"] == "finished" and len(summary["history"]) == 2
    assert len(table(out)) == 32
    assert not list((out / "checkpoints").glob("*.lock"))


@pytest.mark.parametrize("change, key", [
    ({"base__epochs": 3}, "base.epochs"),
    ({"base__max_epochs": "many"}, "base.max_epochs"),
    ({"vary": {"model": ["widenet_kw3_d1", "xception_block9"]}}, "vary.model"),
    ({"vary": {"model": "widenet_kw3_d1", "sed": [0, 1]}}, "vary.sed"),
    ({"colour": "red"}, "colour"),
    ({"corruptions": [["jpeg:500"]]}, "corruptions"),
    ({"regions": {"models": ["xception"]}}, "regions.models"),
])
def test_a_broken_grid_is_refused_before_any_training(tmp_path, tiny_data, capsys, change, key):
    grid = write_grid(tmp_path, tiny_data, **change)
    out = tmp_path / "exp"
    assert main(["experiment", str(grid), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0], err
    assert not out.exists()


def test_bad_set_override_is_refused(tmp_path, tiny_data, capsys):
    grid = write_grid(tmp_path, tiny_data)
    assert main(["experiment", str(grid), "--out", str(tmp_path / "exp"), "--set", "base.batch_size=1"]) == 2
    assert "batch_size" in capsys.readouterr().err
    assert not (tmp_path / "exp").exists()


def test_bundled_grids_are_valid(faces):
    from patchforensics.experiments.grid import load_grid

    rf = load_grid("rf-ablation", data_root=faces)
    assert {c.train.model for c in rf.cells} >= {"xception_block1", "xception_block5", "xception",
                                                 "resnet18_layer1", "resnet18_layer4", "resnet18"}
    assert {c.train.seed for c in rf.cells} == {0, 1, 2}
    assert rf.suites[0].corruptions == [[], ["jpeg:75"], ["blur:1"]]
    cross = load_grid("cross-generator", data_root=faces)
    assert {Path(c.train.fake[0]).name for c in cross.cells} == {"tpdne-stylegan2", "stylegan1", "generated-photos"}
    reduced = load_grid("rf-ablation", ["vary.seed=[0,1]", "base.max_epochs=4"], data_root=faces)
    assert len(reduced.cells) == 22 and reduced.cells[0].train.max_epochs == 4


def test_help_names_every_bundled_grid(capsys, monkeypatch):
    import patchforensics

    shipped = sorted(p.stem for p in (Path(patchforensics.__file__).parent / "grids").glob("*.yaml"))
    assert len(shipped) >= 7
    monkeypatch.setenv("COLUMNS", "400")     # no line break inside a hyphenated name
    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    listed = capsys.readouterr().out.split("bundled grid name: ")[1].split("\n")[0]
    assert sorted(n.strip() for n in listed.split(",")) == shipped


def test_report_shows_the_findings_of_an_experiment(tmp_path, tiny_data, capsys):
    grid = write_grid(tmp_path, tiny_data)
    out = tmp_path / "exp"
    assert main(["experiment", str(grid), "--out", str(out)]) == 0
    assert main(["report", str(out / "results")]) == 0
    page = (out / "results" / "report.html").read_text()
    assert 'id="findings-tiny"' in page and "Findings: experiment tiny" in page
    # the findings come first: before the list of every result folder
    assert page.index('id="findings-tiny"') < page.index('id="results-toc"') < page.index('id="metrics"')
    assert 'alt="ap_vs_rf.png"' in page and "data:image/png;base64," in page
    assert 'id="rf-generated-photos-none"' in page and "widenet_kw7_d1" in page
    with headless_chromium() as browser:             # the figures render in a browser, nothing fails
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "results" / "report.html").resolve().as_uri(), wait_until="load")
        widths = page.evaluate("Array.from(document.querySelectorAll('#findings-tiny ~ div.figs img'))"
                               ".map(i => i.complete ? i.naturalWidth : 0)")
        assert widths and min(widths) > 0
        assert page.locator("table#rf-generated-photos-none tr").count() == 3   # header + 2 models
        assert errors == []
    # a results folder without an experiment has no findings section
    cell_results = out / "results" / checkpoint(out, MODELS[0]).name
    assert main(["report", str(cell_results), "-o", str(tmp_path / "plain.html")]) == 0
    assert "Findings" not in (tmp_path / "plain.html").read_text()


def test_two_workers_share_the_cells(tmp_path, tiny_data, capsys):
    grid = write_grid(tmp_path, tiny_data)
    out = tmp_path / "exp"
    assert main(["experiment", str(grid), "--out", str(out), "--workers", "2", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "2 to run, 2 worker(s)" in err
    assert len(table(out)) == 32
    records = [json.loads(p.read_text()) for p in (out / "cells" / "tiny").glob("*.json")]
    assert sorted(r["cell"] for r in records) == list(CELLS)
    assert all(r["train_config"]["device"] == "cpu" for r in records)
    assert not list((out / "checkpoints").glob("*.lock"))
