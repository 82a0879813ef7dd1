"""The shared data has no origin shortcut at 128 px: a detector trained to tell FFHQ
photos that came from 1024² originals from FFHQ photos that came from the "140k" set's
256² JPEGs (another resizer) stays at chance, while the same recipe on the same number
of images tells FFHQ from StyleGAN2. StyleGAN1 comes from the "140k" set, so a
resizer fingerprint surviving at 128 px would inflate every StyleGAN1 number.

The origin of each ``faces128/ffhq`` file is read from ``faces256``, which keeps the
two origins in separate folders (``ffhq/`` and ``ffhq-140k/``) under the same names.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DATA, FACES
from patchforensics.data.dataset import collect_samples
from patchforensics.scoring.engine import Engine
from patchforensics.scoring.metrics import binary_metrics
from patchforensics.training.train import TrainConfig, train

SPLITS = ("train", "val", "test")


def _link(root: Path, files: dict[str, list[Path]]) -> Path:
    for split, paths in files.items():
        (root / split).mkdir(parents=True)
        for p in paths:
            (root / split / p.name).symlink_to(p)
    return root


def _by_origin(split: str) -> tuple[list[Path], list[Path]]:
    """``faces128/ffhq/<split>`` files from 1024² originals and from the "140k" set."""
    origin_140k = {p.stem for p in (DATA / "faces256" / "ffhq-140k" / split).glob("*.jpg")}
    files = sorted((FACES / "ffhq" / split).glob("*.png"))
    return [p for p in files if p.stem not in origin_140k], [p for p in files if p.stem in origin_140k]


def _test_auc(real: Path, fake: Path, tmp_path: Path, name: str) -> float:
    # fp32 on every CPU: the bands below were measured in fp32 (bf16 auto would train in bf16
    # on AVX512-BF16 machines only)
    cfg = TrainConfig(real=[str(real)], fake=[str(fake)], model="xception_block2", max_epochs=4, bf16="off",
                      name=name, checkpoints_dir=str(tmp_path / "ck"), runs_dir=str(tmp_path / "runs"))
    ckpt = train(cfg, progress=False).checkpoint_dir
    samples = collect_samples([real], [fake], split="test")
    preds = Engine.load(ckpt, "bestval").predict(samples, progress=False)
    return binary_metrics(preds.scores["after_softmax"], preds.labels)["roc_auc"]


@pytest.mark.slow
def test_real_vs_real_from_two_origins_stays_at_chance(tmp_path):
    if not (DATA / "faces256" / "ffhq-140k").is_dir():
        pytest.skip("faces256/ffhq-140k (the origin map) is not in this copy of the shared data")
    lanczos = {s: _by_origin(s)[0] for s in SPLITS}
    k140 = {s: _by_origin(s)[1] for s in SPLITS}
    assert all(len(k140[s]) >= 30 for s in SPLITS), {s: len(k140[s]) for s in SPLITS}
    # the positive control sees as many images per class as the origin run
    stylegan2 = {s: sorted((FACES / "tpdne-stylegan2" / s).glob("*.png"))[:len(k140[s])] for s in SPLITS}
    reals = _link(tmp_path / "lanczos", lanczos)

    origin_auc = _test_auc(reals, _link(tmp_path / "k140", k140), tmp_path, "origins")
    control_auc = _test_auc(reals, _link(tmp_path / "stylegan2", stylegan2), tmp_path, "control")

    print(f"[shortcut] origins ROC-AUC {origin_auc:.3f}, control (vs StyleGAN2) {control_auc:.3f}")
    assert abs(origin_auc - 0.5) < 0.12, f"FFHQ origins are told apart (ROC-AUC {origin_auc:.3f}): a shortcut"
    assert control_auc > 0.68, f"the same recipe did not learn real vs fake (ROC-AUC {control_auc:.3f})"
