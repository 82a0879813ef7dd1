"""``release`` end to end on a tiny copy of the shared faces: trains, resumes a killed run,
chooses on validation, calibrates, exports, writes the card, installs; a rerun trains nothing."""
from __future__ import annotations

import json

import pytest

from conftest import DATA, FACES
from patchforensics.core import fileio
from patchforensics.core.fileio import file_sha256
from patchforensics.data.corruptions import EVERYDAY_EDITS
from patchforensics.data.dataset import data_release
from patchforensics.models.checkpoint import BUNDLED_DIR
from patchforensics.release import card_metrics, pipeline
from patchforensics.scoring.engine import _sidecar_onnx
from patchforensics.scoring.metrics import wilson
from patchforensics.release.backdrop import BACKDROPS
from patchforensics.release.card import render_card, render_installed
from patchforensics.release.pipeline import INSTALLED, ReleaseConfig, run_release
from patchforensics.release.recipe import CANDIDATES, FAKE_SETS, HELD_OUT_SOURCE, REAL_SETS
from patchforensics.training.train import train

PER_SPLIT = {"train": 16, "val": 8, "test": 6}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """``<tmp>/faces128/<set>/<split>`` with a few symlinked images per split, the data README
    beside it (its version) and four wild portraits under ``<tmp>/raw``."""
    base = tmp_path_factory.mktemp("tiny_data")
    for folder in REAL_SETS + FAKE_SETS:
        for split, n in PER_SPLIT.items():
            d = base / "faces128" / folder / split
            d.mkdir(parents=True)
            for p in sorted((FACES / folder / split).glob("*.png"))[:n]:
                (d / p.name).symlink_to(p)
    (base / "README.md").symlink_to(DATA / "README.md")
    wild = base / "raw" / "wild-portraits"
    wild.mkdir(parents=True)
    for p in sorted((DATA / "raw" / "wild-portraits").glob("*.jpg"))[:4]:
        (wild / p.name).symlink_to(p)
    return base / "faces128"


