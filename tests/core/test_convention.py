"""One engine, one score, one colour convention, across test, visualize, report, detect and serve.

The same images scored by ``test``, ``detect``, ``serve`` and ``visualize`` on the
same backend give the same p(fake) (within 1e-5); every page, table and heatmap
shows p(fake) on one diverging scale centred on the decision threshold (blue = real
side, white = the threshold, red = fake side) with a colour bar marking the threshold;
right/wrong and fake/real are decided at the calibrated threshold.
"""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from patchforensics.core.heatmap import SCALE_TEXT, colorize, scale_text, with_colorbar
from patchforensics.data.dataset import REAL
from patchforensics.evaluation.evaluate import TestConfig as EvalConfig, read_scores_csv, run_test
from patchforensics.explain.report import ReportConfig, run_report
from patchforensics.explain.visualize import VisualizeConfig, run_visualize
from patchforensics.models.card import ModelCard
from patchforensics.screening.detect import DetectConfig, detect
from patchforensics.screening.serve import ServeConfig, make_server


def colour(p: float, threshold: float) -> np.ndarray:
    return colorize(np.full((1, 1), p), (1, 1), threshold)[0, 0].astype(int)


def has_colorbar(image: Image.Image, threshold: float) -> bool:
    """True when some column in the right half runs from the colour of p(fake) 1 (top) to that
    of 0 (bottom), turning from the red side to the blue side where p(fake) = ``threshold`` on a
    scale linear in p(fake) (within 3 rows)."""
    a = np.asarray(image.convert("RGB")).astype(int)
    h, x0 = a.shape[0], a.shape[1] // 2
    top_ok = np.abs(a[1, x0:] - colour(1.0, threshold)).max(axis=1) <= 12
    bottom_ok = np.abs(a[-2, x0:] - colour(0.0, threshold)).max(axis=1) <= 12
    for x in np.flatnonzero(top_ok & bottom_ok) + x0:
        red_side = a[:, x, 0] > a[:, x, 2]
        turn = np.argmin(red_side)                       # the first row on the blue side
        if red_side[:turn].all() and not red_side[turn + 1:].any() and abs(turn - (1 - threshold) * (h - 1)) <= 3:
            return True
    return False


@pytest.mark.parametrize("threshold", [0.5, 0.5448, 0.2, 0.9])
def test_the_scale_is_blue_real_white_at_the_threshold_red_fake(threshold):
    red, blue, white = colour(1.0, threshold), colour(0.0, threshold), colour(threshold, threshold)
    assert red[0] > 90 and red[2] < 60 and blue[2] > 90 and blue[0] < 60
    assert white.min() > 235                                           # the threshold itself is white
    below, above = colour(threshold - 0.02, threshold), colour(threshold + 0.02, threshold)
    assert below[2] > below[0] and above[0] > above[2]                # called real: blue; called fake: red
    assert has_colorbar(with_colorbar(Image.new("RGB", (90, 300), (128, 128, 128)), threshold), threshold)
    assert not has_colorbar(with_colorbar(Image.new("RGB", (90, 300), (128, 128, 128)), 0.5), 0.2)
    text = scale_text(threshold, "fpr3pct")
    assert "blue = real side" in text and "red = fake side" in text and f"{threshold:.3f} (fpr3pct)" in text
    assert "blue = real side" in SCALE_TEXT and "0.5 for a checkpoint without stored thresholds" in SCALE_TEXT
    assert not has_colorbar(Image.new("RGB", (64, 64), (128, 128, 128)), threshold)


def test_the_old_rainbow_middle_is_gone():
    """The issue's case: a face called real at p(fake) 0.52 under a 0.5448 threshold is drawn blue."""
    c = colour(0.52, 0.5448)
    assert c[2] > c[0]


@pytest.fixture(scope="module")
def scored(tmp_path_factory, trained_checkpoint, small_face_dirs):
    """The checkpoint's test images scored by test, visualize (independently), detect and serve."""
    tmp = tmp_path_factory.mktemp("convention")
    real, fake = str(small_face_dirs["real"]), str(small_face_dirs["fake"])
    common = dict(checkpoint=str(trained_checkpoint), real=[real], fake=[fake], dataset_name="small",
                  device="cpu")
    _, test_dir = run_test(EvalConfig(**common, results_dir=str(tmp / "results")), progress=False)
    paths, labels, scores = read_scores_csv(test_dir / "scores.csv")
    vis_dir = run_visualize(VisualizeConfig(**common, results_dir=str(tmp / "vis_only"), topn=100),
                            progress=False)            # no scores.csv there: it scores the images itself
    det = detect(DetectConfig(paths=paths, model=str(trained_checkpoint), heatmaps=str(tmp / "heat"),
                              report=str(tmp / "screening.html"), device="cpu"), progress=False)
    server = make_server(ServeConfig(port=0, model=str(trained_checkpoint), device="cpu"))
    service = server.service
    served = {p: service.analyze_bytes(open(p, "rb").read())["faces"][0] for p in paths[::5]}
    server.close()
    return dict(paths=paths, labels=labels, test=scores["after_softmax"], test_dir=test_dir,
                vis=json.loads((vis_dir / "visualize.json").read_text()), vis_dir=vis_dir, detect=det,
                serve=served, info=service.info(), card=ModelCard.read(trained_checkpoint),
                results=tmp / "results", report=(tmp / "screening.html").read_text())


