"""Training on real faces: it learns, and --resume continues exactly."""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from patchforensics.core.config import ConfigError
from patchforensics.data.dataset import EpochSampler, Sample, collect_samples, epoch_order
from patchforensics.models.checkpoint import RESUME_FILE, weights_path
from patchforensics.scoring.engine import Engine
from patchforensics.scoring.metrics import binary_metrics
from patchforensics.training.train import TrainConfig, source_groups, train


def test_training_on_real_faces_learns(trained_checkpoint, small_face_dirs):
    """AP on held-out test files (never seen in training or validation) is clearly above chance."""
    samples = collect_samples([small_face_dirs["real"]], [small_face_dirs["fake"]], split="test")
    preds = Engine.load(trained_checkpoint, "bestval").predict(samples, progress=False)
    m = binary_metrics(preds.scores["after_softmax"], preds.labels)
    assert m["n"] == 60
    assert m["ap"] > 0.8, m   # chance is 0.5 with 30 reals and 30 fakes


def _cfg(dirs, tmp_path, **kw):
    base = dict(real=[str(dirs["real"])], fake=[str(dirs["fake"])], model="widenet_kw7_d1", max_epochs=2,
                batch_size=8, patience=0, max_per_class=24, save_latest_freq=2,
                checkpoints_dir=str(tmp_path / "ck"), runs_dir=str(tmp_path / "runs"), cnn_aug_prob=0.5,
                random_crop=True, fine_size=112, lr_policy="cosine", weight_decay=0.01)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_continues_exactly_where_the_run_stopped(small_face_dirs, tmp_path):
    full = train(_cfg(small_face_dirs, tmp_path, name="full"), progress=False)
    # an interrupted run: stops mid-epoch after 5 optimizer steps, then resumes
    part_cfg = _cfg(small_face_dirs, tmp_path, name="part")
    train(part_cfg, progress=False, stop_after_steps=5)
    snapshot = load_file(str(full.checkpoint_dir.parent / "part" / RESUME_FILE))
    assert any(k.startswith("optim.state.") for k in snapshot)
    resumed = train(part_cfg, resume=True, progress=False)
    a = load_file(str(weights_path(full.checkpoint_dir, "latest")))
    b = load_file(str(weights_path(resumed.checkpoint_dir, "latest")))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # optimizer moments match too
    sa = load_file(str(full.checkpoint_dir / RESUME_FILE))
    sb = load_file(str(resumed.checkpoint_dir / RESUME_FILE))
    for k in sa:
        if k.startswith("optim."):
            assert torch.equal(sa[k], sb[k]), k
    assert [h["epoch"] for h in resumed.history] == [1, 2]


def test_sampler_skip_gives_the_remaining_batches():
    labels = [0] * 7 + [1] * 12
    s = EpochSampler(labels, seed=3, balance=True)
    s.set_epoch(2)
    order = list(s)
    assert len(order) == 24 and sorted(set(labels[i] for i in order)) == [0, 1]
    assert sum(labels[i] == 0 for i in order) == 12          # minority re-sampled up to 12
    s.set_epoch(2, skip=10)
    assert list(s) == order[10:]
    s.set_epoch(3)
    assert list(s) != order


def test_source_balancing_gives_every_folder_of_a_class_an_equal_share(tmp_path):
    # 3 fake folders of 40, 8 and 2 images, 1 real folder of 30: balanced by class and by source
    labels = np.array([0] * 50 + [1] * 30)
    groups = np.array([0] * 40 + [1] * 8 + [2] * 2 + [3] * 30)
    for epoch in (1, 2):
        order = epoch_order(labels, epoch, seed=0, balance=True, groups=groups)
        assert np.bincount(labels[order]).tolist() == [50, 50]
        assert np.bincount(groups[order]).tolist() == [17, 17, 16, 50]    # 50 fake places over 3 folders
    # the large folder is sub-sampled afresh each epoch, so all of it is seen over time
    seen = set()
    for epoch in range(1, 13):        # (deterministic in the seed)
        order = epoch_order(labels, epoch, seed=0, balance=True, groups=groups)
        seen |= {i for i in order.tolist() if groups[i] == 0}
    assert len(seen) == 40
    # without groups nothing changes: the same epochs as before the option existed
    assert epoch_order(labels, 3, 0, True).tolist() == epoch_order(labels, 3, 0, True, None).tolist()
    real, fake = tmp_path / "r", tmp_path / "f"
    samples = [Sample(str(fake / "a" / "x.png"), 0), Sample(str(real / "y.png"), 1)]
    assert source_groups(samples, [str(real), str(fake / "a")]) == [1, 0]


