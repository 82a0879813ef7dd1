"""``detect`` on ordinary photos: every face found (mediapipe), aligned as the training
faces were (FFHQ style), scored on its own, its boxes and heatmap mapped back onto
the photo through the alignment; an image without a face gets no verdict."""
from __future__ import annotations

import csv
import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import clear_pair, raw_images
from patchforensics.cli import main
from patchforensics.core.config import ConfigError
from patchforensics.core.imageio import load_rgb
from patchforensics.data.align import pixel_affine
from patchforensics.screening.detect import DetectConfig, detect, open_detector, render_on_original

WILD = raw_images("wild-portraits", 6)       # real, unaligned portrait photos of various sizes
TPDNE = raw_images("tpdne-1024", 3)          # fake, raw 1024x1024 StyleGAN2 outputs
REAL, _ = clear_pair()


@pytest.fixture(scope="module")
def detector():
    with open_detector() as d:               # the bundled detector, its face finder closed at the end
        yield d


@pytest.fixture(scope="module")
def no_face(tmp_path_factory) -> dict[str, str]:
    """Images without a face, not of the model's input size: noise and flat grey."""
    root = tmp_path_factory.mktemp("no_face")
    noise = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "noise.png")
    Image.new("RGB", (400, 300), (128, 128, 128)).save(root / "grey.png")
    return {"noise": str(root / "noise.png"), "grey": str(root / "grey.png")}


def run_json(capsys, *args) -> tuple[int, dict, str]:
    rc = main(["detect", *map(str, args), "--format", "json"])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if out.out.strip() else {}), out.err


def inside(box, width, height) -> bool:
    t, l, b, r = box
    return 0 <= t < b <= height and 0 <= l < r <= width


def test_photos_are_searched_for_faces_aligned_and_scored(capsys):
    rc, out, _ = run_json(capsys, *WILD, *TPDNE)
    assert rc == 0
    rows = out["results"]
    assert [r["path"] for r in rows] == [str(p) for p in WILD + TPDNE]
    for r in rows:
        assert r["status"] == "scored" and r["input"] == "found" and len(r["faces"]) >= 1, r
        for k, f in enumerate(r["faces"]):
            assert f["index"] == k and f["verdict"] in ("fake", "real")
            assert inside(f["face_box"], r["width"], r["height"]) and inside(f["box"], r["width"], r["height"])
            assert len(f["quad"]) == 4
    p_wild = np.array([r["faces"][0]["p_fake"] for r in rows[:len(WILD)]])
    p_tpdne = np.array([r["faces"][0]["p_fake"] for r in rows[len(WILD):]])
    assert p_tpdne.mean() > p_wild.mean() + 0.1           # the generated faces look more fake
    thr = out["p_fake_threshold"]
    assert np.mean(p_tpdne >= thr) > 0.5 and np.mean(p_wild < thr) > 0.5


