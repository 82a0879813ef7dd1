"""``serve``: the JSON API (FastAPI's TestClient), the real uvicorn server (binding,
multipart over the network, caps, a port in use), every wild portrait answered with
HTTP 200 and valid boxes, and, end to end, the page in headless Chromium."""
from __future__ import annotations

import base64
import dataclasses
import http.client
import io
import json
import os
import re
import socket
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import REPO, clear_pair, edge_portraits, headless_chromium, raw_images
from patchforensics.cli import main
from patchforensics.core.imageio import FORMATS_TEXT
from patchforensics.screening.faces import Patch, ScoredFace
from patchforensics.screening.serve import DetectOut, FaceOut, PatchOut, ServeConfig, create_app, make_server

REAL, FAKE = clear_pair()
WILD = raw_images("wild-portraits", 1)[0]
TPDNE = raw_images("tpdne-1024", 1)[0]
#: wild portraits whose face squares leave the photo furthest (serve answered HTTP 500 on such; issue #19)
EDGE_PORTRAITS = edge_portraits()
SHOTS_ENV = "PATCHFORENSICS_SHOTS"   # a folder to keep the page's screenshot in (default: pytest's tmp)


@pytest.fixture(scope="module")
def running():
    """The server object, built with the defaults (no host given), serving in a thread."""
    srv = make_server(ServeConfig(port=0, max_upload_mb=1))      # any free port on 127.0.0.1
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    thread.join(timeout=30)
    srv.close()


@pytest.fixture(scope="module")
def server(running):
    with httpx.Client() as c:     # wait until uvicorn answers
        for _ in range(100):
            try:
                c.get(running.url + "/api/info", timeout=5)
                break
            except httpx.TransportError:
                threading.Event().wait(0.1)
    return running.url


@pytest.fixture(scope="module")
def client(running):
    """The same service behind FastAPI's in-process TestClient (no sockets)."""
    with TestClient(create_app(running.service)) as c:
        yield c


@pytest.fixture(scope="module")
def noise_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(path)
    return path


def test_binds_loopback_by_default_and_warns_otherwise(running, server):
    assert server.startswith("http://127.0.0.1:")          # the fixture's server, built without a host
    assert running.socket.getsockname()[0] == "127.0.0.1"
    with pytest.warns(UserWarning, match="anyone who can reach this address"):
        exposed = make_server(ServeConfig(host="0.0.0.0", port=0), detector=running.service.detector)
    assert exposed.socket.getsockname()[0] == "0.0.0.0"
    exposed.socket.close()


def test_multipart_and_raw_uploads_score_every_face(client, faces):
    data = (faces / FAKE).read_bytes()
    r = client.post("/api/detect", files={"file": ("face.png", data, "image/png")})
    assert r.status_code == 200
    body = r.json()
    assert body["filename"] == "face.png" and body["input"] == "aligned" and body["overlay"] is None
    (face,) = body["faces"]
    assert face["verdict"] == "fake" and face["p_fake"] >= body["p_fake_threshold"]
    assert face["face_box"] == [0, 0, 128, 128] and 1 <= len(face["top_patches"]) <= 3
    assert all(p[k].startswith("data:image/png;base64,") for p in face["top_patches"] for k in ("crop", "centre_crop"))
    assert face["overlay"].startswith("data:image/png;base64,")
    raw = client.post("/api/detect", content=data, headers={"X-Filename": "face.png"}).json()
    assert raw["faces"][0]["p_fake"] == pytest.approx(face["p_fake"], abs=1e-6)
    assert client.get("/api/info").json()["p_fake_threshold"] == pytest.approx(body["p_fake_threshold"])


def test_an_animated_gif_is_scored_on_its_first_frame(client, faces, noise_png):
    face = Image.open(faces / FAKE).convert("RGB")
    still, animated = io.BytesIO(), io.BytesIO()
    face.save(still, "GIF")
    face.save(animated, "GIF", save_all=True, append_images=[Image.open(noise_png).resize(face.size)])
    one, first = (client.post("/api/detect", files={"file": (name, data.getvalue())}).json()
                  for name, data in (("still.gif", still), ("animated.gif", animated)))
    assert one["faces"] and first["faces"][0]["p_fake"] == pytest.approx(one["faces"][0]["p_fake"], abs=1e-6)
    assert "GIF" in client.get("/api/info").json()["formats"]


