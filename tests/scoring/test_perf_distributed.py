"""torchrun with 2 gloo processes on the CPU: sharded evaluation gathers exactly the
single-process metrics, and DDP training runs to a checkpoint whose recorded
validation score a single process reproduces."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import load_file

from patchforensics.core import ranks
from patchforensics.scoring import distributed
from patchforensics.data.dataset import collect_samples
from patchforensics.evaluation.evaluate import SCORE_COLUMNS, TestConfig as EvalConfig, run_test
from patchforensics.core.imageio import SkipLog
from patchforensics.scoring.engine import Engine
from patchforensics.scoring.metrics import AGGREGATIONS, PatchHistogram, Predictions
from patchforensics.data.dataset import split_samples
from patchforensics.scoring.runtime import FastPath


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "patchforensics", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_shards_cover_every_item_once():
    items = list(range(11))
    shards = [distributed.shard(items, ranks.DistContext(rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(shards, [])) == items and [len(s) for s in shards] == [4, 4, 3]


def test_single_process_needs_no_group():
    ctx = ranks.setup("cpu")
    assert not ctx.distributed and ctx.is_main and ctx.backend is None
    preds = Predictions(["a"], np.array([1]), {a: np.array([0.5]) for a in AGGREGATIONS}, PatchHistogram(),
                        SkipLog(), np.array([0]))
    assert distributed.gather_predictions(preds, [0], [], ctx) is preds


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_torchrun_two_gloo_processes_evaluate_like_one(trained_checkpoint, small_face_dirs, tmp_path):
    real, fake = str(small_face_dirs["real"]), str(small_face_dirs["fake"])
    torchrun("test", str(trained_checkpoint), "--real", real, "--fake", fake, "--dataset-name", "ddp",
             "--which-epoch", "latest", "--results-dir", str(tmp_path / "ddp"), "--device", "cpu",
             "--batch-size", "8", "--bf16", "off")
    # fp32 on both sides (bf16 on some CPUs by default): the test is about sharding, not precision
    single, single_dir = run_test(EvalConfig(str(trained_checkpoint), [real], [fake], "ddp", which_epoch="latest",
                                             results_dir=str(tmp_path / "single"), device="cpu", batch_size=8,
                                             bf16="off"),
                                  progress=False)
    ddp_dir = tmp_path / "ddp" / single_dir.relative_to(tmp_path / "single")
    gathered = json.loads((ddp_dir / "metrics.json").read_text())
    for agg, m in single["metrics"].items():
        for key, v in m.items():
            assert gathered["metrics"][agg][key] == pytest.approx(v, abs=1e-6), (agg, key)
    rows_single, rows_ddp = read_csv(single_dir / "scores.csv"), read_csv(ddp_dir / "scores.csv")
    assert [r["path"] for r in rows_ddp] == [r["path"] for r in rows_single]   # same order, none lost
    for c in SCORE_COLUMNS:
        np.testing.assert_allclose([float(r[c]) for r in rows_ddp], [float(r[c]) for r in rows_single], atol=2e-6)


def test_torchrun_two_gloo_processes_train(small_face_dirs, tmp_path):
    real, fake = str(small_face_dirs["real"]), str(small_face_dirs["fake"])
    out = torchrun("train", "--real", real, "--fake", fake, "--model", "xception_block1", "--max-epochs", "1",
                   "--batch-size", "8", "--max-per-class", "16", "--patience", "0", "--device", "cpu",
                   "--bf16", "off",
                   "--checkpoints-dir", str(tmp_path / "ck"), "--runs-dir", str(tmp_path / "runs"))
    assert out.stdout.count("trained xception_block1") == 1   # rank 0 alone reports
    ckpt = tmp_path / "ck" / "xception_block1_size128"
    summary = json.loads((ckpt / "train_summary.json").read_text())
    assert summary["status"] == "finished" and len(summary["history"]) == 1
    assert load_file(str(ckpt / "latest.safetensors"))   # written once, by rank 0
    # the validation AP gathered from 2 shards = one process scoring all of val
    _, val = split_samples([real], [fake], max_per_class=16)
    ap = Engine.load(ckpt, "latest", fast=FastPath(bf16="off")).predict(val, progress=False).metrics()["after_softmax"]["ap"]
    assert summary["history"][0]["after_softmax_ap"] == pytest.approx(ap, abs=1e-6)
    assert len(val) == len(collect_samples([real], [fake], split="val"))