def test_no_face_means_no_verdict(no_face, faces, capsys):
    rc, out, err = run_json(capsys, no_face["noise"], no_face["grey"])
    assert rc == 1 and "no face found in any image" in err and len(err.strip().splitlines()) == 1
    for r in out["results"]:
        assert r["status"] == "no face found" and r["faces"] == [] and r["error"] is None
        assert r["input"] == "found" and r["heatmap"] is None
    # beside a face: the run succeeds, the face is scored, the others have no verdict
    assert main(["detect", no_face["noise"], str(faces / REAL), no_face["grey"]]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "no face" in table[1] and "no face" in table[3] and "real" in table[2]
    assert table[-1].startswith("1 face scored in 1 image: 0 fake, 1 real; 2 images with no face found (no verdict)")
    assert main(["detect", no_face["noise"], str(faces / REAL), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["status"], r["verdict"], r["p_fake"]) for r in rows][0] == ("no face found", "", "")
    assert rows[1]["status"] == "scored" and rows[1]["input"] == "aligned"
    result = detect(DetectConfig(paths=[no_face["grey"]]), progress=False)
    assert [im.path for im in result.no_face] == [no_face["grey"]] and result.faces == []


def test_auto_rule_and_the_faces_option(detector, tmp_path, capsys):
    """auto: exactly the model's input square is one aligned face; any other size is searched.
    --faces find / aligned force either path."""
    small = tmp_path / "tpdne_128.png"
    load_rgb(TPDNE[0]).resize((128, 128), Image.Resampling.LANCZOS).save(small)
    expected = detector.analyze([load_rgb(small)])[0].p_fake
    _, out, _ = run_json(capsys, small)
    (r,) = out["results"]
    assert r["input"] == "aligned" and r["faces"][0]["p_fake"] == pytest.approx(expected, abs=1e-6)
    _, out, _ = run_json(capsys, small, "--faces", "find")
    (r,) = out["results"]
    assert r["input"] == "found" and len(r["faces"]) == 1 and r["faces"][0]["quad"] is not None
    # a photo forced through the old path: its centred square, as before
    photo = load_rgb(WILD[0])
    before = detector.analyze([photo])[0]
    _, out, _ = run_json(capsys, WILD[0], "--faces", "aligned")
    (r,) = out["results"]
    assert r["input"] == "aligned" and r["faces"][0]["p_fake"] == pytest.approx(before.p_fake, abs=1e-6)
    assert r["faces"][0]["face_box"] == list(before.face_box)
    with pytest.raises(ConfigError, match="faces: must be one of auto, find, aligned"):
        DetectConfig(paths=["x"], faces="everything").validate()
    with pytest.raises(SystemExit) as e:
        main(["detect", str(WILD[0]), "--faces", "everything"])
    assert e.value.code == 2


def test_heatmap_and_boxes_go_back_through_the_inverse_alignment(detector):
    photo = load_rgb(WILD[0])
    photo = photo.resize((round(photo.width * 400 / photo.height), 400), Image.Resampling.LANCZOS)
    (screened,) = detector.screen([photo], "find")
    a = screened.faces[0]
    side = a.input_image.width
    size, original = photo.size, np.asarray(photo, np.float32)

    def warped_back(affine):          # the aligned face the model saw, put back onto the photo
        back = cv2.warpAffine(np.asarray(a.input_image, np.float32), pixel_affine(affine), size,
                              flags=cv2.INTER_LINEAR, borderValue=0)
        mask = cv2.warpAffine(np.ones((side, side), np.float32), pixel_affine(affine), size) > 0.999
        return np.abs(back - original)[mask].mean(), mask

    error, mask = warped_back(a.to_original)
    shifted, _ = warped_back(a.to_original + np.array([[0, 0, 6.0], [0, 0, 0]]))    # 6 px off
    assert error < 12 and error < 0.6 * shifted
    # every reported box lies in the face square's bounding rectangle
    ys, xs = np.nonzero(mask)
    for p in a.top_patches:
        t, l, b, r = p.box
        assert ys.min() - 1 <= t < b <= ys.max() + 2 and xs.min() - 1 <= l < r <= xs.max() + 2
    # the picture: the photo, tinted by the heatmap inside the face square only, and the colour bar
    picture = np.asarray(render_on_original(photo, screened.faces, [""]), np.float32)     # no caption
    assert picture.shape[0] == photo.height and picture.shape[1] > photo.width
    shown = picture[:, :photo.width]
    far = cv2.dilate(mask.astype(np.uint8), np.ones((13, 13), np.uint8)) == 0     # beyond the outline
    core = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) == 1
    if far.any():
        assert np.abs(shown - original)[far].max() == 0
    assert np.abs(shown - original)[core].mean() > 10


def test_several_faces_each_get_their_own_verdict(detector, tmp_path):
    left = load_rgb(WILD[0])
    left = left.resize((round(left.width * 360 / left.height), 360), Image.Resampling.LANCZOS)
    right = load_rgb(TPDNE[0]).resize((300, 300), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (left.width + right.width + 60, 400), (200, 200, 200))
    canvas.paste(left, (10, 20))
    canvas.paste(right, (left.width + 50, 50))
    path = tmp_path / "two.png"
    canvas.save(path)
    result = detect(DetectConfig(paths=[str(path)]), progress=False)
    (image,) = result.images
    assert image.input == "found" and [f.index for f in image.faces] == [0, 1]
    assert [im.path for im, _ in result.faces] == [str(path)] * 2
    centres = sorted((f.face_box[1] + f.face_box[3]) / 2 for f in image.faces)
    assert centres[0] < left.width + 10 < centres[1]          # one face in each picture
    sides = [np.hypot(*np.subtract(f.quad[3], f.quad[0])) for f in image.faces]
    assert sides[0] >= sides[1]                               # largest first