def test_photos_show_each_face_and_no_face_gets_no_verdict(client, noise_png):
    body = client.post("/api/detect", files={"file": (WILD.name, WILD.read_bytes())}).json()
    assert body["input"] == "found" and len(body["faces"]) >= 1 and body["message"] is None
    assert body["overlay"].startswith("data:image/png;base64,")       # the photo with the heatmaps on it
    for f in body["faces"]:
        t, l, b, r = f["face_box"]
        assert 0 <= t < b <= body["height"] and 0 <= l < r <= body["width"] and len(f["quad"]) == 4
    fake = client.post("/api/detect", files={"file": (TPDNE.name, TPDNE.read_bytes())}).json()
    assert fake["input"] == "found" and fake["faces"][0]["p_fake"] > body["faces"][0]["p_fake"]
    empty = client.post("/api/detect", files={"file": ("noise.png", noise_png.read_bytes())}).json()
    assert empty["faces"] == [] and empty["message"] == "no face found: no verdict" and empty["overlay"] is None
    forced = client.post("/api/detect?faces=aligned", files={"file": ("noise.png", noise_png.read_bytes())}).json()
    assert forced["input"] == "aligned" and len(forced["faces"]) == 1


def test_bad_requests_get_one_clear_error(client, faces):
    r = client.post("/api/detect", files={"file": ("report.pdf", b"%PDF-1.4 not an image")})
    assert r.status_code == 400 and "report.pdf is not an image" in r.json()["error"]
    assert f"accepted: {FORMATS_TEXT})" in r.json()["error"] and r.json()["error"].count("GIF") == 1
    png = (faces / REAL).read_bytes()
    r = client.post("/api/detect", files={"file": ("cut.png", png[:len(png) // 2])})      # truncated
    assert r.status_code == 400 and r.json()["error"].endswith(f"; upload a {FORMATS_TEXT} file")
    r = client.post("/api/detect", content=b"")
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = client.post("/api/detect", files={"photo": ("x.png", b"abc")})
    assert r.status_code == 400 and "field 'file'" in r.json()["error"]
    r = client.post("/api/detect?faces=everything", content=b"abc")
    assert r.status_code == 422 and "faces" in r.json()["error"]
    big = b"\0" * 1_500_000                                          # the cap is 1 MB
    r = client.post("/api/detect", files={"file": ("big.png", big)})
    assert r.status_code == 413 and "limit is 1 MB" in r.json()["error"]
    r = client.post("/api/detect", content=iter([big[:700_000], big[700_000:]]))   # chunked: no length
    assert r.status_code == 413 and "over the limit of 1 MB" in r.json()["error"]


def test_openapi_docs_describe_both_upload_forms(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/detect"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/octet-stream"} <= set(body)
    assert "faces" in spec["components"]["schemas"]["DetectOut"]["properties"]


def test_real_server_takes_multipart_and_refuses_oversized_before_reading(server, faces):
    with open(faces / REAL, "rb") as f:
        r = httpx.post(server + "/api/detect", files={"file": ("real.png", f, "image/png")}, timeout=60)
    assert r.status_code == 200 and r.json()["faces"][0]["verdict"] == "real"
    # the cap is checked on the declared length, before the body is read
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/api/detect")
    conn.putheader("Content-Length", str(25_000_000))
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and "limit is 1 MB" in json.loads(r.read())["error"]
    conn.close()


def test_port_in_use_is_one_line_and_exit_2(capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"port {port} on 127.0.0.1 is already in use" in err[0] and "--port" in err[0]


def test_page_in_headless_chromium(server, faces, noise_png, tmp_path):
    shots = Path(os.environ.get(SHOTS_ENV) or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    info = httpx.get(server + "/api/info", timeout=30).json()
    threshold = info["p_fake_threshold"]
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 900, "height": 1100})
        page.goto(server + "/")
        page.wait_for_function("document.getElementById('model').textContent.includes('fake when')")
        assert page.inner_text("#scope") == "Scope: " + info["scope"]

        def upload(path: Path) -> None:
            page.set_input_files("#file", str(path))
            page.wait_for_function(
                f"document.getElementById('name').textContent.startsWith('{path.name}:')", timeout=60_000)

        for rel, expected in ((REAL, "REAL"), (FAKE, "FAKE")):      # aligned 128 px faces
            upload(faces / rel)
            assert page.locator(".face").count() == 1 and not page.is_visible("#overlay")
            assert page.inner_text(".face .verdict") == expected
            p_fake = float(page.inner_text(".face .pfake"))
            assert (p_fake >= threshold) == (expected == "FAKE")
            # one picture per pick: the centre of each, where to look
            answer = httpx.post(server + "/api/detect", files={"file": (rel, (faces / rel).read_bytes())},
                                timeout=60).json()
            assert page.locator(".face .patches img").count() == len(answer["faces"][0]["top_patches"]) >= 1
            assert page.get_attribute(".face .patches img", "src") == answer["faces"][0]["top_patches"][0][
                "centre_crop"]
            # input | overlay, enlarged 2x, and the p(fake) colour bar
            assert 512 < page.eval_on_selector(".face-overlay", "img => img.naturalWidth") < 600
        assert "GIF" in page.inner_text("#formats")                    # the accepted formats, from /api/info
        grey = tmp_path / "grey-fake.png"                              # a fake in greyscale: a caveat
        Image.open(faces / FAKE).convert("L").convert("RGB").save(grey)
        upload(grey)
        assert page.inner_text(".face .verdict").endswith("*") and "not reliable" in page.inner_text("#summary")
        assert page.inner_text(".face .caveat") == "* greyscale: the detector does not see fakes reliably without colour"
        page.screenshot(path=str(shots / "serve-greyscale.png"), full_page=True)
        upload(faces / FAKE)
        assert page.locator(".face .caveat").count() == 0 and not page.inner_text(".face .verdict").endswith("*")
        upload(WILD)                                                   # a photo: faces found
        assert page.locator(".face").count() >= 1 and page.is_visible("#overlay")
        assert "found and aligned" in page.inner_text("#name")
        assert page.inner_text(".face h3") == "Face #0"
        page.screenshot(path=str(shots / "serve.png"), full_page=True)
        upload(EDGE_PORTRAITS[1])                                      # a face square leaving the photo
        assert "outside the photo" in page.inner_text(".face .notes")
        upload(noise_png)                                              # no face: no verdict
        assert page.inner_text("#summary") == "No face found: no verdict"
        assert page.locator(".face").count() == 0
        # a non-image shows the server's message instead of a verdict
        bad = tmp_path / "not-an-image.txt"
        bad.write_text("hello")
        page.set_input_files("#file", str(bad))
        page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=60_000)
        assert "not an image" in page.inner_text("#error")
        assert not page.is_visible("#result")
        # an answer that is not JSON (a proxy's error page, a crash) is shown, not a JSON parse error
        page.route("**/api/detect", lambda route: route.fulfill(status=502, body="<html>Bad Gateway</html>",
                                                                content_type="text/html"))
        page.evaluate("document.getElementById('error').textContent = ''")
        page.set_input_files("#file", str(faces / REAL))
        page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=60_000)
        assert "502" in page.inner_text("#error") and "Bad Gateway" in page.inner_text("#error")
        assert "JSON.parse" not in page.inner_text("#error")


def valid_box(box, width, height) -> bool:
    t, l, b, r = box
    return 0 <= t < b <= height and 0 <= l < r <= width


def check_photo_answer(r, data: bytes) -> None:
    """HTTP 200, and every face box, patch box and centre box a valid box inside the photo whose
    crop is that box's size."""
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    w, h = body["width"], body["height"]
    for f in body["faces"]:
        assert valid_box(f["face_box"], w, h) and 0 <= f["fill_share"] < 1
        for patch in f["top_patches"]:
            for box, crop in ((patch["box"], patch["crop"]), (patch["centre_box"], patch["centre_crop"])):
                t, l, b, rr = box
                assert valid_box(box, w, h)
                assert Image.open(io.BytesIO(base64.b64decode(crop.split(",", 1)[1]))).size == (rr - l, b - t)


def test_portraits_whose_face_leaves_the_photo_get_http_200(client):
    """Four wild portraits got HTTP 500 ('Coordinate right is less than left')."""
    for path in EDGE_PORTRAITS:
        data = path.read_bytes()
        r = client.post("/api/detect", files={"file": (path.name, data)})
        check_photo_answer(r, data)
        assert r.json()["faces"]


@pytest.mark.slow
def test_every_wild_portrait_gets_http_200_and_valid_boxes(client):
    """All 300 portraits of raw/wild-portraits through the API (one client, one detector)."""
    portraits = raw_images("wild-portraits", 10_000)
    assert len(portraits) >= 300
    no_face = []
    for path in portraits:
        data = path.read_bytes()
        r = client.post("/api/detect", content=data, headers={"X-Filename": path.name})
        check_photo_answer(r, data)
        if not r.json()["faces"]:
            no_face.append(path.name)
    assert len(no_face) <= 0.01 * len(portraits), no_face


def test_a_server_error_is_a_json_message(running, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something went wrong inside")
    with TestClient(create_app(running.service), raise_server_exceptions=False) as c:
        monkeypatch.setattr(running.service.detector, "screen", broken)
        r = c.post("/api/detect", files={"file": ("face.png", (REPO / "README.md").read_bytes())})
        assert r.status_code == 400                        # not an image: still the client's error
        r = c.post("/api/detect", files={"file": (WILD.name, WILD.read_bytes())})
    assert r.status_code == 500 and r.headers["content-type"].startswith("application/json")
    assert "something went wrong inside" in r.json()["error"]


def test_docs_work_offline_and_the_description_matches_the_answers(client, faces):
    page = client.get("/docs")
    assert page.status_code == 200 and 'href="/openapi.json"' in page.text
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)      # nothing from a CDN
    assert "/api/detect" in page.text and "/api/info" in page.text
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    body = client.post("/api/detect", files={"file": (WILD.name, WILD.read_bytes())}).json()
    face = body["faces"][0]
    # what the API returns is exactly what its description (and the pydantic models) say
    assert set(body) == set(schemas["DetectOut"]["properties"]) == set(DetectOut.model_fields)
    assert set(face) == set(schemas["FaceOut"]["properties"]) == set(FaceOut.model_fields)
    assert set(face["top_patches"][0]) == set(schemas["PatchOut"]["properties"]) == set(PatchOut.model_fields)
    assert set(client.get("/api/info").json()) == set(schemas["InfoOut"]["properties"])
    # and docs/detect.md's example answer shows those keys, no others
    doc = (REPO / "docs" / "detect.md").read_text()
    example = doc[doc.index("$ curl -s -F file=@"):]
    example = example[:example.index("$ curl", 1)]                   # the first answer: a photo's
    shown = set(re.findall(r'"(\w+)":', example))
    assert shown == set(body) | set(face) | set(face["top_patches"][0]), shown ^ (set(body) | set(face))


def test_every_answer_field_is_described_and_a_face_is_detects_scored_face(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("DetectOut", "FaceOut", "PatchOut", "InfoOut", "ErrorOut"):
        undescribed = [k for k, v in schemas[name]["properties"].items() if not v.get("description")]
        assert not undescribed, f"{name}: {undescribed}"
    # a face's fields (but its picture) and a patch's (but its crop) are those of detect's record
    assert set(FaceOut.model_fields) - {"overlay"} <= {f.name for f in dataclasses.fields(ScoredFace)}
    assert set(PatchOut.model_fields) - {"crop", "centre_crop"} <= {f.name for f in dataclasses.fields(Patch)}


def test_info_names_the_scope_and_the_false_alarm_rate(client):
    info = client.get("/api/info").json()
    assert "diffusion" in info["scope"]
    rate = info["validation_false_alarm_rate"]
    assert rate is None or 0 <= rate <= 1
