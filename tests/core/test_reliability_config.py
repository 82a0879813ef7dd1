"""Config validation: unknown keys, wrong types and impossible values fail before
any work, with a message naming the key, through the Python API and ``--config``."""
from __future__ import annotations

import pytest
import yaml

from patchforensics.evaluation import evaluate
from patchforensics.cli import main as cli_main
from patchforensics.core.config import ConfigError, from_dict, load_yaml_file
from patchforensics.training.train import TrainConfig

BAD_TRAIN_OPTIONS = [
    ({"batch_sise": 8}, "batch_sise", "did you mean 'batch_size'"),
    ({"lr": -0.001}, "lr", "positive"),
    ({"lr": float("nan")}, "lr", "positive"),
    ({"lr": "fast"}, "lr", "expected a number"),
    ({"lr": "1e-3"}, "lr", "decimal point"),          # PyYAML reads 1e-3 as text
    ({"load_size": 128, "fine_size": 256}, "fine_size", "larger than load_size"),
    ({"patience": -1}, "patience", ">= 0"),
    ({"batch_size": "32"}, "batch_size", "expected an integer"),
    ({"batch_size": 1}, "batch_size", "at least 2"),
    ({"max_epochs": 2.5}, "max_epochs", "expected an integer"),
    ({"flip": "yes"}, "flip", "true/false"),
    ({"real": 5}, "real", "expected a list"),
    ({"model": "xception_block9"}, "model", "unknown model name"),
    ({"cnn_aug_prob": 1.5}, "cnn_aug_prob", "probability"),
    ({"grey_prob": -0.1}, "grey_prob", "probability"),
    ({"val_metric": "accuracy"}, "val_metric", "must be one of"),
    ({"suffix": "{nonsense}"}, "suffix", "unknown field"),
]


@pytest.mark.parametrize("options,key,hint", BAD_TRAIN_OPTIONS, ids=[k for _, k, _ in BAD_TRAIN_OPTIONS])
def test_python_api_names_the_key(options, key, hint):
    with pytest.raises(ConfigError) as info:
        from_dict(TrainConfig, {"real": ["r"], "fake": ["f"], **options})
    message = str(info.value)
    assert key in message and hint in message, message


def test_required_and_nested_keys_are_named():
    with pytest.raises(ConfigError, match="^checkpoint: required key is missing"):
        from_dict(evaluate.TestConfig, {"real": ["r"], "fake": ["f"], "dataset_name": "x"})
    with pytest.raises(ConfigError, match="^batch_size: must be > 0"):
        from_dict(evaluate.TestConfig, {"checkpoint": "c", "real": ["r"], "fake": ["f"], "dataset_name": "x",
                               "batch_size": 0})
    with pytest.raises(ConfigError, match="corrupt: unknown corruption"):
        from_dict(evaluate.TestConfig, {"checkpoint": "c", "real": ["r"], "fake": ["f"], "dataset_name": "x",
                               "corrupt": ["jpeg:75", "sepia"]})


@pytest.mark.parametrize("options,key,hint", BAD_TRAIN_OPTIONS[:9], ids=[k for _, k, _ in BAD_TRAIN_OPTIONS[:9]])
def test_cli_config_file_fails_before_any_work(small_face_dirs, tmp_path, capsys, options, key, hint):
    work = tmp_path / "work"
    config = {"real": [str(small_face_dirs["real"])], "fake": [str(small_face_dirs["fake"])],
              "model": "xception_block1", "checkpoints_dir": str(work / "checkpoints"),
              "runs_dir": str(work / "runs"), **options}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    if options.get("lr") == "1e-3":                  # write it as a person would: unquoted
        bad.write_text(bad.read_text().replace("'1e-3'", "1e-3"))
    assert cli_main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("patchforensics train: error: ") and key in err and hint in err, err
    assert not work.exists()                         # nothing was created


def test_cli_option_overrides_are_validated_too(small_face_dirs, tmp_path, capsys):
    args = ["train", "--real", str(small_face_dirs["real"]), "--fake", str(small_face_dirs["fake"]),
            "--checkpoints-dir", str(tmp_path / "c"), "--runs-dir", str(tmp_path / "r")]
    assert cli_main(args + ["--load-size", "64", "--fine-size", "128"]) == 2
    assert "fine_size" in capsys.readouterr().err
    assert cli_main(args + ["--patience", "-3"]) == 2
    assert "patience" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_broken_yaml_gives_the_line(tmp_path, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text("model: xception_block1\nlr: [0.1\nbatch_size: 8\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: not valid YAML"):
        load_yaml_file(bad)
    assert cli_main(["train", "--config", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    listed = tmp_path / "list.yaml"
    listed.write_text("- model\n- lr\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml_file(listed)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_yaml_file(tmp_path / "missing.yaml")


def test_yaml_never_builds_python_objects(tmp_path, capsys):
    """A config with a Python tag is refused (safe_load): its command never runs."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    assert cli_main(["train", "--config", str(evil)]) == 2
    assert "tags that build Python objects" in capsys.readouterr().err
    assert not marker.exists()
