"""One engine, one score, one colour convention, across test, visualize, report, detect and serve.

The same images scored by ``test``, ``detect``, ``serve`` and ``visualize`` on the
same backend give the same p(fake) (within 1e-5); every page, table and heatmap
shows p(fake) with red = fake-looking and a colour bar; right/wrong and
fake/real are decided at the calibrated threshold.
"""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from patchforensics.core.heatmap import SCALE_TEXT, colorize
from patchforensics.data.dataset import REAL
from patchforensics.evaluation.evaluate import TestConfig as EvalConfig, read_scores_csv, run_test
from patchforensics.explain.report import ReportConfig, run_report
from patchforensics.explain.visualize import VisualizeConfig, run_visualize
from patchforensics.models.card import ModelCard
from patchforensics.screening.detect import DetectConfig, detect
from patchforensics.screening.serve import ServeConfig, make_server


def has_colorbar(image: Image.Image) -> bool:
    """True when some column in the right quarter runs from red (top) to blue (bottom)."""
    a = np.asarray(image.convert("RGB")).astype(int)
    top, bottom = a[2, 3 * a.shape[1] // 4:], a[-3, 3 * a.shape[1] // 4:]
    red_top = (top[:, 0] > 100) & (top[:, 2] < 60)
    blue_bottom = (bottom[:, 2] > 100) & (bottom[:, 0] < 60)
    return bool(np.any(red_top & blue_bottom))


def test_the_colour_map_means_red_fake_blue_real():
    red, blue = colorize(np.ones((1, 1)), (1, 1))[0, 0], colorize(np.zeros((1, 1)), (1, 1))[0, 0]
    assert red[0] > 100 and red[2] < 60 and blue[2] > 100 and blue[0] < 60
    assert "red = fake" in SCALE_TEXT and "blue = real" in SCALE_TEXT
    plain = Image.new("RGB", (64, 64), (128, 128, 128))
    assert not has_colorbar(plain)


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
                              device="cpu"), progress=False)
    server = make_server(ServeConfig(port=0, model=str(trained_checkpoint), device="cpu"))
    service = server.service
    served = {p: service.analyze_bytes(open(p, "rb").read())["faces"][0] for p in paths[::5]}
    server.close()
    return dict(paths=paths, labels=labels, test=scores["after_softmax"], test_dir=test_dir,
                vis=json.loads((vis_dir / "visualize.json").read_text()), vis_dir=vis_dir, detect=det,
                serve=served, info=service.info(), card=ModelCard.read(trained_checkpoint),
                results=tmp / "results")


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


def test_every_heatmap_shows_p_fake_with_a_colour_bar(scored):
    vis_dir = scored["vis_dir"]
    (first,) = scored["vis"]["groups"]["fakes/easiest"][:1]
    assert has_colorbar(Image.open(vis_dir / "fakes/easiest" / first["overlay"]))
    assert has_colorbar(Image.open(vis_dir / "fakes/easiest/average_heatmap.png"))
    heat = np.load(vis_dir / "fakes/easiest" / first["heatmap"])
    assert heat.mean() == pytest.approx(first["p_fake"], abs=1e-5)  # the map is p(fake), mean = after_softmax
    assert "p(fake)" in (vis_dir / "fakes/easiest/index.html").read_text()
    assert has_colorbar(Image.open(scored["detect"].images[0].heatmap))
    body = next(iter(scored["serve"].values()))
    overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay"].split(",", 1)[1])))
    assert has_colorbar(overlay)
    assert scored["info"]["heatmap"] == SCALE_TEXT


def test_tables_and_pages_read_p_fake(scored):
    metrics = json.loads((scored["test_dir"] / "metrics.json").read_text())["metrics"]["after_softmax"]
    assert metrics["ap"] != pytest.approx(metrics["ap_real_positive"])   # both kept, clearly named
    header = (scored["test_dir"] / "scores.csv").read_text().splitlines()[0]
    assert header == "path,label,p_fake_vote,p_fake_before_softmax,p_fake_after_softmax"
    page = run_report(ReportConfig(str(scored["results"]))).read_text()
    assert "Scores are p(fake)" in page and SCALE_TEXT in page and "P(real)" not in page
