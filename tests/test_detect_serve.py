"""``serve``: the JSON API and, end to end, the page in headless Chromium."""
from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.request
from pathlib import Path

import pytest

from conftest import clear_pair
from patchforensics.screening.serve import ServeConfig, make_server

REAL, FAKE = clear_pair()
CHROMIUM = Path("/usr/bin/chromium")
SHOTS_ENV = "PATCHFORENSICS_SHOTS"   # a folder to keep the page's screenshot in (default: pytest's tmp)


@pytest.fixture(scope="module")
def running():
    """The server object, built with the defaults (no host given), serving in a thread."""
    srv = make_server(ServeConfig(port=0, max_upload_mb=1))      # any free port on 127.0.0.1
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def server(running):
    host, port = running.server_address[:2]
    return f"http://{host}:{port}"


def post(url: str, data: bytes, name: str = "x.png") -> tuple[int, dict]:
    req = urllib.request.Request(url + "/api/detect", data=data, method="POST",
                                 headers={"Content-Type": "application/octet-stream", "X-Filename": name})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_binds_loopback_by_default_and_warns_otherwise(running, server):
    assert server.startswith("http://127.0.0.1:")          # the fixture's server, built without a host
    assert running.socket.getsockname()[0] == "127.0.0.1"
    detector = running.RequestHandlerClass.service.detector
    with pytest.warns(UserWarning, match="anyone who can reach this address"):
        exposed = make_server(ServeConfig(host="0.0.0.0", port=0), detector=detector)
    assert exposed.socket.getsockname()[0] == "0.0.0.0"
    exposed.server_close()


def test_api_scores_an_upload(server, faces):
    status, body = post(server, (faces / FAKE).read_bytes())
    assert status == 200
    assert body["verdict"] == "fake" and body["p_fake"] >= body["p_fake_threshold"]
    assert body["width"] == body["height"] == 128 and body["window"] == [0, 0, 128, 128]
    assert len(body["top_patches"]) == 3
    assert all(p["crop"].startswith("data:image/png;base64,") for p in body["top_patches"])
    assert body["overlay"].startswith("data:image/png;base64,")
    with urllib.request.urlopen(server + "/api/info", timeout=30) as r:
        info = json.loads(r.read())
    assert info["p_fake_threshold"] == pytest.approx(body["p_fake_threshold"])


def test_api_rejects_non_images_and_oversized_uploads(server):
    status, body = post(server, b"%PDF-1.4 not an image", "report.pdf")
    assert status == 400 and "report.pdf is not an image" in body["error"]
    status, body = post(server, b"")
    assert status == 400 and "empty" in body["error"]
    # the cap is checked on the declared length, before the body is read
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/api/detect")
    conn.putheader("Content-Length", str(25_000_000))
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and "limit is 1 MB" in json.loads(r.read())["error"]
    conn.close()


def test_page_in_headless_chromium(server, faces, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    shots = Path(os.environ.get(SHOTS_ENV) or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(server + "/api/info", timeout=30) as r:
        threshold = json.loads(r.read())["p_fake_threshold"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu",
                                          "--disable-background-networking", "--disable-component-update",
                                          "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1100})
            page.goto(server + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('fake when')")
            for rel, expected in ((REAL, "REAL"), (FAKE, "FAKE")):
                page.set_input_files("#file", str(faces / rel))
                name = Path(rel).name
                page.wait_for_function(
                    f"document.getElementById('name').textContent.startsWith('{name}:')", timeout=60_000)
                assert page.inner_text("#verdict") == expected
                p_fake = float(page.inner_text("#pfake"))
                assert (p_fake >= threshold) == (expected == "FAKE")
                assert page.locator("#patches img").count() == 3
                # input | overlay, enlarged 2x, and the p(fake) colour bar
                assert 512 < page.eval_on_selector("#overlay", "img => img.naturalWidth") < 600
            page.screenshot(path=str(shots / "serve.png"), full_page=True)
            # a non-image shows the server's message instead of a verdict
            bad = tmp_path / "not-an-image.txt"
            bad.write_text("hello")
            page.set_input_files("#file", str(bad))
            page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=60_000)
            assert "not an image" in page.inner_text("#error")
            assert not page.is_visible("#result")
        finally:
            browser.close()
