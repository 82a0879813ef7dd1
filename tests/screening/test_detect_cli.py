"""``detect`` with the bundled detector: outputs, geometry of boxes, heatmaps and
how bad input is reported."""
from __future__ import annotations

import argparse
import csv
import io
import json
import typing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import clear_pair, listed
from patchforensics.cli import build_parser, main
from patchforensics.core.config import ConfigError
from patchforensics.core.imageio import FORMATS_TEXT
from patchforensics.data.align import STYLES
from patchforensics.data.transforms import TransformConfig, eval_image
from patchforensics.models.checkpoint import BUNDLED_DIR
from patchforensics.scoring.engine import Engine
from patchforensics.scoring.runtime import BACKENDS
from patchforensics.screening.detect import DetectConfig, detect, expand_paths, heatmap_names
from patchforensics.screening.detector import FACE_MODES, Detector
from patchforensics.screening.geometry import input_window, map_box
from patchforensics.screening.results import FORMATS
from patchforensics.screening.serve import FaceMode, ServeConfig, create_app

# test images the bundled detector gets right with a margin, chosen by listing the folders
REAL, FAKE = clear_pair()


@pytest.fixture(scope="module")
def bundled():
    return Engine.load()     # the bundled detector


def run_json(capsys, *args) -> tuple[int, dict]:
    rc = main(["detect", *map(str, args), "--format", "json"])
    out = capsys.readouterr().out
    return rc, (json.loads(out) if out.strip() else {})


def test_bundled_detector_ships_with_weights_and_thresholds(bundled):
    assert (BUNDLED_DIR / "weights.safetensors").stat().st_size < 5_000_000
    assert (BUNDLED_DIR / "MODEL_CARD.md").is_file()
    assert {"eer", "fpr1pct"} <= set(bundled.card.thresholds)


def test_detect_scores_reports_and_keeps_going(faces, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rc, out = run_json(capsys, faces / REAL, broken, faces / FAKE)
    assert rc == 0
    rows = out["results"]
    assert [r["path"] for r in rows] == [str(faces / REAL), str(broken), str(faces / FAKE)]   # input order
    assert [r["status"] for r in rows] == ["scored", "skipped", "scored"]
    assert rows[0]["input"] == rows[2]["input"] == "aligned"        # 128x128: the model's input square
    real, fake = rows[0]["faces"][0], rows[2]["faces"][0]
    assert real["verdict"] == "real" and fake["verdict"] == "fake"
    assert rows[1]["error"] and rows[1]["faces"] == []
    assert out["skipped"] == [{"path": str(broken), "reason": rows[1]["error"]}]
    thr = out["p_fake_threshold"]
    for f in (real, fake):
        assert (f["p_fake"] >= thr) == (f["verdict"] == "fake")
        assert f["face_box"] == [0, 0, 128, 128] and f["quad"] is None
        t, l, b, rr = f["box"]
        assert 0 <= t < b <= 128 and 0 <= l < rr <= 128
        assert 0 <= f["box_p_fake"] <= 1


def test_folders_globs_and_formats(faces, tmp_path, capsys):
    folder = tmp_path / "mine"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.png").symlink_to(faces / REAL)
    (folder / "nested" / "b.png").symlink_to(faces / FAKE)
    (folder / "readme.txt").write_text("not an image, not listed")
    assert [p.name for p in expand_paths([str(folder)])] == ["a.png", "b.png"]
    globbed = tmp_path / "globbed"
    globbed.mkdir()
    for rel in listed("tpdne-stylegan2/test", 4):
        (globbed / rel.rsplit("/", 1)[1]).symlink_to(faces / rel)
    pattern = str(globbed / "*.png")
    assert len(expand_paths([pattern])) == 4
    assert main(["detect", pattern, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4 and {r["verdict"] for r in rows} <= {"real", "fake"}
    assert main(["detect", pattern, "--threshold", "0.999"]) == 0
    table = capsys.readouterr().out
    assert "4 faces scored in 4 images: 0 fake, 4 real" in table and "p_fake>=0.999" in table


def test_gifs_in_a_folder_are_scored_and_every_skipped_file_named(faces, tmp_path, capsys):
    """GIF is one of the accepted formats: a folder scan scores a static and an animated one (its
    first frame), and names every other file it passes over, but for hidden ones."""
    folder = tmp_path / "shoot"
    (folder / ".git").mkdir(parents=True)
    face = Image.open(faces / FAKE).convert("RGB")
    face.save(folder / "static.gif")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8))
    face.save(folder / "animated.GIF", save_all=True, append_images=[noise, face.rotate(90)], duration=100)
    assert Image.open(folder / "animated.GIF").n_frames == 3
    (folder / "notes.txt").write_text("not an image")
    (folder / "IMG_0001.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main")
    rc = main(["detect", str(folder), "--format", "json"])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    rows = {Path(r["path"]).name: r for r in out["results"]}
    assert set(rows) == {"static.gif", "animated.GIF", "notes.txt", "IMG_0001.heic"} and rc == 0
    static, animated = rows["static.gif"], rows["animated.GIF"]
    assert static["status"] == animated["status"] == "scored" and static["input"] == "aligned"
    # the animation is scored on its first frame: the same pixels as the static GIF
    assert animated["faces"][0]["p_fake"] == pytest.approx(static["faces"][0]["p_fake"], abs=1e-6)
    for name in ("notes.txt", "IMG_0001.heic"):
        assert rows[name]["status"] == "skipped" and "GIF" in rows[name]["error"]
        assert f"skipped {folder / name}: not read: " in captured.err
    assert {Path(s["path"]).name for s in out["skipped"]} == {"notes.txt", "IMG_0001.heic"}
    assert ".DS_Store" not in captured.err + captured.out and "HEAD" not in captured.err + captured.out
    assert [p.name for p in expand_paths([str(folder)])] == ["animated.GIF", "static.gif"]


def test_error_texts_name_every_accepted_format(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["detect", str(tmp_path)]) == 2                        # a folder without images
    assert f"no images found in this folder (accepted: {FORMATS_TEXT})" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "notes.txt")]) == 1         # a file named on its own: its content
    assert f"not a supported image (accepted: {FORMATS_TEXT})" in capsys.readouterr().err
    assert FORMATS_TEXT == "PNG, JPEG, WebP, BMP, TIFF or GIF"


