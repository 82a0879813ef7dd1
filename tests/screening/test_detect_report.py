"""``detect --report OUT.html``: one offline page of every face (thumbnail and heatmap,
sorted by p(fake), verdict), the files without a face and the unreadable ones, the model,
its scope note and its threshold's false-alarm rate on validation; checked in headless
Chromium like the other pages."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import clear_pair, headless_chromium, raw_images
from patchforensics.cli import main
from patchforensics.evaluation.calibrate import CALIBRATION_FILE, validation_false_alarm_rate
from patchforensics.models.card import ModelCard
from patchforensics.models.checkpoint import BUNDLED_DIR
from patchforensics.screening.detect import DetectConfig, detect

REAL, FAKE = clear_pair()
WILD = raw_images("wild-portraits", 2)
SHOTS_ENV = "PATCHFORENSICS_SHOTS"   # a folder to keep the page's screenshot in (default: pytest's tmp)


@pytest.fixture(scope="module")
def screened(tmp_path_factory, faces):
    """One ``detect --report`` run over two aligned faces, two photos, a noise picture and a
    broken file; its JSON output and the page."""
    root = tmp_path_factory.mktemp("report")
    noise = root / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(noise)
    broken = root / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    grey = root / "grey-fake.png"                     # the fake in greyscale: a face with a caveat
    Image.open(faces / FAKE).convert("L").convert("RGB").save(grey)
    page = root / "out" / "screening.html"
    inputs = [faces / REAL, faces / FAKE, grey, *WILD, noise, broken]
    return {"inputs": inputs, "noise": noise, "broken": broken, "page": page, "root": root}


def run_detect(capsys, *args) -> tuple[int, dict, str]:
    rc = main(["detect", *map(str, args), "--format", "json"])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if out.out.strip() else {}), out.err


def test_report_lists_every_face_sorted_and_every_file_without_one(screened, capsys):
    rc, out, _ = run_detect(capsys, *screened["inputs"], "--report", screened["page"])
    assert rc == 0 and screened["page"].is_file()
    text = screened["page"].read_text()
    assert "http://" not in text and "https://" not in text          # offline: nothing fetched
    assert out["scope"] and out["scope"] in text and out["model"] in text
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(screened["page"].resolve().as_uri(), wait_until="load")
        faces = [(r, f) for r in out["results"] for f in r["faces"]]
        assert page.locator("#faces .face").count() == len(faces) >= 4
        shown = [float(v) for v in page.eval_on_selector_all("#faces .face", "cs => cs.map(c => c.dataset.pFake)")]
        assert shown == sorted(shown, reverse=True)                  # most fake-looking first
        assert sorted(shown) == pytest.approx(sorted(f["p_fake"] for _, f in faces), abs=1e-6)
        verdicts = page.eval_on_selector_all("#faces .face .verdict", "vs => vs.map(v => v.textContent)")
        assert [v.rstrip("*") == "fake" for v in verdicts] == [p >= out["p_fake_threshold"] for p in shown]
        # the greyscale face's card says so, and only it
        caveats = [f["caveat"] for _, f in faces if f["caveat"]]
        assert caveats and page.locator("#faces .face .caveat").count() == len(caveats)
        assert sum(v.endswith("*") for v in verdicts) == len(caveats)
        assert page.inner_text("#faces .face .caveat") == "* " + caveats[0]
        assert "not reliable" in page.inner_text("#summary")
        widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == len(faces) and min(widths) > 0          # every face's picture is there
        assert page.inner_text("#no-face") == str(screened["noise"])
        skipped = page.inner_text("#skipped")
        assert skipped.startswith(str(screened["broken"]) + ": ") and len(skipped) > len(str(screened["broken"])) + 5
        assert page.inner_text("#scope") == out["scope"]
        rate = out["validation_false_alarm_rate"]
        assert ("unknown" if rate is None else f"{rate:.1%}") in page.inner_text("#false-alarms")
        assert f"threshold '{out['threshold']}'" in page.inner_text("#model")
        for width in (1100, 420):                                     # never wider than the window
            page.set_viewport_size({"width": width, "height": 900})
            assert page.evaluate("document.documentElement.scrollWidth") <= width
        shots = Path(os.environ.get(SHOTS_ENV) or screened["root"])
        shots.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1100, "height": 900})
        page.screenshot(path=str(shots / "detect-report.png"), full_page=True)
        assert all(url.startswith(("file:", "data:")) for url in requests), requests
        assert errors == []


def test_report_is_not_overwritten_without_force(tmp_path, faces, capsys):
    page = tmp_path / "report.html"
    page.write_text("an older report")
    assert main(["detect", str(faces / REAL), "--report", str(page)]) == 2
    assert "--force" in capsys.readouterr().err and page.read_text() == "an older report"
    assert main(["detect", str(faces / REAL), "--report", str(page), "--force"]) == 0
    assert page.read_text().startswith("<!doctype html>")
    assert main(["detect", str(faces / REAL), "--report", str(tmp_path / "report.txt")]) == 2
    assert "report: give a file name ending in .html" in capsys.readouterr().err


def test_false_alarm_rate_comes_from_the_calibration_report(faces, tmp_path):
    result = detect(DetectConfig(paths=[str(faces / REAL)]), progress=False)
    report = json.loads((BUNDLED_DIR / CALIBRATION_FILE).read_text())
    assert result.false_alarm_rate == report["thresholds"][result.threshold_name]["real_error"]
    assert detect(DetectConfig(paths=[str(faces / REAL)], threshold="0.5"), progress=False).false_alarm_rate is None
    # a report of another value of the threshold (the card was recalibrated since) is not used
    copy = tmp_path / "ckpt"
    copy.mkdir()
    for name in ("config.yaml", CALIBRATION_FILE):
        shutil.copy(BUNDLED_DIR / name, copy / name)
    card = ModelCard.read(copy)
    name = card.default_threshold()
    assert validation_false_alarm_rate(copy, card, name) == report["thresholds"][name]["real_error"]
    report["thresholds"][name]["p_real"] += 0.01
    (copy / CALIBRATION_FILE).write_text(json.dumps(report))
    assert validation_false_alarm_rate(copy, card, name) is None
    (copy / CALIBRATION_FILE).unlink()
    assert validation_false_alarm_rate(copy, card, name) is None
