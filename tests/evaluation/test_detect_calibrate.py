"""Calibrated thresholds: the choice rules, their storage with the checkpoint, and
their use by ``train`` and ``test``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import patchforensics
from patchforensics.core import fileio
from patchforensics.evaluation.calibrate import (CALIBRATION_FILE, CalibrateConfig, choose_thresholds,
                                      equal_error_threshold, fpr_name, fpr_threshold, run_calibration,
                                                 store_calibration)
from patchforensics.evaluation.evaluate import read_scores_csv
from patchforensics.models.checkpoint import load_model
from patchforensics.cli import main

from conftest import listed


def errors(p_real, labels, t):
    """(reals called fake, fakes called real) at P(real) threshold t (fake when p <= t)."""
    p_real, labels = np.asarray(p_real), np.asarray(labels)
    return float(np.mean(p_real[labels == 1] <= t)), float(np.mean(p_real[labels == 0] > t))


def test_separable_scores_get_a_threshold_between_the_classes():
    p = [0.1, 0.2, 0.4, 0.6, 0.7, 0.9]
    y = [0, 0, 0, 1, 1, 1]
    assert equal_error_threshold(p, y) == pytest.approx(0.5)
    assert fpr_threshold(p, y, 0.01) == pytest.approx(0.5)
    assert errors(p, y, 0.5) == (0.0, 0.0)


def test_fpr_threshold_trades_fakes_for_the_bound_on_reals():
    # ten reals; a 10% target lets exactly the lowest-scoring real be called fake
    reals = np.linspace(0.3, 0.95, 10)
    fakes = np.array([0.05, 0.2, 0.35, 0.5])
    p, y = np.r_[reals, fakes], np.r_[np.ones(10), np.zeros(4)]
    strict, loose = fpr_threshold(p, y, 0.0), fpr_threshold(p, y, 0.10)
    assert errors(p, y, strict)[0] == 0.0 and errors(p, y, loose)[0] == pytest.approx(0.1)
    assert loose > strict
    assert errors(p, y, loose)[1] < errors(p, y, strict)[1]      # fewer fakes missed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=2, max_size=60),
       st.sampled_from([0.0, 0.01, 0.05, 0.2]))
def test_threshold_rules_hold_for_any_scores(pairs, target):
    p = np.array([s for s, _ in pairs])
    y = np.array([int(r) for _, r in pairs])
    if len(set(y)) < 2:
        with pytest.raises(ValueError, match="both real and fake"):
            choose_thresholds(p, y, [target])
        return
    grid = np.unique(np.r_[0.0, 1.0, p, np.nextafter(p, 2), np.nextafter(p, -1)])
    grid = grid[grid <= 1]
    # fpr: the bound holds and no larger threshold keeps it
    t = fpr_threshold(p, y, target)
    assert errors(p, y, t)[0] <= target + 1e-12
    larger = grid[grid > t]
    assert all(errors(p, y, g)[0] > target + 1e-12 or errors(p, y, g) == errors(p, y, t) for g in larger)
    # eer: no threshold balances the two errors better
    e = equal_error_threshold(p, y)
    gap = abs(np.subtract(*errors(p, y, e)))
    assert all(abs(np.subtract(*errors(p, y, g))) >= gap - 1e-12 for g in grid)


def test_fpr_name():
    assert fpr_name(0.01) == "fpr1pct" and fpr_name(0.005) == "fpr0.5pct"


def test_train_stores_thresholds_and_test_reports_them(trained_checkpoint, small_face_dirs, tmp_path, capsys):
    config = fileio.read_yaml(trained_checkpoint / "config.yaml")
    assert set(config["thresholds"]) == {"eer", "fpr3pct", "fpr1pct"}      # written by train() itself
    report = json.loads((trained_checkpoint / CALIBRATION_FILE).read_text())
    assert report["n_real"] == 20 and report["n_fake"] == 20 and report["partition"] == "val"
    assert report["thresholds"]["fpr3pct"]["real_error"] <= 0.03 and report["thresholds"]["fpr1pct"]["real_error"] <= 0.01
    card = load_model(trained_checkpoint).card
    assert card.default_threshold() == "fpr3pct"          # the screening default, not eer
    assert card.with_thresholds({"eer": 0.5}).default_threshold() == "eer"   # older checkpoints
    assert load_model(trained_checkpoint).card.thresholds == config["thresholds"]

    assert main(["test", str(trained_checkpoint), "--real", str(small_face_dirs["real"]), "--fake",
                 str(small_face_dirs["fake"]), "--dataset-name", "small", "--results-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(next(tmp_path.rglob("metrics.json")).read_text())["metrics"]["after_softmax"]
    _, labels, p_fake = read_scores_csv(next(tmp_path.rglob("scores.csv")))
    for name, t in config["thresholds"].items():
        called_fake = p_fake["after_softmax"] >= 1 - t          # the stored P(real) cut, read as p(fake)
        assert metrics[f"acc@{name}"] == pytest.approx(np.mean(called_fake == (labels == 0)))
        assert metrics[f"real_acc@{name}"] == pytest.approx(np.mean(~called_fake[labels == 1]))
        assert metrics[f"fake_acc@{name}"] == pytest.approx(np.mean(called_fake[labels == 0]))
        assert f"after_softmax at threshold {name}: acc {metrics[f'acc@{name}']:.4f}" in printed


def test_calibrate_command_recomputes_and_stores(trained_checkpoint, small_face_dirs, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    argv = ["calibrate", str(ckpt), "--target-fpr", "0.05", "--real", str(small_face_dirs["real"]),
            "--fake", str(small_face_dirs["fake"]), "--partition", "test"]
    before = fileio.read_yaml(trained_checkpoint / "config.yaml")
    old_report = json.loads((trained_checkpoint / CALIBRATION_FILE).read_text())
    # the test split only when asked for; train's thresholds replaced only with --force
    assert main(argv) == 2
    assert "--allow-test-split" in capsys.readouterr().err
    assert main([*argv, "--allow-test-split"]) == 2
    err = capsys.readouterr().err
    assert "already holds thresholds eer" in err and "--force" in err and len(err.splitlines()) == 1
    assert fileio.read_yaml(ckpt / "config.yaml") == before
    assert main([*argv, "--allow-test-split", "--force"]) == 0
    out = capsys.readouterr().out
    assert "fpr5pct" in out and "fpr1pct" in out and "under 'previous'" in out
    config = fileio.read_yaml(ckpt / "config.yaml")
    # fpr1pct and fpr3pct are not recalibrated, so they stay
    assert set(config["thresholds"]) == {"eer", "fpr1pct", "fpr3pct", "fpr5pct"}
    assert config["thresholds"]["fpr1pct"] == before["thresholds"]["fpr1pct"]
    assert {k: v for k, v in config.items() if k != "thresholds"} == \
        {k: v for k, v in before.items() if k != "thresholds"}          # the rest is untouched
    report = json.loads((ckpt / CALIBRATION_FILE).read_text())
    assert report["n_real"] == report["n_fake"] == 30 and report["partition"] == "test"
    assert report["kept"] == {k: before["thresholds"][k] for k in ("fpr1pct", "fpr3pct")}
    # the replaced thresholds and their report are kept
    assert len(report["previous"]) == 1
    assert report["previous"][0]["thresholds"] == before["thresholds"]
    assert report["previous"][0]["report"] == old_report
    # printed with enough decimals to tell thresholds apart
    assert f"P(real) <= {config['thresholds']['eer']:.6f}" in out

    # the stored errors are those of the stored thresholds on the same images
    from patchforensics.data.dataset import collect_samples
    from patchforensics.scoring.engine import Engine
    preds = Engine.load(ckpt).predict(collect_samples([small_face_dirs["real"]], [small_face_dirs["fake"]], "test"),
                                      progress=False)
    for name, t in config["thresholds"].items():
        if name in report["kept"]:
            continue
        re, fe = errors(preds.scores["after_softmax"], preds.labels, t)
        assert report["thresholds"][name]["real_error"] == pytest.approx(re)
        assert report["thresholds"][name]["fake_error"] == pytest.approx(fe)
    assert report["thresholds"]["fpr5pct"]["real_error"] <= 0.05


def test_calibrate_rejects_bad_options_before_work(trained_checkpoint, tmp_path, capsys):
    assert main(["calibrate", str(trained_checkpoint), "--target-fpr", "1.5"]) == 2
    assert "target_fpr" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path)]) == 2
    assert "not a checkpoint folder" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--real and --fake"):
        run_calibration(CalibrateConfig(str(trained_checkpoint), real=["x"]))


def test_degenerate_thresholds_and_chance_ap_are_warned():
    p = np.array([0.2, 0.4, 0.6, 0.8] * 2)
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])            # reals and fakes score alike: AP at chance
    report = choose_thresholds(p, y, [0.0]).report
    assert report["ap"] == pytest.approx(report["ap_chance"]) == pytest.approx(0.5)
    warnings = report["warnings"]
    assert any("near chance" in w for w in warnings)
    # no real may be flagged at a 0% target, and every score is shared with a fake: it flags nothing
    assert any(w.startswith("threshold fpr0pct flags no image") for w in warnings)
    assert choose_thresholds([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]).report["warnings"] == []


def bundled_copy(tmp_path):
    """The bundled detector's card, weights and calibration in a folder of its own."""
    ckpt = tmp_path / "bundled"
    shutil.copytree(Path(patchforensics.__file__).parent / "bundled", ckpt)
    return ckpt