def test_nothing_usable_and_wrong_arguments(tmp_path, faces, capsys):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    assert main(["detect", str(junk)]) == 1
    assert "notes.txt" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "missing.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "*.jpg")]) == 2
    assert "matches nothing" in capsys.readouterr().err
    assert main(["detect", str(faces / REAL), "--threshold", "strict"]) == 2
    assert "unknown threshold" in capsys.readouterr().err


def test_heatmaps_are_written_and_never_overwritten(faces, tmp_path, capsys):
    out = tmp_path / "heat"
    args = [str(faces / REAL), str(faces / FAKE), "--heatmaps", str(out)]
    rc, result = run_json(capsys, *args)
    assert rc == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == [REAL.replace("/", "__"), FAKE.replace("/", "__")]
    im = Image.open(out / files[1])
    assert im.height == 256 and 512 < im.width < 600   # input | overlay, enlarged 2x, + the colour bar
    assert [r["heatmap"] for r in result["results"]] == [str(out / f) for f in files]
    assert main(["detect", *args]) == 2
    assert "--force" in capsys.readouterr().err


def test_input_window_maps_boxes_to_the_original_image(faces, bundled):
    """A face enlarged 2x and centred on a wide canvas: the model's window is that
    face, and its boxes are the model-input boxes scaled by 2 and shifted by 72 px."""
    face = Image.open(faces / FAKE).convert("RGB")
    canvas = Image.new("RGB", (400, 256), (128, 128, 128))
    canvas.paste(face.resize((256, 256), Image.Resampling.LANCZOS), (72, 0))
    w = input_window(400, 256, bundled.card.transform())
    assert (w.left, w.top, w.scale_x, w.scale_y, w.side) == (72, 0, 2, 2, 128)
    a = Detector(bundled).analyze([canvas])[0]
    for p in a.top_patches:
        t, l, b, r = p.input_box
        assert p.box == (2 * t, 2 * l + 72, 2 * b, 2 * r + 72)
    # and the window is what eval_image feeds the model, for odd sizes too
    odd = canvas.resize((333, 517), Image.Resampling.LANCZOS)
    w = input_window(333, 517, bundled.card.transform())
    crop = odd.crop((round(w.left), round(w.top), round(w.left + w.side * w.scale_x),
                     round(w.top + w.side * w.scale_y))).resize((128, 128), Image.Resampling.LANCZOS)
    diff = np.abs(np.asarray(crop, float) - np.asarray(eval_image(odd, bundled.card.transform()), float))
    assert diff.mean() < 4.0


