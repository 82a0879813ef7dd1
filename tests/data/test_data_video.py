"""align-video: frames of short videos the test makes from real portraits, in a
FaceForensics++-like tree, aligned and evaluated with ``test-suite``."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from patchforensics.data.align import VideoAlignConfig, align_videos, iter_frames
from patchforensics.cli import main
from patchforensics.core.imageio import load_rgb
from patchforensics.evaluation.suite import load_suite, run_suite

N_FRAMES = 6


def write_video(path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def portrait_frames(portrait: Image.Image, tint: tuple[int, int, int] | None = None) -> list[np.ndarray]:
    """The portrait drifting across a 400x400 canvas; ``tint`` alters the central
    region, a stand-in for a face manipulation."""
    frames = []
    for i in range(N_FRAMES):
        canvas = Image.new("RGB", (400, 400), (110, 120, 130))
        canvas.paste(portrait.resize((300, 340)), (30 + 8 * i, 20 + 4 * i))
        arr = np.asarray(canvas).copy()
        if tint is not None:
            region = arr[140:260, 110:250].astype(int) + tint
            arr[140:260, 110:250] = np.clip(region, 0, 255).astype(np.uint8)
        frames.append(arr)
    return frames


@pytest.fixture(scope="module")
def ff_tree(tmp_path_factory, faces):
    wild = faces.parent / "raw" / "wild-portraits"
    a, b = (load_rgb(p) for p in sorted(wild.iterdir())[5:7])
    root = tmp_path_factory.mktemp("ffpp")
    write_video(root / "original_sequences/youtube/c23/videos/000.avi", portrait_frames(a))
    write_video(root / "original_sequences/youtube/c23/videos/001.avi", portrait_frames(b))
    write_video(root / "manipulated_sequences/Deepfakes/c23/videos/000_001.avi", portrait_frames(a, (40, -20, 0)))
    write_video(root / "manipulated_sequences/Deepfakes/c23/videos/001_000.avi", portrait_frames(b, (40, -20, 0)))
    (root / "manipulated_sequences/Deepfakes/c23/videos/002_003.avi").write_bytes(b"not a video")
    splits = root / "splits"
    splits.mkdir()
    for name, pairs in (("train", []), ("val", []), ("test", [["000", "001"], ["002", "003"]])):
        (splits / f"{name}.json").write_text(json.dumps(pairs))
    return root


@pytest.fixture(scope="module")
def aligned_ff(tmp_path_factory, ff_tree):
    out = tmp_path_factory.mktemp("ff_aligned") / "out"
    cfg = VideoAlignConfig(src=str(ff_tree), out=str(out), every=2, size=64, splits_dir=str(ff_tree / "splits"))
    return align_videos(cfg, progress=False)


def test_frames_are_read_every_n(ff_tree):
    frames = list(iter_frames(ff_tree / "original_sequences/youtube/c23/videos/000.avi", every=2))
    assert [i for i, _ in frames] == [0, 2, 4]
    assert frames[0][1].shape == (400, 400, 3) and frames[0][1].dtype == np.uint8
    with pytest.raises(ValueError):
        list(iter_frames(ff_tree / "manipulated_sequences/Deepfakes/c23/videos/002_003.avi", every=1))


def test_layout_mirrors_faceforensics(aligned_ff):
    out = aligned_ff.out
    real = out / "original_sequences/youtube/c23/videos/test"
    fake = out / "manipulated_sequences/Deepfakes/c23/videos/test"
    assert sorted(p.name for p in real.iterdir()) == [f"{v}_{i:05d}.png" for v in ("000", "001") for i in (0, 2, 4)]
    assert sorted(p.name for p in fake.iterdir()) == [f"{v}_{i:05d}.png" for v in ("000_001", "001_000")
                                                      for i in (0, 2, 4)]
    assert Image.open(real / "000_00002.png").size == (64, 64)
    assert aligned_ff.frames_sampled == 12 and aligned_ff.success_rate == 1.0
    assert aligned_ff.counts == {"train": 0, "val": 0, "test": 12}
    assert len(aligned_ff.skipped) == 1 and "002_003.avi" in aligned_ff.skipped[0]["path"]


def test_manipulated_frames_reuse_original_geometry(aligned_ff):
    report = {v["source"]: v for v in json.loads((aligned_ff.out / "report.json").read_text())["videos"]}
    original = report["original_sequences/youtube/c23/videos/000.avi"]["frames"]
    fake = report["manipulated_sequences/Deepfakes/c23/videos/000_001.avi"]["frames"]
    for o, f in zip(original, fake):
        assert f["landmarks_from"] == "original" and o["faces_found"] == 1
        assert f["faces"][0]["quad"] == o["faces"][0]["quad"]
    # the portrait drifts by (8, 4) px per frame: so does the crop
    shift = np.array(original[1]["faces"][0]["quad"]) - np.array(original[0]["faces"][0]["quad"])
    assert np.allclose(shift, [16, 8], atol=3)


def test_test_suite_evaluates_the_aligned_tree(aligned_ff, trained_checkpoint, tmp_path):
    suite = load_suite(aligned_ff.out / "suite.yaml")
    assert [d.name for d in suite.datasets] == ["Deepfakes"]
    result = run_suite(trained_checkpoint, suite, results_dir=str(tmp_path / "results"), progress=False)
    row = next(r for r in result.rows if r["aggregation"] == "after_softmax")
    assert row["dataset"] == "Deepfakes" and row["n"] == 12


def test_cli_single_video_and_random_splits(ff_tree, tmp_path, capsys):
    video = ff_tree / "original_sequences/youtube/c23/videos/001.avi"
    assert main(["align-video", str(video), str(tmp_path / "out"), "--every", "3", "--size", "48",
                 "--style", "ffhq", "--split", "0,0,1"]) == 0
    assert "aligned 2 of 2 sampled frames" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out" / "test").iterdir()) == ["001_00000.png", "001_00003.png"]
    assert main(["align-video", str(video), str(tmp_path / "o2"), "--every", "0"]) == 2
    assert main(["align-video", str(video), str(tmp_path / "o3"), "--splits-dir", str(tmp_path)]) == 2
    assert "train.json" in capsys.readouterr().err
