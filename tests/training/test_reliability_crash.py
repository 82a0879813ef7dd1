"""Crash safety: a training run killed with SIGKILL at a random point resumes with
``--resume`` to bit-identical weights, and nothing half-written is ever read back."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from patchforensics.core import fileio
from patchforensics.models.card import ModelCard
from patchforensics.models.checkpoint import RESUME_FILE, load_tensors
from patchforensics.cli import build_parser, main as cli_main
from patchforensics.cli.train import load_train_config
from reliability_support import one_thread  # noqa: F401 (fixture)

NAME = "crash"
EPOCHS = 2


def train_args(dirs: dict[str, Path], root: Path) -> list[str]:
    """A tiny deterministic run: 16 images per class, batch 4 -> 8 steps per epoch,
    a resumable snapshot after every step."""
    return ["train", "--real", str(dirs["real"]), "--fake", str(dirs["fake"]),
            "--model", "xception_block1", "--name", NAME, "--load-size", "48", "--fine-size", "48",
            "--batch-size", "4", "--max-per-class", "16", "--max-epochs", str(EPOCHS), "--patience", "0",
            "--save-latest-freq", "1", "--seed", "3", "--random-crop", "--color-jitter",
            "--checkpoints-dir", str(root / "checkpoints"), "--runs-dir", str(root / "runs")]


def snapshot_step(resume_file: Path) -> int:
    """Global step recorded in the snapshot (0 if none yet). Reading while the
    trainer replaces it is safe: the rename is atomic, so we see old or new."""
    try:
        return int(load_tensors(resume_file)[1]["progress"]["global_step"])
    except (FileNotFoundError, ValueError):
        return 0


def assert_everything_readable(ckpt_dir: Path) -> None:
    """Every file a later run could read is complete; only hidden temp files may be partial."""
    ModelCard.read(ckpt_dir)
    for f in ckpt_dir.iterdir():
        if f.suffix == ".safetensors":
            tensors, _ = load_tensors(f)
            assert tensors, f
        elif f.suffix == ".yaml":
            assert fileio.read_yaml(f), f
        elif f.suffix == ".json":
            json.loads(f.read_text())


def test_sigkill_then_resume_gives_bit_identical_weights(small_face_dirs, tmp_path, capsys, one_thread):
    steps_total = EPOCHS * 8
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    kill_after_step = rng.randint(1, steps_total - 2)
    extra_delay = rng.uniform(0.0, 0.05)   # lands anywhere: mid-step, mid-write, mid-validation

    # ---- the run that gets killed (a real process, no chance to clean up)
    crashed = tmp_path / "crashed"
    ckpt = crashed / "checkpoints" / NAME
    cmd = [sys.executable, "-m", "patchforensics", *train_args(small_face_dirs, crashed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while snapshot_step(ckpt / RESUME_FILE) < kill_after_step:
        assert proc.poll() is None, f"training ended before the kill: {proc.stdout.read().decode()}"
        assert time.monotonic() < deadline, "training too slow"
        time.sleep(0.01)
    time.sleep(extra_delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    step_at_kill = snapshot_step(ckpt / RESUME_FILE)
    assert_everything_readable(ckpt)
    assert not (ckpt / "train_summary.json").exists()

    # ---- resume it with --resume (in this process: everything comes from disk)
    assert cli_main(train_args(small_face_dirs, crashed) + ["--resume"]) == 0
    assert_everything_readable(ckpt)
    assert not [p.name for p in ckpt.iterdir() if p.name.startswith(".")], "killed run's temp files left"

    # ---- the uninterrupted reference
    clean = tmp_path / "clean"
    assert cli_main(train_args(small_face_dirs, clean)) == 0
    ref = clean / "checkpoints" / NAME

    for which in ("latest", "bestval"):
        got, meta_got = load_tensors(ckpt / f"{which}.safetensors")
        want, meta_want = load_tensors(ref / f"{which}.safetensors")
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), f"{which} {k} differs after resume"
        assert meta_got == meta_want
    summary_got = json.loads((ckpt / "train_summary.json").read_text())
    summary_want = json.loads((ref / "train_summary.json").read_text())
    def timeless(history):   # wall-clock seconds differ between any two runs
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]
    assert timeless(summary_got["history"]) == timeless(summary_want["history"])
    assert summary_got["status"] == "finished"
    with capsys.disabled():
        print(f"\n[crash test] seed {seed}: SIGKILL after step {step_at_kill}/{steps_total} "
              f"(+{extra_delay * 1000:.0f} ms); resumed weights bit-identical")


def test_interrupted_atomic_write_keeps_old_file(tmp_path):
    """A write that dies half-way leaves the previous complete file, and no visible partial one."""
    target = tmp_path / "metrics.json"
    fileio.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "trunc')
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_dead_writers_temp_files_are_swept_live_ones_kept(tmp_path):
    """A writer SIGKILLed inside ``atomic_path`` leaves its temp file; the sweep removes it
    (its pid is gone) but leaves the temp file of a writer that is still running."""
    child = (f"import os, signal; from patchforensics.core import fileio\n"
             f"with fileio.atomic_path({str(tmp_path / 'latest.safetensors')!r}) as tmp:\n"
             f"    tmp.write_bytes(b'half')\n"
             f"    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", child])
    assert proc.returncode == -signal.SIGKILL
    dead = [p for p in tmp_path.iterdir() if p.name.startswith(".latest.safetensors.")]
    assert len(dead) == 1 and dead[0].read_bytes() == b"half"
    with fileio.atomic_path(tmp_path / "metrics.json") as live_tmp:
        live_tmp.write_text("{}")
        assert fileio.remove_stale_temps(tmp_path) == dead
        assert live_tmp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_truncated_snapshot_is_refused_with_a_clear_error(small_face_dirs, tmp_path, capsys):
    """A damaged resume file (e.g. a disk that filled up) gives a one-line error, not a traceback."""
    args = train_args(small_face_dirs, tmp_path) + ["--max-epochs", "1"]
    ckpt = tmp_path / "checkpoints" / NAME
    ckpt.mkdir(parents=True)
    # the config.yaml that train writes before any snapshot (--resume compares the options with it)
    load_train_config(build_parser().parse_args(args)).card(NAME).write(ckpt)
    data = os.urandom(64)
    (ckpt / RESUME_FILE).write_bytes(data)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_tensors(ckpt / RESUME_FILE)
    capsys.readouterr()
    assert cli_main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err                    # one line ...
    assert err.startswith("patchforensics train: error: ") and "not a readable safetensors file" in err
    assert str(ckpt / RESUME_FILE) in err                                      # ... naming the file
