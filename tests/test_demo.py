"""The main job end to end on a tiny copy of the faces folder: every stage runs,
the table covers the suite plus the GMM row, and a second run refuses to
overwrite before any work."""
from __future__ import annotations

import json

import pytest

from sklearn.metrics import average_precision_score

from patchforensics.cli import main
from patchforensics.evaluation.evaluate import read_scores_csv

SOURCES = ("ffhq", "celebahq", "tpdne-stylegan2", "stylegan1", "generated-photos")
COUNTS = {"train": 24, "val": 8, "test": 10}


@pytest.fixture()
def tiny_faces(tmp_path, faces):
    """The demo's three folders with a few real images per split (symlinks)."""
    root = tmp_path / "faces"
    for src in SOURCES:
        for split, n in COUNTS.items():
            d = root / src / split
            d.mkdir(parents=True)
            for p in sorted((faces / src / split).glob("*.png"))[:n]:
                (d / p.name).symlink_to(p)
    return root


def test_demo_runs_every_stage_and_refuses_to_overwrite(tiny_faces, tmp_path, capsys):
    out = tmp_path / "demo_out"
    args = ["demo", "--data", str(tiny_faces), "--out", str(out), "--epochs", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "demo_summary.json").read_text())
    assert set(summary["timings"]) == {"train_s", "gmm_s", "suite_s", "explain_s", "total_s"}
    rows = [r for r in summary["rows"] if r["aggregation"] == "after_softmax"]
    n_real = COUNTS["test"]
    pair = n_real + COUNTS["test"]
    assert {r["dataset"]: r["n"] for r in rows} == {"tpdne-stylegan2": pair, "stylegan1": pair,
                                                   "generated-photos": pair,
                                                   "celebahq-vs-tpdne-stylegan2": pair, "gmm": n_real + 100}
    for r in rows:   # the table's AP is the AP of the scores test wrote (fakes positive, by p(fake))
        (scores_csv,) = (out / "results").glob(f"*/test/epoch_bestval/{r['dataset']}/scores.csv")
        _, labels, p_fake = read_scores_csv(scores_csv)
        assert r["ap"] == pytest.approx(average_precision_score(labels == 0, p_fake["after_softmax"]), abs=1e-4)
    assert "| gmm | none | after_softmax |" in printed            # the table is printed
    report = (out / "results" / "report.html").read_text()
    assert "tpdne-stylegan2" in report and "<img" in report
    assert (out / "checkpoints" / "demo_xception_block2" / "bestval.safetensors").is_file()

    stamp = (out / "demo_summary.json").stat().st_mtime_ns
    assert main(args) == 2                                        # no --force: refused at once
    assert "--force" in capsys.readouterr().err
    assert (out / "demo_summary.json").stat().st_mtime_ns == stamp


def test_demo_without_data_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    assert main(["demo", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "nowhere" in capsys.readouterr().err
    monkeypatch.delenv("PATCHFORENSICS_DATA", raising=False)
    monkeypatch.chdir(tmp_path)                    # no ../shared/data/faces128 beside it
    assert main(["demo", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--data DIR" in err and "PATCHFORENSICS_DATA" in err and "prepare" in err
    assert not (tmp_path / "o").exists()
