"""The command line: results layout, suites, and clear errors before any work."""
from __future__ import annotations

import json

import numpy as np
import torch
import pytest

from patchforensics.cli import main
from patchforensics.data.dataset import collect_samples
from patchforensics.data.transforms import parse_corruptions
from patchforensics.evaluation.evaluate import read_scores_csv
from patchforensics.scoring.engine import Engine


def test_test_command_writes_the_seed_layout_and_skips_done_work(trained_checkpoint, small_face_dirs, tmp_path,
                                                                 capsys):
    args = ["test", str(trained_checkpoint), "--real", str(small_face_dirs["real"]),
            "--fake", str(small_face_dirs["fake"]), "--dataset-name", "small", "--results-dir", str(tmp_path)]
    assert main(args) == 0
    out = tmp_path / trained_checkpoint.name / "test" / "epoch_bestval" / "small"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"vote", "before_softmax", "after_softmax", "patch"}
    assert metrics["metrics"]["after_softmax"]["n"] == 60
    assert (out / "pr_curve.png").stat().st_size > 1000
    assert len((out / "scores.csv").read_text().splitlines()) == 61
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0                                   # unchanged checkpoint: not recomputed
    assert (out / "metrics.json").stat().st_mtime_ns == stamp
    assert main(args + ["--force"]) == 0
    assert (out / "metrics.json").stat().st_mtime_ns != stamp
    # corruptions are recorded in the path and in metrics.json
    assert main(args + ["--corrupt", "jpeg:75", "--corrupt", "flip"]) == 0
    corrupted = json.loads((out.parent / "small_jpeg75_flip" / "metrics.json").read_text())
    assert corrupted["corruptions"] == ["jpeg:75", "flip"]
    # ... and really applied: the scores are those of the corrupted images, not the clean ones
    samples = collect_samples([small_face_dirs["real"]], [small_face_dirs["fake"]], split="test")
    engine = Engine.load(trained_checkpoint, device="cpu")
    by_hand = engine.predict(samples, parse_corruptions(["jpeg:75", "flip"]), progress=False)
    _, _, clean = read_scores_csv(out / "scores.csv")
    _, _, bad = read_scores_csv(out.parent / "small_jpeg75_flip" / "scores.csv")
    np.testing.assert_allclose(bad["after_softmax"], by_hand.p_fake("after_softmax"), atol=1e-5)
    assert np.abs(bad["after_softmax"] - clean["after_softmax"]).max() > 1e-3
    assert corrupted["metrics"]["after_softmax"]["ap"] == pytest.approx(
        by_hand.metrics()["after_softmax"]["ap"], abs=1e-4)


def test_test_command_takes_the_everyday_edits(trained_checkpoint, small_face_dirs, tmp_path):
    """``test --corrupt grey`` (and the other edits the probe shares) score the edited images."""
    args = ["test", str(trained_checkpoint), "--real", str(small_face_dirs["real"]),
            "--fake", str(small_face_dirs["fake"]), "--dataset-name", "small", "--results-dir", str(tmp_path)]
    assert main(args + ["--corrupt", "grey", "--corrupt", "backdrop:white"]) == 0
    out = tmp_path / trained_checkpoint.name / "test" / "epoch_bestval" / "small_grey_backdropwhite"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["corruptions"] == ["grey", "backdrop:white"]
    samples = collect_samples([small_face_dirs["real"]], [small_face_dirs["fake"]], split="test")
    by_hand = Engine.load(trained_checkpoint, device="cpu").predict(
        samples, parse_corruptions(["grey", "backdrop:white"]), progress=False)
    _, _, scored = read_scores_csv(out / "scores.csv")
    np.testing.assert_allclose(scored["after_softmax"], by_hand.p_fake("after_softmax"), atol=1e-5)