def test_calibrate_refuses_to_replace_and_keeps_a_backup(tmp_path):
    ckpt = bundled_copy(tmp_path)
    before = fileio.read_yaml(ckpt / "config.yaml")["thresholds"]
    old_report = json.loads((ckpt / CALIBRATION_FILE).read_text())
    cal = choose_thresholds([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [0, 0, 0, 1, 1, 1], target_fprs=[0.1])
    with pytest.raises(fileio.OutputExistsError, match="already holds thresholds eer; pass --force"):
        store_calibration(ckpt, cal)
    assert fileio.read_yaml(ckpt / "config.yaml")["thresholds"] == before
    store_calibration(ckpt, cal, force=True)
    stored = fileio.read_yaml(ckpt / "config.yaml")["thresholds"]
    assert stored == {**before, "eer": 0.5, "fpr10pct": 0.5}            # fpr1pct … kept
    report = json.loads((ckpt / CALIBRATION_FILE).read_text())
    assert report["kept"] == {k: v for k, v in before.items() if k != "eer"}
    assert report["previous"] == [{"replaced": report["previous"][0]["replaced"], "thresholds": before,
                                   "report": old_report}]
    # a second replacement appends: the history is oldest first, never nested
    store_calibration(ckpt, cal, force=True)
    report = json.loads((ckpt / CALIBRATION_FILE).read_text())
    assert [h["thresholds"] for h in report["previous"]] == [before, stored]
    assert "previous" not in report["previous"][1]["report"]


def test_calibrate_warns_when_the_model_cannot_tell_the_images_apart(tmp_path, faces, capsys):
    """The same images as reals and as fakes: AP is at chance, and the command says so."""
    ckpt = bundled_copy(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    for name in listed("ffhq/val", 6):
        (images / Path(name).name).symlink_to(faces / name)
    assert main(["calibrate", str(ckpt), "--which-epoch", "weights", "--real", str(images), "--fake", str(images),
                 "--backend", "torch", "--force"]) == 0
    captured = capsys.readouterr()
    assert "patchforensics calibrate: warning: AP" in captured.err and "near chance" in captured.err
    report = json.loads((ckpt / CALIBRATION_FILE).read_text())
    assert any("near chance" in w for w in report["warnings"])
