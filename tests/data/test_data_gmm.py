"""gmm-fit / gmm-sample: the mixture-of-factor-analysers generator, its EM fit,
its saved form, and a ``gmm`` row in a test-suite table."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from patchforensics.cli import main
from patchforensics.core.config import ConfigError
from patchforensics.data.gmm import (GMMFitConfig, MixtureOfFactorAnalyzers, fit_gmm, fit_mfa, load_gmm,
                                make_gmm_fakes)
from patchforensics.evaluation.suite import load_suite, run_suite


def log_px(model: MixtureOfFactorAnalyzers, x: np.ndarray) -> float:
    joint = model.log_likelihood(x)
    top = joint.max(1, keepdims=True)
    return float((top[:, 0] + np.log(np.exp(joint - top).sum(1))).mean())


def test_em_recovers_a_known_mixture():
    rng = np.random.default_rng(0)
    d, l = 12, 2
    truth = MixtureOfFactorAnalyzers(
        weights=np.array([0.3, 0.7]),
        means=np.stack([np.full(d, 0.25), np.full(d, 0.75)]).astype(np.float32),
        loadings=(rng.standard_normal((2, d, l)) * 0.08).astype(np.float32),
        noise_variances=np.full((2, d), 0.01 ** 2, np.float32), resolution=2, channels=3)  # D = 2·2·3
    x, components, _ = truth.sample(3000, rng, noise=True)
    x = x.reshape(3000, d)
    train, held_out = x[:2000], x[2000:]
    model, history = fit_mfa(train, n_components=2, latent_dim=l, iterations=15, progress=False)
    assert all(b >= a - 1e-5 for a, b in zip(history, history[1:])), history    # EM never goes down
    assert sorted(np.round(model.weights, 2)) == pytest.approx([0.3, 0.7], abs=0.04)
    assert log_px(model, held_out) >= log_px(truth, held_out) - 0.05 * d
    # the learned low-rank + diagonal covariance is the sample covariance of that component's points
    k = int(np.argmin(np.abs(model.means[:, 0] - 0.75)))
    learned = model.loadings[k] @ model.loadings[k].T + np.diag(model.noise_variances[k])
    sample_cov = np.cov(train[components[:2000] == 1].T, bias=True)
    assert np.abs(learned - sample_cov).max() < 5e-4 < np.abs(sample_cov).max() / 20


@pytest.fixture(scope="module")
def gmm_fakes(tmp_path_factory, small_face_dirs):
    out = tmp_path_factory.mktemp("gmm") / "gmm"
    real_train = small_face_dirs["real"] / "train"
    fit = GMMFitConfig(real=str(real_train), out=str(out / "model"), resolution=16, n_components=3,
                       latent_dim=4, iterations=4)
    return make_gmm_fakes(real_train, out, n_train=6, n_val=2, n_test=30, seed=0, progress=False, fit=fit)


def test_make_gmm_fakes_writes_a_dataset_at_the_reals_size(gmm_fakes):
    counts = {s: sorted((gmm_fakes / s).glob("*.png")) for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in counts.items()} == {"train": 6, "val": 2, "test": 30}
    im = Image.open(counts["test"][0])
    assert im.size == (128, 128) and im.mode == "RGB"
    pixels = np.stack([np.asarray(Image.open(p), dtype=float) for p in counts["test"]])
    assert pixels.std(0).mean() > 5                       # samples differ from one another
    assert sorted(p.name for p in (gmm_fakes / "model").iterdir()) == ["gmm.safetensors", "gmm.yaml"]
    meta = yaml.safe_load((gmm_fakes / "model" / "gmm.yaml").read_text())
    assert meta["resolution"] == 16 and meta["n_components"] == 3 and meta["fit"]["training_vectors"] == 120
    summary = json.loads((gmm_fakes / "summary.json").read_text())
    assert summary["counts"] == {"train": 6, "val": 2, "test": 30}
    assert np.load(gmm_fakes / "components.npy").shape == (38,)


def test_gmm_row_in_a_test_suite(gmm_fakes, small_face_dirs, trained_checkpoint, tmp_path):
    suite_file = tmp_path / "demo.yaml"
    suite_file.write_text(yaml.safe_dump({"name": "demo", "datasets": [
        {"name": "gmm", "real": str(small_face_dirs["real"]), "fake": str(gmm_fakes)}]}))
    result = run_suite(trained_checkpoint, load_suite(suite_file), results_dir=str(tmp_path / "results"),
                       progress=False)
    rows = [r for r in result.rows if r["dataset"] == "gmm"]
    assert {r["aggregation"] for r in rows} >= {"vote", "before_softmax", "after_softmax", "patch"}
    assert next(r for r in rows if r["aggregation"] == "vote")["n"] == 60
    assert "| gmm |" in result.markdown()


def test_saved_model_round_trip_and_validation(gmm_fakes, tmp_path):
    model = load_gmm(gmm_fakes / "model")
    assert model.means.shape == (3, 16 * 16 * 3) and model.loadings.shape == (3, 16 * 16 * 3, 4)
    assert abs(model.weights.sum() - 1) < 1e-6 and (model.noise_variances > 0).all()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "gmm.safetensors").write_bytes((gmm_fakes / "model" / "gmm.safetensors").read_bytes())
    meta = yaml.safe_load((gmm_fakes / "model" / "gmm.yaml").read_text())
    meta["latent_dim"] = 5
    (broken / "gmm.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(ValueError, match="loadings"):
        load_gmm(broken)
    with pytest.raises(FileNotFoundError):
        load_gmm(tmp_path)
    with pytest.raises(ConfigError, match="components"):
        fit_gmm(GMMFitConfig(real=str(gmm_fakes / "val"), out=str(tmp_path / "m"), n_components=5,
                             resolution=8, flip=False), progress=False)


def test_cli_fit_and_sample_are_deterministic(small_face_dirs, tmp_path, capsys):
    real = str(small_face_dirs["real"])
    assert main(["gmm-fit", real, str(tmp_path / "m"), "--resolution", "8", "--components", "2",
                 "--latent-dim", "3", "--iterations", "3", "--max-images", "40"]) == 0
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(["gmm-sample", str(tmp_path / "m"), str(tmp_path / name), "-n", "10", "--size", "32",
                     "--seed", seed, "--split", "0,0,1"]) == 0
    files = sorted(p.name for p in (tmp_path / "a" / "test").iterdir())
    assert len(files) == 10
    same = [(tmp_path / "a" / "test" / f).read_bytes() == (tmp_path / "b" / "test" / f).read_bytes() for f in files]
    other = [(tmp_path / "a" / "test" / f).read_bytes() == (tmp_path / "c" / "test" / f).read_bytes() for f in files]
    assert all(same) and not any(other)
    capsys.readouterr()
    assert main(["gmm-sample", str(tmp_path / "nowhere"), str(tmp_path / "d")]) == 2
    assert "gmm-fit" in capsys.readouterr().err
    assert main(["gmm-fit", real, str(tmp_path / "m2"), "--resolution", "2"]) == 2


def test_gmm_sample_force_replaces_the_output(small_face_dirs, tmp_path):
    import csv

    from conftest import pngs

    assert main(["gmm-fit", str(small_face_dirs["real"]), str(tmp_path / "m"), "--resolution", "8",
                 "--components", "2", "--latent-dim", "2", "--iterations", "2", "--max-images", "20"]) == 0
    out = tmp_path / "out"
    assert main(["gmm-sample", str(tmp_path / "m"), str(out), "-n", "12", "--size", "16", "--seed", "0"]) == 0
    assert main(["gmm-sample", str(tmp_path / "m"), str(out), "-n", "6", "--size", "16", "--seed", "1",
                 "--force"]) == 0
    with open(out / "manifest.csv") as f:
        assert pngs(out) == sorted(r["output"] for r in csv.DictReader(f))
    assert len(pngs(out)) == 6
