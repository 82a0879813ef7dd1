"""align: FFHQ / CelebA-HQ alignment of real portrait photos with mediapipe.

Checked against the real thing: faces aligned here put the eyes, nose and mouth
where they sit in real FFHQ crops (faces128/ffhq), and the reported transform
predicts where the landmarks land in the output.
"""
from __future__ import annotations

import json
import socket

import cv2
import numpy as np
import pytest
from PIL import Image

from patchforensics.data.align import (STYLES, AlignConfig, FaceLandmarker, align_images, five_points, flat_share,
                                       is_photographic)
from patchforensics.data.align.photographic import MAX_FLAT_SHARE
from patchforensics.cli import main
from patchforensics.core.config import ConfigError
from patchforensics.core.imageio import load_rgb

WILD = "raw/wild-portraits"


@pytest.fixture(scope="module")
def wild(faces):
    folder = faces.parent / WILD
    assert folder.is_dir(), f"{folder} missing"
    return folder


@pytest.fixture(scope="module")
def wild_subset(tmp_path_factory, wild):
    """Every 12th wild portrait (25 pictures) plus one unreadable file and one picture without a face."""
    root = tmp_path_factory.mktemp("wild_subset")
    for p in sorted(wild.iterdir())[::12]:
        (root / p.name).symlink_to(p)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.new("RGB", (320, 240), (90, 140, 200)).save(root / "sky.png")
    return root


@pytest.fixture(scope="module")
def aligned(tmp_path_factory, wild_subset):
    """The subset aligned once (ffhq style, 128 px), with outgoing network connections refused."""
    out = tmp_path_factory.mktemp("aligned") / "out"
    original_connect = socket.socket.connect

    def refuse(*args, **kwargs):
        raise AssertionError(f"alignment tried to open a network connection: {args[1:]}")

    socket.socket.connect = refuse
    try:
        result = align_images(AlignConfig(src=str(wild_subset), out=str(out), size=128), progress=False)
    finally:
        socket.socket.connect = original_connect
    return result


def normalised_points(landmarker, image: np.ndarray) -> np.ndarray | None:
    meshes = landmarker.detect(image)
    return five_points(meshes[0], STYLES["ffhq"]) / image.shape[0] if meshes else None


def test_success_rate_report_and_skips(aligned):
    out = aligned.out
    assert aligned.images == 26                       # 25 portraits + the sky; broken.jpg is unreadable
    portraits_aligned = aligned.images_aligned
    assert portraits_aligned / 25 >= 0.9
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in aligned.skipped}
    assert reasons["sky.png"] == "no face found" and "broken.jpg" in reasons
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images_aligned"] == portraits_aligned
    assert sum(summary["counts"].values()) == portraits_aligned
    report = json.loads((out / "report.json").read_text())["images"]
    entry = next(e for e in report if e["faces"])
    face = entry["faces"][0]
    assert set(face["landmarks"]) == {"eye_left", "eye_right", "nose", "mouth_left", "mouth_right"}
    assert entry["faces_found"] >= 1 and (out / face["output"]).is_file()
    assert Image.open(out / face["output"]).size == (128, 128)
    for x, y in face["landmarks"].values():
        assert 0 <= x <= entry["width"] and 0 <= y <= entry["height"]


def test_alignment_matches_real_ffhq_geometry(aligned, faces):
    """Mean landmark positions of our crops vs. real FFHQ crops, in units of the image side."""
    ours, ffhq = [], []
    with FaceLandmarker() as landmarker:
        for p in sorted(aligned.out.glob("*/*.png")):
            pts = normalised_points(landmarker, np.asarray(Image.open(p).convert("RGB")))
            if pts is not None:
                ours.append(pts)
        for p in sorted((faces / "ffhq" / "train").glob("*.png"))[:25]:
            pts = normalised_points(landmarker, np.asarray(Image.open(p).convert("RGB")))
            if pts is not None:
                ffhq.append(pts)
    assert len(ours) >= 20 and len(ffhq) >= 20
    assert np.abs(np.mean(ours, 0) - np.mean(ffhq, 0)).max() < 0.03


def test_reported_transform_predicts_landmarks_in_output(aligned, wild_subset):
    report = json.loads((aligned.out / "report.json").read_text())["images"]
    errors = []
    with FaceLandmarker() as landmarker:
        for entry in [e for e in report if e["faces"]][:6]:
            face = entry["faces"][0]
            to_source = np.vstack([np.array(face["output_to_source"]), [0, 0, 1]])
            to_output = np.linalg.inv(to_source)
            source_pts = np.array(list(face["landmarks"].values()))
            predicted = (to_output @ np.c_[source_pts, np.ones(5)].T).T[:, :2]
            found = landmarker.detect(np.asarray(Image.open(aligned.out / face["output"]).convert("RGB")))
            errors.append(np.abs(five_points(found[0], STYLES["ffhq"]) - predicted).max())
    assert max(errors) < 0.03 * 128


