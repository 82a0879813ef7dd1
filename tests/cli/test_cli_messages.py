"""Errors a user can fix end in one line and exit status 2, not a traceback: a device
this machine lacks, a closed output pipe (``… | head -1``)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from patchforensics.cli import main
from patchforensics.core.device import resolve_device

from conftest import REPO, listed


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without a GPU, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.mark.parametrize("name, message", [("cuda", "no CUDA GPU"), ("cuda:1", "no CUDA GPU"),
                                           ("gpu", "not a device name"), ("tpu", "not a device name")])
def test_a_device_this_machine_lacks_is_a_one_line_error(no_cuda, name, message):
    with pytest.raises(ValueError, match=message):
        resolve_device(name)
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("command", ["detect", "calibrate", "train", "regions", "sample"])
def test_every_command_stops_on_a_missing_gpu_before_writing(no_cuda, command, faces, tmp_path, capsys):
    image = str(faces / listed("ffhq/test", 1)[0])
    bundled = str(REPO / "src" / "patchforensics" / "bundled")
    argv = {"detect": ["detect", image, "--heatmaps", str(tmp_path / "out")],
            "calibrate": ["calibrate", bundled, "--which-epoch", "weights", "--force"],
            "train": ["train", "--real", str(faces / "ffhq"), "--fake", str(faces / "stylegan1"),
                      "--checkpoints-dir", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")],
            # mediapipe and ONNX networks run on the CPU, but a device this machine lacks is still refused
            "regions": ["regions", str(tmp_path / "patches"), "-o", str(tmp_path / "out")],
            "sample": ["sample", str(tmp_path / "gen.onnx"), str(tmp_path / "out")]}[command]
    for device in ("cuda", "gpu"):
        assert main([*argv, "--device", device]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"patchforensics {command}: error: --device {device}:")
    assert list(tmp_path.iterdir()) == []


def test_a_closed_output_pipe_is_one_line_exit_2():
    """``patchforensics models | head -1``: the reader is gone before the output is written."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "patchforensics", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=Path(__file__).parent)
    proc.stdout.close()                       # like head after its first line
    _, err = proc.communicate(timeout=120)
    lines = err.decode().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "broken pipe" in lines[0], lines


@pytest.mark.parametrize("command, module, hint", [
    ("experiment", "patchforensics.experiments.runner.run_experiment", "run the same command again to resume"),
    ("train", "patchforensics.training.train.train", "rerun the same command with --resume")])
def test_ctrl_c_says_how_to_go_on(command, module, hint, monkeypatch, faces, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(module, interrupted)
    argv = {"experiment": ["experiment", "rf-ablation", "--out", str(tmp_path / "exp")],
            "train": ["train", "--real", str(faces / "ffhq"), "--fake", str(faces / "stylegan1"),
                      "--checkpoints-dir", str(tmp_path / "ck"), "--runs-dir", str(tmp_path / "runs")]}[command]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"patchforensics {command}: interrupted; {hint}")


def test_experiment_help_names_the_real_default_output(capsys):
    from patchforensics.experiments.grid import load_grid

    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    default = load_grid("rf-ablation").out                  # where a grid goes without --out
    assert f"--out OUT output folder (default: {default}," in text
