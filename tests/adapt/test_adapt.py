"""``adapt``: a small base taught an unseen generator end to end, on real faces.

The base is the session's small ``resnet18_layer1`` (FFHQ vs generated.photos, conftest);
the new generator is StyleGAN1, which it never saw. Its checkpoint must load in detect,
serve and test, its card must hold the run's own numbers, and bad input must stop before
any work with one line.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from conftest import FACES
from patchforensics.adapt.config import AdaptConfig
from patchforensics.adapt.data import folds
from patchforensics.adapt.pipeline import adapt
from patchforensics.cli import main
from patchforensics.core.config import ConfigError
from patchforensics.data.dataset import REAL, Sample
from patchforensics.scoring.engine import Engine
from patchforensics.scoring.onnx_backend import OnnxRunner

N_FAKES = 20


def _link(files, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).symlink_to(f)
    return folder


@pytest.fixture(scope="module")
def new_fakes(tmp_path_factory):
    """The first StyleGAN1 training faces, as a user would hand them in (a folder)."""
    files = sorted((FACES / "stylegan1" / "train").glob("*.png"))[:N_FAKES]
    return _link(files, tmp_path_factory.mktemp("adapt") / "stylegan1-samples")


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, trained_checkpoint, new_fakes):
    out = tmp_path_factory.mktemp("adapted") / "rn18-stylegan1"
    cfg = AdaptConfig(fake=[str(new_fakes)], real=[str(FACES / "ffhq" / "val")], model=str(trained_checkpoint),
                      out=str(out), name="stylegan1", steps=60, folds=3, replay_per_class=40)
    return out, adapt(cfg, progress=False)


def _mean_p_fake(engine, paths, label=0):
    preds = engine.predict([Sample(str(p), label) for p in paths], progress=False)
    return float(np.mean(1.0 - preds.scores["after_softmax"]))


def test_adapt_writes_a_checkpoint_that_opens_without_exporting(adapted):
    out, numbers = adapted
    for name in ("config.yaml", "bestval.safetensors", "bestval.onnx", "calibration.json", "adapt.json",
                 "MODEL_CARD.md"):
        assert (out / name).is_file(), name
    engine = Engine.load(out)
    assert isinstance(engine.runner, OnnxRunner) and engine.runner.path == out / "bestval.onnx"
    assert engine.card.options["adapted"]["generator"] == "stylegan1"
    assert numbers["samples"]["used"] == N_FAKES and not numbers["samples"]["no_face"]


def test_adaptation_learns_the_new_generator(adapted, trained_checkpoint, new_fakes):
    """The samples it was taught look faker to the adapted model than to its base."""
    out, _ = adapted
    files = sorted(new_fakes.iterdir())
    assert _mean_p_fake(Engine.load(out), files) > _mean_p_fake(Engine.load(trained_checkpoint), files) + 0.02


def test_thresholds_are_rechosen_on_the_given_reals(adapted):
    out, numbers = adapted
    card = yaml.safe_load((out / "config.yaml").read_text())
    reals = sorted((FACES / "ffhq" / "val").glob("*.png"))
    preds = Engine.load(out).predict([Sample(str(p), REAL) for p in reals], progress=False)
    p_fake = 1.0 - preds.scores["after_softmax"]
    cut = 1.0 - card["thresholds"]["fpr3pct"]
    assert cut == pytest.approx(numbers["thresholds"]["fpr3pct"])
    assert np.mean(p_fake >= cut) <= 0.03
    assert numbers["threshold_reals"]["n"] == len(reals)
    assert any(f"rest on {len(reals)} reals" in n for n in numbers["notes"])    # < 100: said to be uncertain


def test_the_card_holds_the_runs_numbers(adapted):
    out, numbers = adapted
    saved = json.loads((out / "adapt.json").read_text())
    assert saved["estimate"] == numbers["estimate"]
    card = (out / "MODEL_CARD.md").read_text()
    est = numbers["estimate"]["fpr3pct"]
    assert est["n"] == N_FAKES and f"{est['rate']:.1%} ({est['k']}/{est['n']}" in card
    sets = {r["set"] for r in numbers["forgetting"]}
    assert sets == {"real", "fake"}          # the base's own test splits (conftest's small folders)
    for r in numbers["forgetting"]:
        assert f"| {r['set']} | {r['class']} | {r['n']} |" in card
        lo, hi = r["diff_ci"]
        assert lo <= r["diff"] <= hi


def test_folds_are_disjoint_and_cover_every_sample():
    parts = folds(23, 5, seed=3)
    flat = [i for p in parts for i in p]
    assert sorted(flat) == list(range(23)) and len(set(flat)) == 23
    assert folds(23, 5, seed=3) == parts and folds(23, 5, seed=4) != parts


def test_the_estimate_scores_every_sample_once_on_a_model_that_never_saw_it(adapted):
    _, numbers = adapted
    est = numbers["estimate"]
    assert est["folds"] == 3 and est["n"] == N_FAKES and est["fpr3pct"]["n"] == N_FAKES


def test_detect_serve_and_test_take_the_adapted_checkpoint(adapted, capsys):
    out, _ = adapted
    face = sorted((FACES / "stylegan1" / "test").glob("*.png"))[0]
    assert main(["detect", str(face), "--model", str(out), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == out.name and "adapted to stylegan1 from 20 of its samples" in result["scope"]

    from patchforensics.screening.detector import Detector
    from patchforensics.screening.serve import DetectService, create_app
    with TestClient(create_app(DetectService(Detector(Engine.load(out)), 1 << 20))) as client:
        info = client.get("/api/info").json()
    assert info["model"] == out.name and "stylegan1" in info["scope"]

    from patchforensics.evaluation.evaluate import TestConfig, run_test
    metrics, _ = run_test(TestConfig(checkpoint=str(out), real=[str(FACES / "ffhq")],
                                     fake=[str(FACES / "stylegan1")], dataset_name="stylegan1",
                                     results_dir=str(out.parent / "results")))
    assert 0 <= metrics["metrics"]["after_softmax"]["ap"] <= 1 and metrics["metrics"]["after_softmax"]["n"] > 0


def test_a_fake_that_is_also_a_real_is_refused(tmp_path, trained_checkpoint, new_fakes):
    fakes = tmp_path / "fakes"
    shutil.copytree(new_fakes, fakes, symlinks=False)
    real = sorted((FACES / "ffhq" / "val").glob("*.png"))[0]
    shutil.copy(real, fakes / "copied.png")
    cfg = AdaptConfig(fake=[str(fakes)], real=[str(FACES / "ffhq" / "val")], model=str(trained_checkpoint),
                      out=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="byte-identical"):
        adapt(cfg, progress=False)
    assert not (tmp_path / "out").exists()


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_bad_input_is_one_line_and_touches_nothing(tmp_path, capsys, trained_checkpoint, new_fakes):
    few = _link(sorted(new_fakes.iterdir())[:5], tmp_path / "few")
    base = ["adapt", "--model", str(trained_checkpoint), "--real", str(FACES / "ffhq" / "val")]
    err = _cli_error(capsys, base + ["--fake", str(few), "--out", str(tmp_path / "o1")])
    assert "only 5 usable fake faces" in err and "at least 10" in err
    noise = tmp_path / "noise"
    noise.mkdir()
    for i in range(12):      # flat colours: photos with no face in them
        Image.new("RGB", (200, 160), (20 * i, 255 - 20 * i, 90)).save(noise / f"n{i}.png")
    assert "12 without a face" in _cli_error(capsys, base + ["--fake", str(noise), "--out", str(tmp_path / "o2")])
    err = _cli_error(capsys, ["adapt", "--model", str(tmp_path), "--fake", str(few), "--out", str(tmp_path / "o3")])
    assert "is not a checkpoint folder" in err
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("keep me")
    assert "already exists" in _cli_error(capsys, base + ["--fake", str(few), "--out", str(kept)])
    assert (kept / "mine.txt").read_text() == "keep me"
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3"))


def test_too_few_reals_for_a_threshold_are_refused(tmp_path, trained_checkpoint, new_fakes):
    reals = _link(sorted((FACES / "ffhq" / "val").glob("*.png"))[:12], tmp_path / "reals")
    cfg = AdaptConfig(fake=[str(new_fakes)], real=[str(reals)], model=str(trained_checkpoint),
                      out=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="12 reals cannot carry a 3% threshold"):
        adapt(cfg, progress=False)
