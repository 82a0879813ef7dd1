"""The whole explain chain on real faces (``explain_checkpoint``: test, visualize, patches,
regions, report), its files, and the pages in a real headless Chromium."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import headless_chromium
from patchforensics.cli import main
from patchforensics.data.dataset import REAL
from patchforensics.evaluation.evaluate import read_scores_csv
from patchforensics.explain.chain import explain_checkpoint
from patchforensics.explain.visualize import rank_images

TOPN = 3


@pytest.fixture(scope="module")
def explained(tmp_path_factory, trained_checkpoint, small_face_dirs):
    results = tmp_path_factory.mktemp("explain") / "results"
    report = explain_checkpoint(trained_checkpoint, small_face_dirs["real"], small_face_dirs["fake"], "small",
                                results_dir=results, topn_images=TOPN, topn_patches=20, progress=False,
                                device="cpu")
    dataset_dir = next(results.glob("*/test/epoch_bestval/small"))
    return {"report": report, "results": results, "dir": dataset_dir}


def test_visualize_outputs(explained):
    vis = explained["dir"] / "vis"
    summary = json.loads((vis / "visualize.json").read_text())
    assert summary["scores_from"] == "scores.csv"           # reused test's scores for the same weights
    paths, labels, scores = read_scores_csv(explained["dir"] / "scores.csv")
    p_fake = scores[summary["average_mode"]]
    cut = summary["threshold"]["p_fake"]
    assert summary["threshold"]["name"] == "fpr3pct"        # train() calibrated the checkpoint: its default
    grid = np.load(explained["dir"] / "patches" / "boxes.npy").shape[:2]      # the model's patch grid
    for cls, label in (("reals", REAL), ("fakes", 0)):
        expected = rank_images(labels, p_fake, label, TOPN)
        for group in ("easiest", "hardest"):
            entries = summary["groups"][f"{cls}/{group}"]
            assert [e["path"] for e in entries] == [paths[i] for i in expected[group]]
            for e in entries:
                assert abs(e["p_fake"] - p_fake[paths.index(e["path"])]) < 1e-5
                assert e["correct"] == ((e["p_fake"] >= cut) == (label != REAL))      # at the calibrated cut
                heat = np.load(vis / cls / group / e["heatmap"])
                assert heat.shape == grid and 0 <= heat.min() and heat.max() <= 1
                overlay = np.asarray(Image.open(vis / cls / group / e["overlay"]))
                red, green = overlay[0, 0, 0], overlay[0, 0, 1]
                assert (green > red) == e["correct"]                                     # border colour
            assert (vis / cls / group / "average_heatmap.png").is_file()
    # easiest reals are the lowest p(fake) reals
    easiest = [e["p_fake"] for e in summary["groups"]["reals/easiest"]]
    assert easiest == sorted(easiest)


def test_report_and_galleries_in_headless_chromium(explained):
    report = explained["report"]
    text = report.read_text()
    assert "http://" not in text and "https://" not in text    # nothing fetched from the network
    with headless_chromium() as browser:
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"failed {r.url}"))

        page.goto(report.resolve().as_uri(), wait_until="load")
        assert page.locator("table#metrics tr").count() >= 3
        assert "small" in page.locator("table#metrics").inner_text()
        widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) >= 8 and min(widths) > 0           # PR curve, heatmaps, grids, histogram ...
        assert page.locator("text=Face regions (mediapipe)").count() == 1

        gallery = page.locator("a", has_text="reals easiest").first
        gallery.click()
        page.wait_for_load_state("load")
        assert page.url.endswith("vis/reals/easiest/index.html")
        widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == TOPN + 1 and min(widths) > 0    # thumbnails + the group average
        page.locator("a.pf-zoom").first.click()
        box = page.locator(".pf-lightbox")
        assert box.is_visible() and box.get_attribute("data-index") == "0"
        page.keyboard.press("ArrowRight")
        assert box.get_attribute("data-index") == "1"
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("ArrowLeft")
        assert box.get_attribute("data-index") == str(TOPN - 1)
        assert box.locator("img").count() == 2               # input and overlay side by side
        page.wait_for_function("Array.from(document.querySelectorAll('.pf-lightbox img'))"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        page.keyboard.press("Escape")
        assert not box.is_visible()
        assert errors == []


def test_report_cli(explained, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(explained["results"]), "-o", str(out)]) == 0
    assert out.is_file() and "report: file://" in capsys.readouterr().out
    # links to the galleries are relative to the page, wherever it is written
    links = re.findall(r'href="([^"#]+)"', out.read_text())
    assert len(links) == 4 and all(not Path(link).is_absolute() for link in links)
    assert all((out.parent / link).resolve().is_file() for link in links)
    assert main(["report", str(explained["results"]), "-o", str(out)]) == 2         # exists, no --force
    assert main(["report", str(tmp_path / "missing")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "run 'patchforensics test'" in capsys.readouterr().err


def test_visualize_cli_refuses_existing_output(explained, trained_checkpoint, small_face_dirs, capsys):
    args = ["visualize", str(trained_checkpoint), "--real", str(small_face_dirs["real"]), "--fake",
            str(small_face_dirs["fake"]), "--dataset-name", "small", "--results-dir", str(explained["results"]),
            "--device", "cpu"]
    assert main(args + ["--topn", "2"]) == 2
    assert "--force" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args + ["--average-mode", "median"])


def test_a_table_wider_than_the_page_scrolls_in_its_own_box():
    """Many models x metrics: the page keeps the window's width, the table scrolls inside it."""
    from patchforensics.explain.page import html_page

    head = "".join(f"<th>metric {i}</th>" for i in range(40))
    row = "".join(f"<td>{i / 7:.4f}</td>" for i in range(40))
    page_html = html_page("wide", f'<table id="metrics"><tr>{head}</tr><tr>{row}</tr></table>', with_lightbox=False)
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 800, "height": 600})
        page.set_content(page_html)
        assert page.evaluate("document.documentElement.scrollWidth") <= 800
        table = page.locator("#metrics")
        assert table.evaluate("t => t.scrollWidth > t.clientWidth")     # the rest is one scroll away