def test_existing_run_is_not_overwritten(small_face_dirs, tmp_path):
    cfg = _cfg(small_face_dirs, tmp_path, name="once", max_epochs=1, max_per_class=8)
    train(cfg, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, progress=False)


@pytest.mark.parametrize("change, key", [({"fine_size": 256}, "fine_size"), ({"lr": -1.0}, "lr"),
                                         ({"patience": -1}, "patience"), ({"model": "vgg16"}, "model")])
def test_impossible_values_fail_before_any_work(small_face_dirs, tmp_path, change, key):
    with pytest.raises(ConfigError, match=key):
        train(_cfg(small_face_dirs, tmp_path, **change), progress=False)
    assert not (tmp_path / "ck").exists()


def test_every_epoch_logs_one_line_when_stderr_is_not_a_terminal(small_face_dirs, tmp_path):
    """A logged run (stderr to a file or pipe, no progress bars) is not silent until the end:
    one line per epoch with the loss, the validation metric, the lr and the seconds taken."""
    cmd = [sys.executable, "-m", "patchforensics", "train", "--real", str(small_face_dirs["real"]),
           "--fake", str(small_face_dirs["fake"]), "--model", "widenet_kw7_d1", "--max-epochs", "3",
           "--batch-size", "8", "--max-per-class", "16", "--patience", "0", "--lr-policy", "cosine",
           "--checkpoints-dir", str(tmp_path / "ck"), "--runs-dir", str(tmp_path / "runs")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    line = re.compile(r"^epoch (\d)/3 loss (\d+\.\d{4}) val after_softmax_ap (\d\.\d{4}) "
                      r"\(best \d\.\d{4} @ \d\) lr (\S+) (\d+\.\d)s$")
    found = [m for m in map(line.match, done.stderr.splitlines()) if m]
    assert [int(m.group(1)) for m in found] == [1, 2, 3], done.stderr[-2000:]
    lrs = [float(m.group(4)) for m in found]
    assert lrs[0] == pytest.approx(1e-3) and lrs[0] > lrs[1] > lrs[2] > 0   # cosine towards 0 at epoch 3
    assert all(float(m.group(2)) > 0 and float(m.group(5)) > 0 for m in found)
    assert "\r" not in done.stderr   # no progress bars in a log


def test_default_init_is_kaiming_and_the_seeds_gain_stays_available():
    from patchforensics.models import SEED_INIT_GAIN, create_model

    assert TrainConfig().init == "kaiming"
    def first_conv_std(**kw):
        net = create_model("xception_block2", **kw)
        w = next(m.weight.detach() for m in net.modules()
                 if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] == 3)
        return float(w.std()), w[0].numel()
    std, fan_in = first_conv_std(init="kaiming")
    assert std == pytest.approx((2 / fan_in) ** 0.5, rel=0.15)
    seed_std, _ = first_conv_std(init="xavier")
    unit_std, _ = first_conv_std(init="xavier", init_gain=1.0)
    assert SEED_INIT_GAIN == 0.02 and seed_std == pytest.approx(unit_std * 0.02, rel=1e-3)


def test_cosine_needs_max_epochs():
    with pytest.raises(ConfigError, match="max_epochs"):
        TrainConfig(real=["r"], fake=["f"], lr_policy="cosine", max_epochs=None).validate()


def test_default_training_crop_depends_on_the_kind_of_model():
    patch = TrainConfig(model="xception_block2")
    assert (patch.fine_size, patch.random_crop, patch.lr_policy, patch.max_epochs) == (64, True, "cosine", 30)
    assert patch.transform_config().patch_model
    full = TrainConfig(model="resnet18")     # evaluated on the fine_size centre crop: keep the whole image
    assert (full.fine_size, full.random_crop) == (128, False)
    chosen = TrainConfig(model="xception_block2", fine_size=128)
    assert chosen.random_crop is False
    assert TrainConfig(model="xception_block2", load_size=48).fine_size == 48
    assert TrainConfig().experiment_name() == "xception_block2_size128"


