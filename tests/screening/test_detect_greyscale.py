"""Greyscale faces get a caveat (issue #28): the bundled detector calls the fakes it flags in
colour real once they are greyscale, so such a face's verdict carries ``caveat`` in every output
(the record, JSON, CSV, the table), while colour faces carry none and real colour photos rarely do."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from conftest import FACES, listed, raw_images
from patchforensics.cli import main
from patchforensics.screening.detector import open_detector
from patchforensics.screening.faces import GREYSCALE_CAVEAT, GREYSCALE_MAX_CHROMA, mean_chroma
from patchforensics.screening.results import CSV_FIELDS


@pytest.fixture(scope="module")
def detector():
    with open_detector() as d:
        yield d


def grey(image: Image.Image) -> Image.Image:
    return image.convert("L").convert("RGB")


def test_fakes_flagged_in_colour_get_the_caveat_in_greyscale(detector):
    fakes = [Image.open(FACES / p).convert("RGB") for p in listed("tpdne-stylegan2/test", 30)]
    scored = detector.analyze(fakes)
    flagged = [im for im, f in zip(fakes, scored) if f.is_fake]
    assert len(flagged) >= 10 and all(f.caveat is None for f in scored)       # colour faces: none
    in_grey = detector.analyze([grey(im) for im in flagged])
    assert all(f.caveat == GREYSCALE_CAVEAT for f in in_grey)
    # why: in greyscale the detector lets most of them pass
    assert sum(f.is_fake for f in in_grey) <= len(flagged) // 4
    # near-greyscale too: a fake with a tenth of its colour
    faded = detector.analyze([ImageEnhance.Color(im).enhance(0.1) for im in flagged])
    assert all(f.caveat == GREYSCALE_CAVEAT for f in faded)


def test_few_real_colour_faces_get_the_caveat(detector):
    reals = [Image.open(FACES / p).convert("RGB") for folder in ("ffhq/test", "celebahq/test")
             for p in listed(folder, 10_000)]
    assert len(reals) >= 200
    marked = [f for f in detector.analyze(reals) if f.caveat]
    assert len(marked) <= 0.01 * len(reals)


def test_found_faces_are_measured_in_the_photo_and_greyscale_photos_marked(detector):
    """A photo found as faces: its stored-greyscale portraits get the caveat, its most colourful
    ones do not, and the 1024-px StyleGAN2 originals are marked in greyscale only."""
    portraits = raw_images("wild-portraits", 10_000)
    arrays = {p: np.asarray(Image.open(p).convert("RGB")) for p in portraits}
    stored_grey = [p for p, a in arrays.items() if np.ptp(a, axis=2).max() == 0][:3]
    colourful = sorted(portraits, key=lambda p: -mean_chroma(Image.fromarray(arrays[p])))[:3]
    assert stored_grey
    for path, expected in [(p, GREYSCALE_CAVEAT) for p in stored_grey] + [(p, None) for p in colourful]:
        faces = detector.screen_paths([path], "find")[0].faces
        assert faces and all(f.caveat == expected for f in faces), path
    originals = [Image.open(p).convert("RGB") for p in raw_images("tpdne-1024", 2)]
    for images, expected in ((originals, None), ([grey(im) for im in originals], GREYSCALE_CAVEAT)):
        for screened in detector.screen(images, "find"):
            assert screened.faces and all(f.caveat == expected for f in screened.faces)


def test_the_chroma_rule():
    face = Image.open(FACES / listed("ffhq/test", 1)[0]).convert("RGB")
    assert mean_chroma(grey(face)) == pytest.approx(0, abs=0.5)
    assert mean_chroma(face) > GREYSCALE_MAX_CHROMA
    # measured on the photo's pixels only: a grey face framed by a colour fill stays greyscale
    framed = np.array(grey(face))
    framed[:, :20] = (200, 30, 30)
    inside = np.ones(framed.shape[:2], bool)
    inside[:, :20] = False
    assert mean_chroma(Image.fromarray(framed)) > mean_chroma(Image.fromarray(framed), inside) < 0.5


def test_every_output_carries_the_caveat(tmp_path, capsys):
    fake = Image.open(FACES / listed("tpdne-stylegan2/test", 1)[0]).convert("RGB")
    fake.save(tmp_path / "colour.png")
    grey(fake).save(tmp_path / "grey.png")
    paths = [tmp_path / "colour.png", tmp_path / "grey.png"]
    assert main(["detect", *map(str, paths), "--format", "json"]) == 0
    colour, marked = (r["faces"][0] for r in json.loads(capsys.readouterr().out)["results"])
    assert colour["caveat"] is None and marked["caveat"] == GREYSCALE_CAVEAT
    assert main(["detect", *map(str, paths), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == list(CSV_FIELDS) and CSV_FIELDS[-5] == "caveat"
    assert [r["caveat"] for r in rows] == ["", GREYSCALE_CAVEAT]
    assert main(["detect", *map(str, paths)]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_file = {name: next(line for line in lines if f"{name}.png" in line) for name in ("colour", "grey")}
    assert by_file["grey"].split()[1] in ("real*", "fake*") and by_file["grey"].endswith("* " + GREYSCALE_CAVEAT)
    assert "*" not in by_file["colour"]
    summary = next(line for line in lines if "scored in" in line)
    assert "1 face with a caveat (* greyscale): its verdict is not reliable" in summary