def test_every_command_gives_the_same_p_fake(scored):
    index = {p: i for i, p in enumerate(scored["paths"])}
    test = scored["test"]
    assert scored["vis"]["backend"] == scored["info"]["backend"]          # one backend for all
    vis = {e["path"]: e["p_fake"] for entries in scored["vis"]["groups"].values() for e in entries}
    assert scored["vis"]["scores_from"] == "predict" and len(vis) == len(test)
    det = {im.path: face.p_fake for im, face in scored["detect"].faces}
    assert set(det) == set(vis) == set(index)
    for path, i in index.items():
        assert vis[path] == pytest.approx(test[i], abs=1e-5)       # scores.csv keeps 6 decimals
        assert det[path] == pytest.approx(vis[path], abs=1e-5)
    for path, body in scored["serve"].items():
        assert body["p_fake"] == pytest.approx(det[path], abs=1e-5)
    # p(fake) really is the fake score: the trained model ranks fakes above reals
    labels = scored["labels"]
    assert np.mean(test[labels != REAL]) > np.mean(test[labels == REAL])


def test_decisions_use_the_calibrated_threshold(scored):
    card = scored["card"]
    name = card.default_threshold()
    assert name == "fpr3pct"                                          # the screening default of a new run
    cut = card.p_fake_threshold(name)
    assert cut != pytest.approx(0.5, abs=1e-3)                       # so 0.5 would decide differently
    assert scored["vis"]["threshold"] == {"name": name, "p_fake": pytest.approx(cut)}
    assert scored["detect"].p_fake_threshold == pytest.approx(cut) and scored["info"]["p_fake_threshold"] == \
        pytest.approx(cut)
    for _, d in scored["detect"].faces:
        assert d.verdict == ("fake" if d.p_fake >= cut else "real")
    for body in scored["serve"].values():
        assert body["verdict"] == ("fake" if body["p_fake"] >= cut else "real")
    for group, entries in scored["vis"]["groups"].items():
        is_real = group.startswith("reals")
        for e in entries:
            assert e["correct"] == ((e["p_fake"] >= cut) != is_real), e


def from_data_url(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_every_heatmap_is_centred_on_the_threshold_with_its_colour_bar(scored):
    """visualize's overlays and averages, detect's heatmaps and report, serve's pictures: one scale,
    white at the decision threshold (not 0.5), said in words beside them."""
    cut = scored["card"].p_fake_threshold(scored["card"].default_threshold())
    vis_dir = scored["vis_dir"]
    (first,) = scored["vis"]["groups"]["fakes/easiest"][:1]
    assert has_colorbar(Image.open(vis_dir / "fakes/easiest" / first["overlay"]), cut)
    assert has_colorbar(Image.open(vis_dir / "fakes/easiest/average_heatmap.png"), cut)
    if abs(cut - 0.5) > 0.05:                                        # the bar tells the two apart
        assert not has_colorbar(Image.open(vis_dir / "fakes/easiest/average_heatmap.png"), 0.5)
    heat = np.load(vis_dir / "fakes/easiest" / first["heatmap"])
    assert heat.mean() == pytest.approx(first["p_fake"], abs=1e-5)  # the map is p(fake), mean = after_softmax
    words = scale_text(cut, scored["card"].default_threshold())
    assert words in (vis_dir / "fakes/easiest/index.html").read_text() and scored["vis"]["heatmap"] == words
    assert has_colorbar(Image.open(scored["detect"].images[0].heatmap), cut)
    body = next(iter(scored["serve"].values()))
    assert has_colorbar(from_data_url(body["overlay"]), cut)
    assert scored["info"]["heatmap"] == words
    assert words in scored["report"]
    first_card = scored["report"].split('<img src="', 2)[1].split('"', 1)[0]
    assert has_colorbar(from_data_url(first_card), cut)


def test_tables_and_pages_read_p_fake(scored):
    metrics = json.loads((scored["test_dir"] / "metrics.json").read_text())["metrics"]["after_softmax"]
    assert metrics["ap"] != pytest.approx(metrics["ap_real_positive"])   # both kept, clearly named
    header = (scored["test_dir"] / "scores.csv").read_text().splitlines()[0]
    assert header == "path,label,p_fake_vote,p_fake_before_softmax,p_fake_after_softmax"
    page = run_report(ReportConfig(str(scored["results"]))).read_text()
    assert "Scores are p(fake)" in page and SCALE_TEXT in page and "P(real)" not in page