def test_border_padding_is_filled_not_black(aligned, wild_subset):
    """Where the square leaves the photo, the output is filled by reflection, blur
    and the median colour: no more black than the photo itself, and not flat."""
    report = json.loads((aligned.out / "report.json").read_text())["images"]
    checked = 0
    for entry in [e for e in report if e["faces"]]:
        face = entry["faces"][0]
        size = 128
        vs, us = np.mgrid[:size, :size] + 0.5
        src_x, src_y = np.tensordot(np.array(face["output_to_source"]), np.stack([us, vs, np.ones_like(us)]), 1)
        outside = (src_x < 0) | (src_y < 0) | (src_x > entry["width"]) | (src_y > entry["height"])
        if outside.mean() < 0.05:
            continue
        pixels = np.asarray(Image.open(aligned.out / face["output"])).astype(float)
        source = np.asarray(load_rgb(wild_subset / entry["source"])).astype(float)
        black_in_source = (source.max(axis=2) < 8).mean()
        assert (pixels[outside].max(axis=1) < 8).mean() <= black_in_source + 0.02
        assert pixels[outside].std(0).min() > 2           # reflected content, not a flat fill
        checked += 1
    assert checked >= 3, "expected crops needing padding in the subset"


def test_all_faces_small_faces_and_celebahq_style(tmp_path, one_face_portraits):
    portraits = [portrait for portrait, _ in one_face_portraits[1:3]]     # two faces in the pair, no third
    h = max(p.height for p in portraits)
    pair = Image.new("RGB", (sum(p.width for p in portraits) + 40, h), (128, 128, 128))
    pair.paste(portraits[0], (0, 0))
    pair.paste(portraits[1].resize((portraits[1].width * 3 // 4, portraits[1].height * 3 // 4)),
               (portraits[0].width + 40, 0))
    # a portrait small in a large picture: only the full-range detector fallback finds it
    large = Image.new("RGB", (1600, 1200), (120, 130, 140))
    large.paste(portraits[0], (530, 400))
    src = tmp_path / "src"
    src.mkdir()
    pair.save(src / "pair.png")
    large.save(src / "small_face.png")
    result = align_images(AlignConfig(src=str(src), out=str(tmp_path / "all"), faces="all", style="celebahq",
                                      size=64, split=(0.0, 0.0, 1.0)), progress=False)
    names = sorted(p.name for p in (tmp_path / "all" / "test").iterdir())
    assert names == ["pair_face0.png", "pair_face1.png", "small_face_face0.png"], names
    report = {e["source"]: e for e in json.loads((tmp_path / "all" / "report.json").read_text())["images"]}
    left_face = report["pair.png"]["faces"][0]           # rank 0 = the larger (unscaled) portrait
    assert left_face["landmarks"]["nose"][0] < portraits[0].width
    assert result.success_rate == 1.0
    largest = align_images(AlignConfig(src=str(src / "pair.png"), out=str(tmp_path / "one"), size=64),
                           progress=False)
    assert sum(largest.counts.values()) == 1


CELL = (300, 340)      # a portrait pasted into a row or grid: the size screeners' collages had (issue #28)


def collage(portraits: list[Image.Image], cols: int) -> np.ndarray:
    """``portraits`` resized to :data:`CELL` and pasted ``cols`` to a row on grey, row after row."""
    rows = -(-len(portraits) // cols)
    canvas = Image.new("RGB", (cols * CELL[0], rows * CELL[1]), (128, 128, 128))
    for i, portrait in enumerate(portraits):
        canvas.paste(portrait.resize(CELL, Image.Resampling.LANCZOS), ((i % cols) * CELL[0], (i // cols) * CELL[1]))
    return np.asarray(canvas)


def mesh_box(mesh: np.ndarray) -> np.ndarray:
    return np.concatenate([mesh.min(0), mesh.max(0)])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return float(inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter))


@pytest.fixture(scope="module")
def landmarker():
    with FaceLandmarker() as finder:
        yield finder


@pytest.fixture(scope="module")
def one_face_portraits(landmarker, wild) -> list[tuple[Image.Image, np.ndarray]]:
    """The first six wild portraits (by name) that hold one face even when searched as a group
    (pasted beside a grey cell, where the search for more faces runs: a child in the background
    counts), each with its face's mesh box there."""
    picked = []
    for path in sorted(wild.iterdir()):
        portrait = load_rgb(path)
        meshes = landmarker.detect(collage([portrait, Image.new("RGB", CELL, (128, 128, 128))], 2))
        if len(meshes) == 1:
            picked.append((portrait, mesh_box(meshes[0])))
        if len(picked) == 6:
            return picked
    pytest.fail("fewer than six one-face wild portraits")


@pytest.mark.parametrize("count, cols", [(4, 4), (5, 5), (6, 6), (4, 2), (6, 3)])
def test_every_face_of_a_row_or_grid_of_portraits_is_found(landmarker, one_face_portraits, count, cols):
    """Portraits in a row lost faces (five in a row: 2 found): the whole-photo mesh sees the
    photo at 128 px. Each portrait's face is found once, where it lies in the portrait."""
    picture = collage([portrait for portrait, _ in one_face_portraits[:count]], cols)
    boxes = [mesh_box(mesh) for mesh in landmarker.detect(picture)]
    assert len(boxes) == count
    for i, (_, alone) in enumerate(one_face_portraits[:count]):
        offset = np.array([(i % cols) * CELL[0], (i // cols) * CELL[1]] * 2)
        assert max(iou(alone + offset, box) for box in boxes) > 0.6, i
    if cols >= 5:     # the whole-photo pass alone does lose them: what the test guards against
        assert len(landmarker._meshes(landmarker._mesh, picture)) < count


def test_a_portrait_is_not_searched_as_a_group(landmarker, one_face_portraits, faces, monkeypatch):
    """The search for more faces (tiles, full-range detector) costs a group photo ~40 ms a
    megapixel; a portrait, whose face is large in its photo, is spared it."""
    calls = []
    crops = FaceLandmarker._crop_meshes
    monkeypatch.setattr(FaceLandmarker, "_crop_meshes", lambda self, *a: calls.append(1) or crops(self, *a))
    large = sorted((faces.parent / "raw" / "ffhq-1024").iterdir())[0]
    for portrait in [portrait for portrait, _ in one_face_portraits] + [load_rgb(large)]:
        assert len(landmarker.detect(np.asarray(portrait))) == 1
    assert calls == []
    landmarker.detect(collage([one_face_portraits[0][0]] * 4, 4))
    assert calls


def test_flat_share_tells_a_photographed_face_from_flat_fills(faces):
    """Fills are flat, photographed skin is not, even enlarged from a small face or compressed;
    blown-out white and crushed black are not counted as flat (a photo clips there too)."""
    side = 128
    grey = np.full((side, side, 3), 180, np.uint8)
    assert flat_share(grey) == 1.0 and not is_photographic(grey)
    for clipped in (0, 255):
        assert flat_share(np.full((side, side, 3), clipped, np.uint8)) == 0.0
    noise = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    assert flat_share(noise) < 0.01
    drawing = grey.copy()
    cv2.ellipse(drawing, (64, 64), (40, 52), 0, 0, 360, (230, 190, 160), -1)
    for x in (48, 80):
        cv2.circle(drawing, (x, 54), 6, (60, 40, 30), -1)
    assert flat_share(drawing) > 2 * MAX_FLAT_SHARE
    for path in sorted((faces / "ffhq" / "test").glob("*.png"))[:10]:
        face = np.asarray(load_rgb(path))
        enlarged = cv2.resize(cv2.resize(face, (40, 40), interpolation=cv2.INTER_AREA), (side, side),
                              interpolation=cv2.INTER_LINEAR)          # a 40 px face scored at 128 px
        _, jpeg = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, 30])
        for version in (face, enlarged, cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)):
            assert flat_share(version) < MAX_FLAT_SHARE / 2, path.name


def test_bad_options_fail_early(tmp_path, wild_subset, capsys):
    with pytest.raises(ConfigError, match="style"):
        align_images(AlignConfig(src=str(wild_subset), out=str(tmp_path / "o"), style="dlib"), progress=False)
    with pytest.raises(FileNotFoundError):
        align_images(AlignConfig(src=str(tmp_path / "nothing"), out=str(tmp_path / "o")), progress=False)
    assert not (tmp_path / "o").exists()
    assert main(["align", str(wild_subset), str(tmp_path / "o"), "--size", "8"]) == 2
    assert "size" in capsys.readouterr().err


def test_cli_align(tmp_path, wild, capsys):
    src = tmp_path / "two"
    src.mkdir()
    for p in sorted(wild.iterdir())[:2]:
        (src / p.name).symlink_to(p)
    assert main(["align", str(src), str(tmp_path / "out"), "--size", "64", "--split", "0,0,1"]) == 0
    assert "aligned 2 of 2 pictures (100.0%)" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "test").glob("*.png"))) == 2
    assert main(["align", str(src), str(tmp_path / "out")]) == 2         # exists, no --force


def test_align_force_replaces_the_output(tmp_path, wild):
    from conftest import pngs

    src = tmp_path / "three"
    src.mkdir()
    for p in sorted(wild.iterdir())[:3]:
        (src / p.name).symlink_to(p)
    out = tmp_path / "out"
    for seed, extra in (("0", []), ("1", ["--force"])):
        assert main(["align", str(src), str(out), "--size", "32", "--split", "0.5,0,0.5", "--seed", seed,
                     *extra]) == 0
    report = json.loads((out / "report.json").read_text())
    assert pngs(out) == sorted(f["output"] for im in report["images"] for f in im["faces"])