def test_release_end_to_end_resumes_and_reruns_nothing(tiny_root, tmp_path, monkeypatch):
    cfg = ReleaseConfig(data_root=str(tiny_root), out=str(tmp_path / "out"), epochs=2, device="cpu", bf16="off",
                        install=str(tmp_path / "bundled"))
    # a run killed after a few steps of the first candidate: the release resumes it
    first = cfg.train_config(CANDIDATES[0])
    train(first, stop_after_steps=2, progress=False)
    summary = run_release(cfg, progress=False)

    out = tmp_path / "out"
    history = json.loads((out / "checkpoints" / first.name / "train_summary.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2] and history[0]["seconds"] > 0
    assert set(summary["selection"]) == {c.name for c in CANDIDATES}
    # a candidate whose score a painted backdrop moves loses to one it does not, then recall decides
    # (greyscale only within the best's interval: tests/release/test_release_choice.py)
    assert summary["winner"] == pipeline.pick_winner(summary["selection"])
    assert all(set(s["grey"]["recall"]) == set(FAKE_SETS) for s in summary["selection"].values())
    assert all(set(s["backdrop"]) == {"unchanged", *BACKDROPS} for s in summary["selection"].values())
    for s in summary["selection"].values():     # chosen on validation: each generator's recall
        assert set(s["recall"]) == set(FAKE_SETS) and s["false_alarms"] <= 0.03

    winner = out / "checkpoints" / f"release_{summary['winner']}"
    thresholds = fileio.read_yaml(winner / "config.yaml")["thresholds"]
    assert {"eer", "fpr3pct", "fpr1pct"} <= set(thresholds)
    calibration = json.loads((winner / "calibration.json").read_text())["thresholds"]
    assert calibration["fpr3pct"]["real_error"] <= 0.03 and calibration["fpr1pct"]["real_error"] <= 0.01
    assert thresholds["fpr1pct"] <= thresholds["fpr3pct"]        # the strict cut flags no more than the default
    assert (out / summary["onnx"]).stat().st_size > 0
    prov = summary["provenance"]
    assert prov["data_version"] == data_release(FACES) and prov["counts"]["test"]["ffhq"] == PER_SPLIT["test"]
    assert prov["runs"][winner.name]["runtime"]["precision"] == "fp32"
    assert summary["cross_source"]["without"][HELD_OUT_SOURCE]["n"] == 2 * PER_SPLIT["test"]

    # the card: every table there, counts as measured, and it reads back
    metrics = json.loads((out / "card_metrics.json").read_text())
    assert all(d["default"]["n"] == PER_SPLIT["test"] for d in metrics["decisions"].values())
    assert metrics["wild"]["photos"] == 4
    text = (out / "MODEL_CARD.md").read_text()
    tables = card_metrics.parse(text)
    assert set(tables) == {"decisions", "ranking", "wild", "backdrop", "evasion"}
    assert set(tables["decisions"]) == set(REAL_SETS + FAKE_SETS)
    assert list(tables["evasion"]) == ["none", *EVERYDAY_EDITS] and metrics["evasion"]["weights"] == metrics["weights"]
    assert "not detected" in text and summary["winner"] in text
    # installed: the weights, the card and the calibration travel together
    installed = tmp_path / "bundled"
    assert (installed / "weights.safetensors").read_bytes() == (winner / "bestval.safetensors").read_bytes()
    assert (installed / "MODEL_CARD.md").read_text() == text
    assert _sidecar_onnx(installed, "weights") == installed / "weights.onnx"      # opening it exports nothing

    # against the release it installed (the same weights): no candidate beats it, so it stays
    kept = run_release(ReleaseConfig(**{**cfg.__dict__, "install": str(tmp_path / "not-installed"),
                                        "previous": str(installed)}), progress=False)
    assert kept["winner"] == "previous" and not (tmp_path / "not-installed").exists()
    assert kept["selection"]["previous"]["weights"] == file_sha256(installed / "weights.safetensors")[:12]
    assert kept["selection"]["previous"]["mean_recall"] == summary["selection"][summary["winner"]]["mean_recall"]

    # the same command again trains nothing and measures nothing twice
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(pipeline, "train", no_training)
    monkeypatch.setattr(pipeline, "validation_choice", no_training)
    monkeypatch.setattr(card_metrics, "card_metrics", no_training)
    monkeypatch.setattr(pipeline, "evasion_metrics", no_training)
    with pytest.raises(fileio.OutputExistsError, match="--force"):     # the installed detector stays
        run_release(cfg, progress=False)
    cfg.force = True
    assert run_release(cfg, progress=False)["winner"] == summary["winner"]

    # a finished run of other options (here: another length) is not passed off as this one
    longer = ReleaseConfig(**{**cfg.__dict__, "epochs": 3, "install": None})
    with pytest.raises(ValueError, match="finished run of other options"):
        run_release(longer, progress=False)


def test_release_refuses_bad_options_before_work(tiny_root, tmp_path):
    with pytest.raises(ValueError, match="pin the precision"):
        run_release(ReleaseConfig(data_root=str(tiny_root), out=str(tmp_path), bf16="auto"))
    with pytest.raises(ValueError, match="choose among"):
        run_release(ReleaseConfig(data_root=str(tiny_root), out=str(tmp_path), candidates=["nope"]))
    with pytest.raises(ValueError, match="lacks"):
        run_release(ReleaseConfig(data_root=str(tmp_path), out=str(tmp_path / "o")))
    assert not any(tmp_path.iterdir())


def test_the_bundled_card_renders_again_from_the_bundled_files(tmp_path):
    """``bundled/MODEL_CARD.md`` is, byte for byte, what the card templates render from the
    bundled ``release.json`` and ``card_metrics.json`` and the installed weights, card and
    calibration (put back under their checkpoint names). Its provenance line names the commit
    recorded in ``release.json`` when the release ran, not the code rendering it now."""
    summary = json.loads((BUNDLED_DIR / "release.json").read_text())
    metrics = json.loads((BUNDLED_DIR / "card_metrics.json").read_text())
    winner = tmp_path / summary["selection"][summary["winner"]]["checkpoint"]
    winner.mkdir()
    for name, installed in INSTALLED.items():
        (winner / name).symlink_to(BUNDLED_DIR / installed)
    card = (BUNDLED_DIR / "MODEL_CARD.md").read_bytes()
    assert render_card(winner, metrics, summary).encode("utf-8") == card
    assert render_installed(BUNDLED_DIR).encode("utf-8") == card
    # every everyday edit's row, measured on the bundled weights (`release --card-only`, docs/recipe.md)
    assert list(card_metrics.parse(card.decode())["evasion"]) == ["none", *EVERYDAY_EDITS]
    assert metrics["evasion"]["weights"]["winner"] == file_sha256(BUNDLED_DIR / "weights.safetensors")[:12]
    assert f"git commit `{summary['provenance']['commit']}`".encode() in card


def test_wilson_interval_is_sound():
    lo, hi = wilson(0, 53)
    assert lo == 0 and 0.05 < hi < 0.08          # no hit in 53 still allows ~7%
    lo, hi = wilson(40, 80)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.21, abs=0.01)
    assert card_metrics.age_of("x/00032A02.jpg") == 2 and card_metrics.age_of("x/face.jpg") is None