@pytest.fixture
def leaky_dirs(small_face_dirs, tmp_path):
    """The small subsets, with two real training images also present (renamed) in val/ and test/."""
    root = tmp_path / "leaky"
    for kind in ("real", "fake"):
        for split in ("train", "val", "test"):
            (root / kind / split).mkdir(parents=True)
            for p in sorted((small_face_dirs[kind] / split).iterdir())[:12]:
                (root / kind / split / p.name).symlink_to(p.resolve())
    train_files = sorted((root / "real" / "train").iterdir())
    (root / "real" / "val" / "zz_copy.png").write_bytes(train_files[0].read_bytes())
    (root / "real" / "test" / "zz_copy.png").write_bytes(train_files[1].read_bytes())
    return {"real": root / "real", "fake": root / "fake"}


def test_training_refuses_images_also_held_out(leaky_dirs, tmp_path, capsys):
    from patchforensics.cli import main as cli_main

    cfg = _cfg(leaky_dirs, tmp_path, max_epochs=1, max_per_class=8, model="resnet18_layer1")
    with pytest.raises(ValueError, match="2 training image.*zz_copy.png.*--allow-leak"):
        train(cfg, progress=False)
    assert not (tmp_path / "ck").exists()                       # refused before anything was written
    argv = ["train", "--real", str(leaky_dirs["real"]), "--fake", str(leaky_dirs["fake"]), "--model",
            "resnet18_layer1", "--checkpoints-dir", str(tmp_path / "ck"), "--runs-dir", str(tmp_path / "runs")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "real/val/zz_copy.png" in err and "real/test/zz_copy.png" in err
    # --allow-leak: trains, with a warning naming the copies
    train(_cfg(leaky_dirs, tmp_path, max_epochs=1, max_per_class=8, model="resnet18_layer1", allow_leak=True),
          progress=False)
    assert "warning: 2 training image(s)" in capsys.readouterr().err


def _copy_dirs(dirs, root, n=12):
    """Symlinked copies (first ``n`` per split) of the small subsets that a test may damage."""
    for kind in ("real", "fake"):
        for split in ("train", "val", "test"):
            (root / kind / split).mkdir(parents=True)
            for p in sorted((dirs[kind] / split).iterdir())[:n]:
                (root / kind / split / p.name).symlink_to(p.resolve())
    return {"real": root / "real", "fake": root / "fake"}


def test_resume_refuses_other_data_or_recipe_and_lists_the_differences(small_face_dirs, tmp_path, capsys):
    from patchforensics.cli import main as cli_main

    other = _copy_dirs(small_face_dirs, tmp_path / "other")
    cfg = _cfg(small_face_dirs, tmp_path, name="r", max_epochs=1, max_per_class=8, lr_policy="constant")
    train(cfg, progress=False)
    with pytest.raises(ConfigError) as refused:
        train(_cfg(other, tmp_path, name="r", max_epochs=1, max_per_class=8, lr_policy="constant", lr=0.01),
              resume=True, progress=False)
    lines = str(refused.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["fake", "lr", "real"]
    assert "lr: 0.001 -> 0.01" in str(refused.value) and str(other["real"]) in str(refused.value)
    base = ["train", "--name", "r", "--real", str(small_face_dirs["real"]), "--fake", str(small_face_dirs["fake"]),
            "--checkpoints-dir", str(tmp_path / "ck"), "--resume"]
    assert cli_main(base + ["--model", "resnet18_layer1"]) == 2       # was a traceback (state of another net)
    err = capsys.readouterr().err
    assert "model: 'widenet_kw7_d1' -> 'resnet18_layer1'" in err and "Traceback" not in err
    # what may change does: more epochs (constant lr), other threads/workers/runs folder
    resumed = train(_cfg(small_face_dirs, tmp_path, name="r", max_epochs=2, max_per_class=8, lr_policy="constant",
                         threads=1, runs_dir=str(tmp_path / "runs2")), resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    train(_cfg(small_face_dirs, tmp_path, name="c", max_epochs=2, max_per_class=8), progress=False)
    with pytest.raises(ConfigError, match="max_epochs: 2 -> 3") as refused:   # the cosine schedule spans them
        train(_cfg(small_face_dirs, tmp_path, name="c", max_epochs=3, max_per_class=8), resume=True, progress=False)
    allowed = str(refused.value).split("(only ")[1].split(" may change")[0]
    assert "max_epochs" not in allowed and "cosine" in str(refused.value).splitlines()[1]


def test_a_failed_resume_leaves_a_finished_run_intact(small_face_dirs, tmp_path):
    from patchforensics.core.imageio import NoUsableImagesError

    dirs = _copy_dirs(small_face_dirs, tmp_path / "data")
    cfg = _cfg(dirs, tmp_path, name="done", max_epochs=1, max_per_class=8, lr_policy="constant")
    run = train(cfg, progress=False)
    kept = {p.name: p.read_bytes() for p in run.checkpoint_dir.iterdir()
            if p.name in ("train_summary.json", "config.yaml") or p.name.startswith(("latest", "bestval"))}
    assert "finished" in kept["train_summary.json"].decode() and len(kept) >= 4
    for p in (dirs["fake"] / "train").iterdir():                   # the fakes went bad since
        p.unlink()
        p.write_bytes(b"not an image")
    with pytest.raises(NoUsableImagesError, match="fake training images.*e.g. .*train"):
        train(_cfg(dirs, tmp_path, name="done", max_epochs=2, max_per_class=8, lr_policy="constant"),
              resume=True, progress=False)
    assert {name: (run.checkpoint_dir / name).read_bytes() for name in kept} == kept


def test_init_from_starts_from_a_checkpoints_weights_with_new_options(trained_checkpoint, small_face_dirs, tmp_path):
    """The seed's --load_model --overwrite_config: weights from the checkpoint, options from this run."""
    start = load_file(str(weights_path(trained_checkpoint, "bestval")))
    cfg = TrainConfig(real=[str(small_face_dirs["real"])], fake=[str(small_face_dirs["fake"])],
                      model="resnet18_layer1", init_from=str(trained_checkpoint), lr=1e-9, max_epochs=1,
                      batch_size=8, max_per_class=8, checkpoints_dir=str(tmp_path / "c"), runs_dir=str(tmp_path / "r"),
                      name="from_ckpt")
    after = load_file(str(weights_path(train(cfg, progress=False).checkpoint_dir, "latest")))
    convs = [k for k in start if k.endswith(".weight") and start[k].dim() == 4]
    assert convs and all(torch.allclose(after[k], start[k], atol=1e-6) for k in convs)
    scratch = load_file(str(weights_path(train(TrainConfig(**{**cfg.__dict__, "init_from": None, "name": "scratch"}),
                                                progress=False).checkpoint_dir, "latest")))
    assert not torch.allclose(scratch[convs[0]], start[convs[0]], atol=1e-3)


def test_init_from_is_refused_with_init_or_another_architecture(trained_checkpoint, small_face_dirs, tmp_path, capsys):
    from patchforensics.cli import main
    from patchforensics.experiments.grid import portable_options

    common = ["train", "--real", str(small_face_dirs["real"]), "--fake", str(small_face_dirs["fake"]),
              "--checkpoints-dir", str(tmp_path / "c"), "--runs-dir", str(tmp_path / "r")]
    assert main(common + ["--model", "resnet18_layer1", "--init-from", str(trained_checkpoint), "--init", "xavier"]) == 2
    assert "--init-from starts from trained weights" in capsys.readouterr().err
    assert main(common + ["--model", "xception_block2", "--init-from", str(trained_checkpoint)]) == 2
    assert "holds a resnet18_layer1 model" in capsys.readouterr().err
    assert main(common + ["--which-epoch", "latest"]) == 2
    assert "give --init-from" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    cfg = TrainConfig(real=[str(small_face_dirs["real"])], fake=[str(small_face_dirs["fake"])],
                      model="resnet18_layer1", init_from=str(trained_checkpoint))
    options = portable_options(cfg, tmp_path)
    assert options["init_from"] == hashlib.sha256(
        weights_path(trained_checkpoint, "bestval").read_bytes()).hexdigest()
    assert "init_from" not in portable_options(TrainConfig(real=cfg.real, fake=cfg.fake), tmp_path)
