"""Shared fixtures. Tests read real faces from ../shared/data (read-only) and
write only under pytest's tmp folders."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
FACES = DATA / "faces128"


@pytest.fixture(scope="session")
def faces() -> Path:
    """``../shared/data/faces128`` (ffhq, tpdne-stylegan2, generated-photos × train/val/test)."""
    assert FACES.is_dir(), f"shared data not found at {FACES}"
    return FACES


@pytest.fixture(scope="session")
def small_face_dirs(tmp_path_factory, faces) -> dict[str, Path]:
    """Symlinked subsets: ``real`` (FFHQ) and ``fake`` (generated.photos), each with
    train (60), val (20) and test (30) images."""
    root = tmp_path_factory.mktemp("small_faces")
    counts = {"train": 60, "val": 20, "test": 30}
    out = {}
    for kind, src in (("real", "ffhq"), ("fake", "generated-photos")):
        for split, n in counts.items():
            d = root / kind / split
            d.mkdir(parents=True)
            for p in sorted((faces / src / split).glob("*.png"))[:n]:
                (d / p.name).symlink_to(p)
        out[kind] = root / kind
    return out


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, small_face_dirs) -> Path:
    """A small resnet18_layer1 (43-px patches) trained for 5 epochs on the small
    subsets (about a minute on 2 CPU cores). Shared by tests that need *a* trained
    checkpoint; it reaches test AP ~0.9."""
    from patchforensics.training.train import TrainConfig, train

    root = tmp_path_factory.mktemp("trained")
    cfg = TrainConfig(real=[str(small_face_dirs["real"])], fake=[str(small_face_dirs["fake"])],
                      model="resnet18_layer1", max_epochs=5, batch_size=16, patience=0,
                      checkpoints_dir=str(root / "checkpoints"), runs_dir=str(root / "runs"))
    return train(cfg, progress=False).checkpoint_dir
