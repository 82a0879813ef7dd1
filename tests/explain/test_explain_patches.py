"""``patches``: the cut-outs are the receptive-field boxes the model really looks at.

A widenet with hand-set weights answers "real" only where its window holds a
bright pixel, so its most predictive patches must be exactly the receptive-
field boxes that touch a planted bright square.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from patchforensics.core import fileio
from patchforensics.models.checkpoint import save_weights
from patchforensics.cli import main
from patchforensics.models import create_model, receptive_field
from patchforensics.explain.patches import PAD_VALUE, PatchesConfig, TopPatches, _Entry, cut_box, read_patch_set, run_patches

SIZE = 128
GREY = 128
# (top, left, height, width) of the bright square in each real image; the second
# touches the top-right corner so some of its boxes leave the image
SQUARES = {"center.png": (50, 60, 5, 5), "corner.png": (0, 124, 4, 4)}


def square_detector() -> torch.nn.Module:
    """widenet_kw7_d1 whose real logit is the largest 7×7 window sum in its field and whose
    fake logit is 0: a bright (255) pixel adds ~3, the grey background ~0.004 per pixel."""
    model = create_model("widenet_kw7_d1")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        f = model.features
        f.conv.weight[0] = 1.0
        f.bn.weight.fill_(1.0)
        f.bn.running_mean.zero_()
        f.bn.running_var.fill_(1.0)
        f.fc1.weight[0, 0] = 1.0
        f.fc2.weight[0, 0] = 1.0
        model.head.weight[1, 0] = 1.0
    return model.eval()


def planted_images(root) -> dict[str, np.ndarray]:
    images = {}
    for name, (top, left, h, w) in SQUARES.items():
        a = np.full((SIZE, SIZE, 3), GREY, np.uint8)
        a[top:top + h, left:left + w] = 255
        images[name] = a
    for kind, items in (("real", images), ("fake", {"plain.png": np.full((SIZE, SIZE, 3), GREY, np.uint8)})):
        (root / kind).mkdir(parents=True)
        for name, a in items.items():
            Image.fromarray(a).save(root / kind / name)
    return images


@pytest.fixture()
def square_setup(tmp_path):
    images = planted_images(tmp_path / "data")
    ckpt = tmp_path / "ckpt"
    model = square_detector()
    fileio.write_yaml(ckpt / "config.yaml", {"model": "widenet_kw7_d1", "name": "square", "load_size": SIZE,
                                             "fine_size": SIZE})
    save_weights(ckpt / "bestval.safetensors", model, epoch=0)
    return {"images": images, "ckpt": ckpt, "data": tmp_path / "data", "results": tmp_path / "results",
            "rf": receptive_field(model, SIZE)}


def touching(rf, square) -> set[tuple[int, int]]:
    """Output positions whose receptive-field box overlaps the square."""
    top, left, h, w = square
    b = rf.boxes
    hit = (b[..., 0] < top + h) & (b[..., 2] > top) & (b[..., 1] < left + w) & (b[..., 3] > left)
    return {(int(y), int(x)) for y, x in zip(*np.nonzero(hit))}


def config(s, **kw) -> PatchesConfig:
    return PatchesConfig(checkpoint=str(s["ckpt"]), real=[str(s["data"] / "real")], fake=[str(s["data"] / "fake")],
                         dataset_name="squares", results_dir=str(s["results"]), device="cpu", **kw)


def test_top_patches_are_exactly_the_boxes_touching_the_square(square_setup):
    s = square_setup
    rf = s["rf"]
    expected = {(name, pos) for name, sq in SQUARES.items() for pos in touching(rf, sq)}
    assert len(expected) == 3 * 4 + 3 * 2   # 11 px fields at stride 4 over the squares (by hand)

    out = run_patches(config(s, topn=len(expected)), progress=False)
    reals = read_patch_set(out, "reals")
    found = {(str(f).rsplit("/", 1)[-1], (int(y), int(x))) for f, (y, x) in zip(reals["files"], reals["pos"])}
    assert found == expected
    assert np.all(np.diff(reals["margin"]) <= 0)            # best first
    assert reals["value"].min() > 0.9                        # sigmoid(>= ~3)

    padded = 0
    for f, (y, x), box, patch in zip(reals["files"], reals["pos"], reals["box"], reals["patch"]):
        assert tuple(box) == rf.box(int(y), int(x))
        assert patch.shape == (*rf.size, 3)
        image = s["images"][str(f).rsplit("/", 1)[-1]]
        np.testing.assert_array_equal(patch, cut_box(image, box, PAD_VALUE))
        assert (patch == 255).any()                          # every kept patch shows part of the square
        if box[0] < 0 or box[3] > SIZE:
            padded += 1
            outside = patch[:-box[0]] if box[0] < 0 else patch[:, SIZE - box[3]:]
            assert (outside == PAD_VALUE).all()
    assert padded > 0

    meta = json.loads((out / "patches.json").read_text())
    assert meta["counts"]["reals"] == {"images": 2, "patches": len(expected)}
    assert meta["receptive_field"]["size"] == list(rf.size)
    np.testing.assert_array_equal(np.load(out / "boxes.npy"), rf.boxes)
    assert (out / "reals_easiest_grid.png").is_file() and (out / "reals_easiest.csv").is_file()


def test_unique_keeps_the_best_patch_of_each_image(square_setup):
    s = square_setup
    out = run_patches(config(s, topn=10, unique=True), progress=False)
    reals = read_patch_set(out, "reals")
    assert sorted(str(f).rsplit("/", 1)[-1] for f in reals["files"]) == sorted(SQUARES)
    for f, box in zip(reals["files"], reals["box"]):
        top, left, h, w = SQUARES[str(f).rsplit("/", 1)[-1]]
        # the best window holds the whole square, so its box does too
        assert box[0] <= top and box[1] <= left and box[2] >= top + h and box[3] >= left + w
    assert len(read_patch_set(out, "fakes")["files"]) == 1


def test_heap_keeps_the_n_largest_in_bounded_memory():
    rng = np.random.default_rng(0)
    margins = rng.normal(size=500).round(1)                 # many ties
    heap = TopPatches(37)
    for i, m in enumerate(margins):
        key = (float(m), -i)
        if heap.would_keep(key):
            heap.push(_Entry(key, "f", (0, 0), (0, 0, 1, 1), 0.0, np.zeros(1)))
        assert len(heap.heap) <= 37
    expected = sorted(((float(m), -i) for i, m in enumerate(margins)), reverse=True)[:37]
    assert [e.key for e in heap.best_first()] == expected


def test_cut_box_pads_outside_the_array():
    a = np.arange(16).reshape(4, 4)
    np.testing.assert_array_equal(cut_box(a, (-1, 2, 2, 5), -1), [[-1, -1, -1], [2, 3, -1], [6, 7, -1]])
    np.testing.assert_array_equal(cut_box(a, (1, 1, 3, 3), -1), a[1:3, 1:3])


def test_cli_patches_refuses_bad_input_before_work(square_setup, tmp_path, capsys):
    s = square_setup
    args = ["patches", str(s["ckpt"]), "--real", str(s["data"] / "real"), "--fake", str(s["data"] / "fake"),
            "--dataset-name", "squares", "--results-dir", str(s["results"]), "--topn", "4", "--device", "cpu"]
    assert main(args) == 0
    assert "reals: 4 patches from 2 images" in capsys.readouterr().out
    assert main(args) == 2                                   # existing output, no --force
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force", "--unique"]) == 0
    assert main(args + ["--force", "--topn", "0"]) == 2
    full = tmp_path / "full"
    fileio.write_yaml(full / "config.yaml", {"model": "resnet18", "name": "full", "load_size": 128, "fine_size": 128})
    assert main(["patches", str(full)] + args[2:] + ["--force"]) == 2
    assert "needs a patch model" in capsys.readouterr().err


def test_visualize_maps_line_up_with_the_square(square_setup):
    """Without test results the images are scored first; the p(fake) map is lowest on the square."""
    from patchforensics.explain.visualize import VisualizeConfig, run_visualize

    s = square_setup
    cfg = VisualizeConfig(checkpoint=str(s["ckpt"]), real=[str(s["data"] / "real")], fake=[str(s["data"] / "fake")],
                          dataset_name="squares", results_dir=str(s["results"]), topn=2, device="cpu")
    vis = run_visualize(cfg, progress=False)
    summary = json.loads((vis / "visualize.json").read_text())
    assert summary["scores_from"] == "predict"
    # the grey "fake" still reads p(fake) ~0.36 everywhere: uncalibrated, so a wrong decision at 0.5, red border
    (fake,) = summary["groups"]["fakes/easiest"]
    assert not fake["correct"] and np.asarray(Image.open(vis / "fakes/easiest" / fake["overlay"]))[0, 0, 0] > 200
    center = next(e for e in summary["groups"]["reals/easiest"] if e["path"].endswith("center.png"))
    heat = np.load(vis / "reals/easiest" / center["heatmap"])
    assert heat.shape == s["rf"].output_size
    peak = np.unravel_index(np.argmin(heat), heat.shape)     # most real-looking
    assert tuple(int(v) for v in peak) in touching(s["rf"], SQUARES["center.png"])
    overlay = np.asarray(Image.open(vis / "reals/easiest" / center["overlay"])).astype(int)
    assert overlay[52, 57, 1] < overlay[100, 20, 1] - 60      # blue (low green) on the square only
    assert (vis / "reals/easiest/index.html").is_file() and (vis / "average_heatmaps.png").is_file()
