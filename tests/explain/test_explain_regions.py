"""``regions``: face-region masks on real faces, the assignment rule, no-face accounting,
and the BiSeNet path with a randomly initialised network."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from conftest import plain_background_face
from patchforensics.core import fileio
from patchforensics.models.checkpoint import save_weights
from patchforensics.cli import main
from patchforensics.core.imageio import load_rgb
from patchforensics.explain.patches import PatchesConfig, run_patches
from patchforensics.explain.regions import (CELEBAMASK_CLASSES, BiSeNet, BiSeNetSegmenter, MediapipeSegmenter,
                                            RegionsConfig, assign_region, load_bisenet, region_shares, run_regions)
from test_explain_patches import square_detector


@pytest.fixture(scope="module")
def mediapipe_segmenter():
    seg = MediapipeSegmenter()
    yield seg
    seg.close()


def test_mediapipe_regions_are_plausible_on_a_real_face(faces, mediapipe_segmenter):
    # a face with a plain wall on the left (the most uniform top-left corner and left edge)
    rgb = np.asarray(load_rgb(plain_background_face()))
    classes = mediapipe_segmenter.segment(rgb)
    assert classes is not None and classes.shape == rgb.shape[:2]
    # one eye (and one brow) each side of the nose
    for left, right in (("l_eye", "r_eye"), ("l_brow", "r_brow")):
        cols_of = [np.nonzero(classes == mediapipe_segmenter.classes.index(c))[1] for c in (left, right)]
        assert min(len(c) for c in cols_of) > 10 and abs(cols_of[0].mean() - cols_of[1].mean()) > 15
    labels = mediapipe_segmenter.region_of[classes]
    ids = {name: i for i, name in enumerate(mediapipe_segmenter.regions)}
    rows, cols = np.indices(labels.shape)

    def where(region):
        mask = labels == ids[region]
        assert mask.sum() > 30, f"{region} is (nearly) empty"
        return mask

    face = np.isin(labels, [ids[r] for r in ("skin", "brows", "eye", "nose", "mouth")])
    fr, fc = rows[face], cols[face]
    eye, nose, mouth, brows, hair = (where(r) for r in ("eye", "nose", "mouth", "brows", "hair"))
    # eyes inside the face, one each side of the nose, between brows and nose, above the mouth
    assert fr.min() < rows[eye].min() and rows[eye].max() < fr.max()
    assert fc.min() < cols[eye].min() and cols[eye].max() < fc.max()
    nose_col = cols[nose].mean()
    assert (cols[eye] < nose_col).sum() > 10 and (cols[eye] > nose_col).sum() > 10
    assert rows[brows].mean() < rows[eye].mean() < rows[nose].mean() < rows[mouth].mean()
    assert rows[hair].mean() < rows[mouth].mean()
    # the wall (top-left corner, left edge) is background, the face is not
    for wall in (labels[:10, :10], labels[40:80, :6]):
        assert (wall == ids["background"]).all()
    assert not (labels[face] == ids["background"]).any()
    assert 0.1 < (labels == ids["background"]).mean() < 0.6


def test_no_face_on_a_blank_image(mediapipe_segmenter):
    assert mediapipe_segmenter.segment(np.full((128, 128, 3), 128, np.uint8)) is None


def test_assignment_normalises_by_region_size():
    labels = np.zeros((20, 20), np.uint8)       # region 0 everywhere ...
    labels[2:4, 2:4] = 1                        # ... but a small region 1 of 4 pixels
    box = (0, 0, 6, 6)                          # holds all of region 1 and 32 of region 0's 396 pixels
    np.testing.assert_allclose(region_shares(labels, box, 2), [32 / 396, 1.0])
    assert assign_region(labels, box, np.arange(2)) == 1
    assert assign_region(labels, (10, 10, 16, 16), np.arange(2)) == 0
    assert assign_region(labels, (-3, -3, 3, 3), np.arange(2)) == 1      # padding counts for no region


def test_the_seed_normalises_each_fine_class_before_grouping():
    """A patch holding all of one eye (4 px) and 4 of the nose's 6 px: the left eye's share
    (4/4) beats the nose's (4/6), so the seed calls it "eye"; grouped first, both eyes
    (8 px) give 4/8, and the nose wins."""
    skin, l_eye, r_eye, nose = 0, 1, 2, 3
    region_of = np.array([0, 1, 1, 2])              # skin, eye (both eyes), nose
    labels = np.full((20, 20), skin, np.uint8)
    labels[2:4, 2:4] = l_eye
    labels[2:4, 12:14] = r_eye
    labels[4:6, 2:5] = nose                          # 6 px, the patch below holds 4 of them
    box = (0, 0, 6, 4)
    np.testing.assert_allclose(region_shares(labels, box, 4)[1:], [1.0, 0.0, 4 / 6])
    assert assign_region(labels, box, region_of) == assign_region(labels, box, region_of, "class") == 1
    assert assign_region(labels, box, region_of, "region") == 2


@pytest.fixture(scope="module")
def face_patches(tmp_path_factory, faces):
    """A patches folder over 3 real + 3 fake faces plus one blank image (no face), made
    with the fixed square detector (it favours bright patches)."""
    root = tmp_path_factory.mktemp("regions")
    for kind, src in (("real", "ffhq"), ("fake", "tpdne-stylegan2")):
        (root / kind).mkdir()
        for p in sorted((faces / src / "test").glob("*.png"))[:3]:
            (root / kind / p.name).symlink_to(p)
    Image.fromarray(np.full((128, 128, 3), 128, np.uint8)).save(root / "real" / "blank.png")
    ckpt = root / "ckpt"
    fileio.write_yaml(ckpt / "config.yaml", {"model": "widenet_kw7_d1", "name": "square", "load_size": 128,
                                             "fine_size": 128})
    save_weights(ckpt / "bestval.safetensors", square_detector(), epoch=0)
    cfg = PatchesConfig(checkpoint=str(ckpt), real=[str(root / "real")], fake=[str(root / "fake")],
                        dataset_name="faces", results_dir=str(root / "results"), topn=12, unique=True,
                        device="cpu")
    return run_patches(cfg, progress=False)


def test_regions_counts_top_and_random_patches(face_patches, mediapipe_segmenter, capsys):
    out = run_regions(RegionsConfig(str(face_patches)), segmenter=mediapipe_segmenter, progress=False)
    summary = json.loads((out / "regions.json").read_text())
    assert summary["normalise"] == "class"
    for cls, c in summary["classes"].items():
        tops = sum(k["top"] for k in c["counts"].values())
        randoms = sum(k["random"] for k in c["counts"].values())
        assert tops == randoms == c["assigned"] == c["patches"] - c["no_face_patches"]
        assert abs(sum(k["top_share"] for k in c["counts"].values()) - 1) < 1e-9
    reals = summary["classes"]["reals"]
    blank_patches = sum(1 for row in (out / "regions.csv").read_text().splitlines() if "blank.png" in row)
    assert reals["no_face_images"] == 1 and reals["no_face_files"][0].endswith("blank.png")
    assert reals["no_face_patches"] == blank_patches
    assert summary["classes"]["fakes"]["no_face_images"] == 0
    for name in ("histogram.png", "segmentation_examples.png", "regions.csv"):
        assert (out / name).stat().st_size > 0
    best = max(summary["regions"], key=lambda r: reals["counts"][r]["top"])
    assert (out / "reals" / f"{best}.png").is_file()
    # the CLI prints the same counts and refuses to overwrite without --force
    assert main(["regions", str(face_patches)]) == 2
    assert main(["regions", str(face_patches), "--force"]) == 0
    printed = capsys.readouterr().out
    assert "no face found in 1 images" in printed and "blank.png" in printed


def test_bisenet_checkpoint_loads_and_segments(tmp_path, face_patches, faces):
    net = BiSeNet(19).eval()
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp_path / "parsing.safetensors"))
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "79999_iter.pth")
    for path in (tmp_path / "parsing.safetensors", tmp_path / "79999_iter.pth"):
        loaded = load_bisenet(path).state_dict()
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    x = torch.rand(1, 3, 64, 64)
    assert net(x).shape == (1, 19, 64, 64)

    # a parser whose head calls every pixel "nose" (its input is a ReLU output, >= 0): the
    # segmenter must map that class to the nose region at the image's size
    with torch.no_grad():
        head = net.conv_out.conv_out.weight
        head.zero_()
        head[CELEBAMASK_CLASSES.index("nose")] = 1.0
    seg = BiSeNetSegmenter(net, input_size=64)
    assert seg.regions == ("background", "skin", "brows", "eye", "ear", "nose", "mouth", "neck", "clothes",
                           "hair", "hat")
    labels = seg.segment(np.asarray(load_rgb(plain_background_face())))
    assert labels is not None and labels.shape == (128, 128)
    assert (labels == CELEBAMASK_CLASSES.index("nose")).all()
    assert (seg.region_of[labels] == seg.regions.index("nose")).all()
    out = run_regions(RegionsConfig(str(face_patches), segmenter="bisenet", bisenet_weights="unused"),
                      segmenter=seg, progress=False)
    assert out.name == "regions_bisenet"
    summary = json.loads((out / "regions.json").read_text())
    assert summary["segmenter"] == "bisenet" and summary["regions"] == list(seg.regions)
    for c in summary["classes"].values():
        assert c["assigned"] + c["no_face_patches"] == c["patches"]

    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a 19-class BiSeNet"):
        load_bisenet(tmp_path / "other.pth")
    with pytest.raises(ValueError, match="--bisenet-weights"):
        run_regions(RegionsConfig(str(face_patches), segmenter="bisenet", force=True), progress=False)
