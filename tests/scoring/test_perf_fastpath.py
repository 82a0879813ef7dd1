"""Fast paths give the reference path's results: BN folding, channels_last, ONNX
Runtime, the decoded-image cache and the training step; and each can be switched off."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from patchforensics.core.config import ConfigError
from patchforensics.data.dataset import ImageDataset, collect_samples
from patchforensics.evaluation import evaluate
from patchforensics.models.checkpoint import load_model
from patchforensics.scoring.engine import Engine
from patchforensics.scoring.runtime import (CachedImageDataset, FastPath, _cpu_flags, cache_prefix, cpu_has_native_bf16,
                                             fold_batchnorm, inference_backend, make_dataset, use_bf16,
                                             NATIVE_BF16_ENV)
from patchforensics.scoring.metrics import AGGREGATIONS
from patchforensics.models import create_model
from patchforensics.training.train import TrainConfig, TrainStep
from patchforensics.data.transforms import TransformConfig, eval_transform, parse_corruptions, train_transform

CPU = torch.device("cpu")


def with_bn_statistics(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


@pytest.mark.parametrize("name", ["xception_block2", "resnet18_layer1", "resnet18", "widenet_kw7_d1"])
def test_fold_batchnorm_removes_every_bn_and_keeps_outputs(name):
    model = with_bn_statistics(create_model(name, init="kaiming")).train()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert model.training and any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # untouched
    with torch.inference_mode():
        ref = model.eval()(x)
        torch.testing.assert_close(folded(x), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_bf16_only_where_the_hardware_has_it(monkeypatch):
    flags = _cpu_flags()
    if flags:   # Linux: the probe agrees with /proc/cpuinfo
        assert cpu_has_native_bf16() == bool(flags & {"amx_bf16", "avx512_bf16"})
    monkeypatch.delenv(NATIVE_BF16_ENV, raising=False)
    assert use_bf16("auto", CPU) == cpu_has_native_bf16()
    # the variable makes 'auto' decide as the other CPU kind would; on/off stay what they say
    for forced, expected in (("1", True), ("0", False)):
        monkeypatch.setenv(NATIVE_BF16_ENV, forced)
        assert use_bf16("auto", CPU) is expected
        assert use_bf16("off", CPU) is False and use_bf16("on", CPU) is True
    monkeypatch.setenv(NATIVE_BF16_ENV, "yes")
    with pytest.raises(ValueError, match="set it to 1"):
        use_bf16("auto", CPU)
    monkeypatch.delenv(NATIVE_BF16_ENV)
    assert use_bf16("off", CPU) is False and use_bf16("on", CPU) is True
    # on a CPU the default is ONNX Runtime, measured fastest with and without native bf16
    assert inference_backend(FastPath(), CPU) == "onnx"
    assert inference_backend(FastPath.reference(), CPU) == "torch"


def test_inference_paths_match_reference_on_real_faces(trained_checkpoint, small_face_dirs):
    loaded = load_model(trained_checkpoint, "latest")
    samples = collect_samples([small_face_dirs["real"]], [small_face_dirs["fake"]], split="test")[::6]
    ds = ImageDataset(samples, eval_transform(loaded.card.transform()))
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    with torch.inference_mode():
        ref = Engine.from_model(loaded.model, loaded.card, FastPath.reference(), CPU).logits(x)
        assert torch.equal(ref, loaded.model.eval()(x))   # the reference is the plain model
        for fast in (FastPath(backend="onnx"), FastPath(backend="torch", bf16="off"),
                     FastPath(backend="torch", bf16="off", channels_last=False, fold_bn=True)):
            out = Engine.from_model(loaded.model, loaded.card, fast, CPU).logits(x)
            assert out.dtype == torch.float32 and out.shape == ref.shape
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4, msg=str(fast))


# The CPU kind varies between machines (AVX2 only, or AVX512-BF16): the default path is
# fp32 on one and bf16 on the other. Each precision is tested on every machine, with
# tolerances that hold for it: fp32 pinned with bf16="off", bf16 forced with bf16="on"
# (emulated, slower, but the same numbers on a CPU without native bf16).
FP32_FAST = FastPath(bf16="off")
BF16_FAST = FastPath(bf16="on", backend="torch")


def predict_both_ways(checkpoint, dirs, fast: FastPath):
    """The test split scored on ``fast`` and on the reference path (fp32 eager)."""
    loaded = load_model(checkpoint, "latest")
    samples = collect_samples([dirs["real"]], [dirs["fake"]], split="test")
    return tuple(Engine.from_model(loaded.model, loaded.card, path).predict(samples, batch_size=16, progress=False)
                 for path in (fast, FastPath.reference()))


def test_predict_fp32_fast_path_keeps_scores(trained_checkpoint, small_face_dirs):
    fast, ref = predict_both_ways(trained_checkpoint, small_face_dirs, FP32_FAST)
    assert fast.paths == ref.paths and np.array_equal(fast.index, np.arange(len(ref.paths)))
    for a in AGGREGATIONS:
        np.testing.assert_allclose(fast.scores[a], ref.scores[a], atol=1e-5)
    mf, mr = fast.metrics(), ref.metrics()
    for a in AGGREGATIONS + ("patch",):
        assert abs(mf[a]["ap"] - mr[a]["ap"]) <= 0.002
    assert mr["after_softmax"]["ap"] > 0.6   # a model that learned something, so ΔAP means something
    # patches land in the same 0.01-wide logit bins, bar float rounding at a bin edge
    assert np.abs(fast.patches.counts - ref.patches.counts).sum() <= 0.001 * ref.patches.counts.sum()


def test_predict_bf16_keeps_ap(trained_checkpoint, small_face_dirs):
    """bf16 keeps 8 bits of mantissa: scores move by up to ~1e-2, AP by much less."""
    bf16, ref = predict_both_ways(trained_checkpoint, small_face_dirs, BF16_FAST)
    assert bf16.paths == ref.paths
    for a in AGGREGATIONS:
        diff = np.abs(bf16.scores[a] - ref.scores[a])
        assert diff.max() < 0.05 and 0 < diff.mean() < 0.01, a   # really bf16, and close
    mb, mr = bf16.metrics(), ref.metrics()
    for a in AGGREGATIONS:
        assert abs(mb[a]["ap"] - mr[a]["ap"]) <= 0.02, a


@pytest.mark.parametrize("tcfg, training, corrupt", [
    (TransformConfig(load_size=112, fine_size=96, flip=True, random_crop=True), True, ""),
    (TransformConfig(load_size=128, fine_size=128, random_resized_crop=True, color_jitter=True), True, ""),
    (TransformConfig(load_size=112, fine_size=96), False, "jpeg:80"),
])
def test_decoded_cache_gives_identical_items(small_face_dirs, tmp_path, tcfg, training, corrupt):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    samples = collect_samples([small_face_dirs["real"]], [small_face_dirs["fake"]], split="train")[::4]
    samples.insert(3, type(samples[0])(str(bad), 1))
    transform = train_transform(tcfg) if training else eval_transform(tcfg, parse_corruptions(corrupt))
    seed = 5 if training else None
    plain = ImageDataset(samples, transform, seed=seed)
    # a 1 MiB budget holds only some of the images: the rest are decoded on access
    cached = CachedImageDataset(samples, transform, seed, cache_prefix(tcfg, training), budget_mb=1).fill()
    assert 0 < cached.n_cached < len(samples) - 1
    for ds in (plain, cached):
        ds.set_epoch(2)
    for i in range(len(samples)):
        a, b = plain[i], cached[i]
        if a["image"] is None:
            assert b["image"] is None and a["error"] == b["error"]
        else:
            assert torch.equal(a["image"], b["image"]), i


def test_cache_switch(small_face_dirs):
    samples = collect_samples([small_face_dirs["real"]], [small_face_dirs["fake"]], split="val")
    tcfg = TransformConfig()
    off = make_dataset(samples, eval_transform(tcfg), tcfg, FastPath(cache_mb=0), training=False)
    on = make_dataset(samples, eval_transform(tcfg), tcfg, FastPath(), training=False)
    assert type(off) is ImageDataset
    assert isinstance(on, CachedImageDataset) and on.n_cached == len(samples)
    assert on.cached_bytes == len(samples) * 128 * 128 * 3


@pytest.mark.parametrize("fast, loss_tol, logit_tol, logit_scale_tol", [
    (FP32_FAST, dict(rtol=1e-4, atol=1e-5), dict(rtol=1e-3, atol=1e-4), 0.0),
    # bf16: errors grow with the logits' magnitude (measured: 0.1 on logits up to 9)
    (BF16_FAST, dict(rtol=2e-2, atol=2e-2), dict(rtol=5e-2, atol=0.0), 0.03),
])
def test_train_step_fast_path_matches_reference(fast, loss_tol, logit_tol, logit_scale_tol):
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1, torch.tensor([0, 1, 1, 0])
    steps = []
    for path in (FastPath.reference(), fast):
        model = create_model("xception_block1", seed=7)
        steps.append(TrainStep(model, torch.optim.Adam(model.parameters(), lr=1e-3), path, CPU))
    ref_model, fast_model = (s.forward for s in steps)
    assert fast_model.features.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    for _ in range(2):
        (loss_r, logits_r), (loss_f, logits_f) = (s(x, y) for s in steps)
        torch.testing.assert_close(loss_f, loss_r, **loss_tol)
        atol = logit_tol["atol"] + logit_scale_tol * float(logits_r.abs().max())
        torch.testing.assert_close(logits_f, logits_r, rtol=logit_tol["rtol"], atol=atol)
    assert not torch.equal(ref_model.head.weight, create_model("xception_block1", seed=7).head.weight)


def test_fast_path_options_validate_and_reach_the_configs():
    with pytest.raises(ConfigError, match="bf16"):
        TrainConfig(real=["r"], fake=["f"], bf16="fast").validate()
    with pytest.raises(ConfigError, match="cache_mb"):
        TrainConfig(real=["r"], fake=["f"], cache_mb=-1).validate()
    with pytest.raises(ConfigError, match="backend"):
        evaluate.TestConfig("ck", ["r"], ["f"], "d", backend="tensorrt").validate()
    from patchforensics.cli import build_parser
    from patchforensics.cli.train import load_train_config

    args = build_parser().parse_args(["train", "--real", "r", "--fake", "f", "--no-channels-last", "--bf16", "off",
                                      "--no-fold-bn", "--backend", "torch", "--cache-mb", "0",
                                      "--threads", "1"])
    fast = load_train_config(args).fast_path()
    assert fast == FastPath(channels_last=False, bf16="off", fold_bn=False, backend="torch", cache_mb=0, threads=1)
    assert TrainConfig().fast_path() == FastPath()   # on by default
    from patchforensics.cli.test import build_config

    args = build_parser().parse_args(["test", "ck", "--real", "r", "--fake", "f", "--dataset-name", "d",
                                      "--backend", "onnx", "--no-channels-last", "--bf16", "on"])
    assert build_config(args).fast_path() == FastPath(channels_last=False, bf16="on", backend="onnx", cache_mb=0)
    args = build_parser().parse_args(["test", "ck", "--real", "r", "--fake", "f", "--dataset-name", "d"])
    assert build_config(args).fast_path() == FastPath(cache_mb=0)


def test_openmp_threads_sleep_unless_told_otherwise():
    probe = "import patchforensics, os, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = (lambda e: subprocess.run([sys.executable, "-c", probe], env=e, capture_output=True, text=True,
                                    check=True).stdout.strip())
    assert run(env) == "PASSIVE"
    assert run({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