def test_suite_writes_one_table(trained_checkpoint, small_face_dirs, tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: mini\nroot: {small_face_dirs['real'].parent}\n"
                     "datasets:\n  - {name: small, real: real, fake: fake}\n"
                     "corruptions: [[], [blur:1.0]]\n")
    assert main(["test-suite", str(trained_checkpoint), str(suite), "--results-dir", str(tmp_path / "r")]) == 0
    table = (tmp_path / "r" / trained_checkpoint.name / "test" / "epoch_bestval" / "suite_mini.csv").read_text()
    lines = table.splitlines()
    assert lines[0].startswith("dataset,corruption,aggregation,ap")
    assert len(lines) == 1 + 2 * 4                  # 2 corruption settings x (3 aggregations + patch)
    assert "| small | blur:1.0 | after_softmax |" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "--real", "/nonexistent/reals", "--fake", "x"], "not a folder"),
    (["train", "--real", "{real}", "--fake", "{empty}"], "empty"),
    (["train", "--real", "{real}", "--fake", "{real}", "--model", "vgg16"], "unknown model name"),
    (["train", "--real", "{real}", "--fake", "{real}", "--fine-size", "300"], "fine_size"),
    (["test", "/nonexistent/ckpt", "--real", "{real}", "--fake", "{real}", "--dataset-name", "x"], "not found"),
    (["test", "{ckpt}", "--real", "{real}", "--fake", "{real}", "--dataset-name", "x", "--corrupt", "jpeg:500"],
     "jpeg"),
    (["test-suite", "{ckpt}", "no_such_suite"], "faces128"),
])
def test_bad_input_fails_at_once_with_a_hint(argv, message, small_face_dirs, trained_checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    subst = {"real": str(small_face_dirs["real"]), "empty": str(empty), "ckpt": str(trained_checkpoint)}
    argv = [a.format(**subst) for a in argv] + (["--checkpoints-dir", str(tmp_path / "ck")]
                                                if argv[0] == "train" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "error:" in err
    assert not (tmp_path / "ck").exists()


def test_models_lists_every_model_with_its_field(capsys):
    from patchforensics.models import architecture_field, is_patch_model, list_models

    assert main(["models", "--size", "96"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert set(rows) == set(list_models())
    for name, cells in rows.items():
        if is_patch_model(name):
            rf = architecture_field(name, 96)
            assert cells[1:] == ["patch", str(rf.size[0]), str(rf.stride[0]), f"{rf.output_size[0]}x{rf.output_size[1]}"]
        else:
            assert cells[1] == "full"
    assert rows["xception_block2"][2:] == ["43", "8", "12x12"]      # the README's field, at 96 px
    assert main(["models", "--size", "0"]) == 2


@pytest.mark.parametrize("command", ["test", "patches", "visualize", "calibrate"])
def test_unknown_partition_is_refused_naming_the_splits(command, small_face_dirs, trained_checkpoint, tmp_path,
                                                        capsys):
    """A misspelt --partition used to score every image of the folders, training images included."""
    argv = [command, str(trained_checkpoint), "--real", str(small_face_dirs["real"]), "--fake",
            str(small_face_dirs["fake"]), "--partition", "tset"]
    if command == "calibrate":
        argv += ["--force"]          # the checkpoint holds train's thresholds; --force must not skip the check
    else:
        argv += ["--dataset-name", "x", "--results-dir", str(tmp_path / "results")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"no subfolder 'tset' in {small_face_dirs['real']}; it has train, val, test" in err
    assert err.count("\n") == 1 and not (tmp_path / "results").exists()


def test_a_flat_folder_is_used_whole_and_a_partial_one_is_refused(small_face_dirs, tmp_path):
    from patchforensics.data.dataset import collect_samples, split_samples

    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted((small_face_dirs["fake"] / "test").iterdir())[:5]:
        (flat / p.name).symlink_to(p.resolve())
    samples = collect_samples([small_face_dirs["real"]], [flat], split="test")
    assert sum(s.label == 0 for s in samples) == 5                           # no split subfolders: used whole
    assert sum(s.label == 1 for s in samples) == 30                          # the reals' test/ only
    only_test = tmp_path / "only_test"
    (only_test / "test").mkdir(parents=True)
    (only_test / "test" / "a.png").symlink_to(next(flat.iterdir()).resolve())
    with pytest.raises(ValueError, match="it has test"):
        collect_samples([only_test], [flat], split="val")
    with pytest.raises(ValueError, match="not both train/ and val/"):
        split_samples([only_test], [flat])                                   # train must not read test/


def test_results_record_and_are_keyed_on_the_effective_precision_and_backend(trained_checkpoint, small_face_dirs,
                                                                            tmp_path, capsys):
    """'test --bf16 off' after a bf16 run used to return the cached bf16 results without a word."""
    from patchforensics.models.card import ModelCard
    from patchforensics.scoring.runtime import cpu_kind, use_bf16
    from patchforensics.training.train import TrainConfig

    args = ["test", str(trained_checkpoint), "--real", str(small_face_dirs["real"]), "--fake",
            str(small_face_dirs["fake"]), "--dataset-name", "small", "--results-dir", str(tmp_path),
            "--backend", "torch"]
    metrics_file = tmp_path / trained_checkpoint.name / "test" / "epoch_bestval" / "small" / "metrics.json"
    runs = {}
    for bf16 in ("on", "off", "off"):
        assert main(args + ["--bf16", bf16]) == 0
        runs.setdefault(bf16, []).append((json.loads(metrics_file.read_text()), capsys.readouterr().err))
    (bf16_run, err_on), = runs["on"]
    (fp32_run, err_first), (again, err_again) = runs["off"]
    assert bf16_run["runtime"] == {"precision": "bf16", "backend": "torch", "device": "cpu", "cpu": cpu_kind()}
    assert fp32_run["runtime"]["precision"] == "fp32" and fp32_run["key"]["precision"] == "fp32"
    assert fp32_run["metrics"] != bf16_run["metrics"]                   # recomputed, not the bf16 numbers
    assert "reusing" not in err_on + err_first
    assert again == fp32_run and "reusing the results in" in err_again and "fp32 on torch" in err_again
    # visualize reuses test's scores.csv under the same rule
    from patchforensics.explain.visualize import _stored_scores
    from patchforensics.scoring.runtime import FastPath

    samples = collect_samples([small_face_dirs["real"]], [small_face_dirs["fake"]], split="test")
    for bf16, reused in (("off", True), ("on", False)):
        engine = Engine.load(trained_checkpoint, fast=FastPath(backend="torch", bf16=bf16), device="cpu")
        assert (_stored_scores(metrics_file.parent, engine, samples, []) is not None) == reused
    # config.yaml says what training really ran with, not just 'bf16: auto'
    card = ModelCard.read(trained_checkpoint)
    assert card.options["bf16"] == "auto" and card.runtime["cpu"] == cpu_kind()
    # what --bf16 auto decided on this CPU (or as $PATCHFORENSICS_NATIVE_BF16 says the other kind would)
    assert card.runtime["precision"] == ("bf16" if use_bf16("auto", torch.device("cpu")) else "fp32")
    assert TrainConfig(bf16="on").runtime(torch.device("cpu"))["precision"] == "bf16"