def test_full_image_geometry_uses_fine_size():
    w = input_window(300, 200, TransformConfig(load_size=256, fine_size=224, patch_model=False))
    assert w.side == 224 and w.scale_y == pytest.approx(200 / 256)


def test_detect_api_accepts_a_preloaded_model(faces, bundled):
    result = detect(DetectConfig(paths=[str(faces / REAL)], threshold="fpr1pct"), progress=False, engine=bundled)
    assert result.threshold_name == "fpr1pct"
    assert result.p_fake_threshold == pytest.approx(1 - bundled.card.thresholds["fpr1pct"])
    assert result.images[0].faces[0].verdict == "real"


coordinate = st.floats(-2000, 2000, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=4, max_size=4), coordinate, coordinate,
       st.lists(coordinate, min_size=4, max_size=4), st.integers(1, 900), st.integers(1, 900))
def test_any_box_through_any_map_is_a_valid_box_inside_the_image(linear, dx, dy, box, width, height):
    """A patch of an aligned face can lie wholly outside the photo (the square leaves it):
    its box came back inverted, e.g. (90, 0, 135, -23), and serve failed cutting it out."""
    affine = np.array([[linear[0], linear[1], dx], [linear[2], linear[3], dy]])
    t, l, b, r = map_box(affine, box, width, height)
    assert 0 <= t < b <= height and 0 <= l < r <= width


def test_heatmap_names_follow_the_paths_as_typed(tmp_path, faces):
    """A symbolic link's heatmap is named after the link, not after the file it points to."""
    (tmp_path / "mine").mkdir()
    link = tmp_path / "mine" / "holiday.png"
    link.symlink_to(faces / REAL)
    other = tmp_path / "mine" / "sub" / "beach.png"
    other.parent.mkdir()
    other.symlink_to(faces / FAKE)
    assert heatmap_names([link, other]) == ["holiday.png", "sub__beach.png"]
    assert heatmap_names([tmp_path / "a.jpg", tmp_path / "a.png", tmp_path / "b.jpg"]) == \
        ["a.jpg.png", "a.png.png", "b.png"]                   # never one file for two photos


def test_option_values_are_those_the_code_implements():
    """``--faces``, ``--align-style``, ``--backend`` and ``--format`` offer exactly the values defined
    next to the code (FACE_MODES, STYLES, BACKENDS, FORMATS), and serve's API accepts and
    describes the same face modes: a value added in one place shows everywhere."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))

    def choices(command: str, flag: str) -> tuple:
        return tuple(next(a for a in sub.choices[command]._actions if flag in a.option_strings).choices)
    for command in ("detect", "serve"):
        assert choices(command, "--faces") == tuple(FACE_MODES)
        assert choices(command, "--align-style") == tuple(STYLES)
        assert choices(command, "--backend") == BACKENDS
    assert choices("detect", "--format") == FORMATS
    assert typing.get_args(FaceMode) == tuple(FACE_MODES)
    spec = create_app(service=None).openapi()            # the schema needs no model
    (param,) = spec["paths"]["/api/detect"]["post"]["parameters"]
    assert param["name"] == "faces" and param["schema"]["anyOf"][0]["enum"] == list(FACE_MODES)
    assert all(mode in param["description"] for mode in FACE_MODES)
    info = spec["components"]["schemas"]["InfoOut"]["properties"]
    assert info["faces"]["enum"] == list(FACE_MODES) and info["align_style"]["enum"] == list(STYLES)
    for bad in (dict(faces="everything"), dict(align_style="ffhq2"), dict(backend="tensorrt")):
        with pytest.raises(ConfigError):
            DetectConfig(paths=["x"], **bad).validate()
        with pytest.raises(ConfigError):
            ServeConfig(**bad).validate()
