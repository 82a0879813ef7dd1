"""``serve``: a local web page for checking one image at a time.

Standard library only (``http.server``). ``GET /`` is a page where a person
drops or picks an image and sees p(fake), the decision, the heatmap overlay and
the most suspicious patches; it talks to a JSON API:

- ``POST /api/detect`` with the image file as the request body
  (``curl --data-binary @face.png http://127.0.0.1:8000/api/detect``) returns
  ``{p_fake, verdict, threshold, p_fake_threshold, model, width, height,
  window, top_patches: [{box, p_fake, crop}], overlay}``; ``box`` and ``window``
  are ``[top, left, bottom, right]`` in pixels of the uploaded image, ``crop``
  and ``overlay`` PNG data URLs. Errors come back as ``{"error": message}`` with
  status 400 (not an image), 411 (no length) or 413 (over the size cap);
- ``GET /api/info``: the model, its thresholds and the upload cap.

The server binds 127.0.0.1 unless told otherwise: uploads are not
authenticated, so exposing it beyond the machine is the operator's decision.
"""
from __future__ import annotations

import base64
import io
import ipaddress
import json
import tempfile
import threading
import warnings
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from PIL import Image

from ..core.config import require
from ..core.heatmap import SCALE_TEXT
from ..scoring.fastpath import BACKENDS
from .detect import DEFAULT_THRESHOLD, Detector, open_detector, render_overlay
from ..core.imageio import ImageLoadError, load_rgb

MAX_UPLOAD_MB = 20


@dataclass
class ServeConfig:
    """Options of ``patchforensics serve``."""

    host: str = "127.0.0.1"
    port: int = 8000                   # 0 = any free port
    model: str | None = None           # checkpoint folder or .onnx; None = bundled detector
    which_epoch: str | None = None
    backend: str = "auto"
    threshold: str = DEFAULT_THRESHOLD
    max_upload_mb: float = MAX_UPLOAD_MB
    top_k: int = 3
    device: str = "auto"

    def validate(self) -> None:
        require(0 <= self.port <= 65535, "port", "must be between 0 and 65535 (0 = any free port)")
        require(self.max_upload_mb > 0, "max_upload_mb", "must be > 0")
        require(self.top_k > 0, "top_k", "must be > 0")
        require(self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}")


def png_data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class DetectService:
    """Decodes uploads and scores them with one :class:`Detector` (one request at a time)."""

    def __init__(self, detector: Detector, max_upload_bytes: int, top_k: int = 3):
        self.detector = detector
        self.max_upload_bytes = max_upload_bytes
        self.top_k = top_k
        self._lock = threading.Lock()     # the CPU is the bottleneck; interleaving buys nothing

    def info(self) -> dict:
        card = self.detector.card
        return {"model": card.name, "architecture": card.architecture, "backend": self.detector.engine.backend,
                "threshold": self.detector.threshold_name, "p_fake_threshold": self.detector.p_fake_threshold,
                "thresholds_p_fake": {k: card.p_fake_threshold(k) for k in card.thresholds},
                "heatmap": SCALE_TEXT, "max_upload_bytes": self.max_upload_bytes}

    def analyze_bytes(self, data: bytes, filename: str = "upload") -> dict:
        """Score one uploaded file; raises :class:`ImageLoadError` for a non-image."""
        # decode through load_rgb (EXIF, odd modes, size guard) via a private temp file
        with tempfile.TemporaryDirectory(prefix="patchforensics-upload-") as tmp:
            path = Path(tmp) / "upload"
            path.write_bytes(data)
            try:
                image = load_rgb(path)
            except ImageLoadError as e:
                raise ImageLoadError(filename, e.reason) from None
        with self._lock:
            a = self.detector.analyze([image], self.top_k)[0]
        verdict = "fake" if a.is_fake else "real"
        w = a.window
        return {
            "p_fake": a.p_fake, "verdict": verdict, "threshold": self.detector.threshold_name,
            "p_fake_threshold": self.detector.p_fake_threshold, "model": self.detector.card.name,
            "width": image.width, "height": image.height,
            "window": list(w.to_original((0, 0, w.side, w.side))),
            "top_patches": [{"box": list(p.box), "p_fake": p.p_fake,
                             "crop": png_data_url(image.crop((p.box[1], p.box[0], p.box[3], p.box[2])))}
                            for p in a.top_patches],
            "overlay": png_data_url(render_overlay(a)),
        }


class _Handler(BaseHTTPRequestHandler):
    service: DetectService          # set on the subclass made by make_server
    server_version = "patchforensics"

    def log_message(self, fmt, *args) -> None:   # keep the terminal for errors only
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), "application/json")

    def do_GET(self) -> None:
        if self.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, PAGE.encode("utf-8"), "text/html; charset=utf-8")
        elif self.path == "/api/info":
            self._json(HTTPStatus.OK, self.service.info())
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page {self.path}; try / or POST /api/detect"})

    def do_POST(self) -> None:
        if self.path != "/api/detect":
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path}; POST images to /api/detect"})
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._json(HTTPStatus.LENGTH_REQUIRED, {"error": "send the image as the request body with a Content-Length"})
            return
        n, cap = int(length), self.service.max_upload_bytes
        if n > cap:
            self.close_connection = True      # do not read a body we refuse
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       {"error": f"upload is {n / 1e6:.1f} MB; the limit is {cap / 1e6:.0f} MB"})
            return
        if n == 0:
            self._json(HTTPStatus.BAD_REQUEST, {"error": "empty upload: choose an image file"})
            return
        data = self.rfile.read(n)
        name = unquote(self.headers.get("X-Filename", "upload"))[:200]
        try:
            self._json(HTTPStatus.OK, self.service.analyze_bytes(data, name))
        except ImageLoadError as e:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"{name} is not an image we can read ({e.reason}); "
                                                         "upload a PNG, JPEG, WebP, BMP or TIFF file"})


def make_server(cfg: ServeConfig, detector: Detector | None = None) -> ThreadingHTTPServer:
    """A ready (not yet serving) HTTP server; ``server.server_address`` has the bound port."""
    cfg.validate()
    if detector is None:
        detector = open_detector(cfg.model, cfg.which_epoch, cfg.backend, cfg.device, cfg.threshold)
    if not _is_loopback(cfg.host):
        warnings.warn(f"serving on {cfg.host}: anyone who can reach this address can upload images", stacklevel=2)
    service = DetectService(detector, int(cfg.max_upload_mb * 1e6), cfg.top_k)
    handler = type("Handler", (_Handler,), {"service": service})
    server = ThreadingHTTPServer((cfg.host, cfg.port), handler)
    server.daemon_threads = True
    return server


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>patchforensics — is this face generated?</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;max-width:820px;margin:2em auto;padding:0 1em;color:#222}
 h1{font-size:1.4em} #drop{border:2px dashed #888;border-radius:10px;padding:2em;text-align:center;cursor:pointer}
 #drop.over{background:#eef5ff;border-color:#3a7bd5} #error{color:#b00020;margin:1em 0;font-weight:600}
 #result{display:none;margin-top:1.5em} .verdict{font-size:2em;font-weight:700}
 .fake{color:#c62828} .real{color:#2e7d32} #overlay{max-width:100%;image-rendering:pixelated;border:1px solid #ccc}
 #patches{display:flex;gap:1em;flex-wrap:wrap} #patches figure{margin:0;text-align:center;font-size:.85em}
 #patches img{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;border:1px solid #ccc}
 .muted{color:#666;font-size:.9em}
</style></head><body>
<h1>Is this face generated?</h1>
<p class="muted" id="model">loading model…</p>
<div id="drop">Drop an image here or <label><u>choose a file</u>
 <input id="file" type="file" accept="image/*" hidden></label></div>
<div id="error" role="alert"></div>
<div id="result" aria-live="polite">
 <div><span class="verdict" id="verdict"></span> &nbsp; p(fake) = <b id="pfake"></b>
  <span class="muted" id="thr"></span></div>
 <p class="muted" id="name"></p>
 <h3>Heatmap</h3>
 <p class="muted">Left: what the model examined; right: per-patch p(fake) (red = fake-looking, blue = real-looking),
 most suspicious patch outlined in white; the colour bar at the right gives the scale.</p>
 <img id="overlay" alt="heatmap overlay">
 <h3>Most suspicious patches</h3><div id="patches"></div>
</div>
<script>
const $ = id => document.getElementById(id);
fetch('/api/info').then(r => r.json()).then(i => {
  $('model').textContent = `model ${i.model} (${i.architecture}); fake when p(fake) ≥ ${i.p_fake_threshold.toFixed(3)} (${i.threshold}); uploads up to ${Math.round(i.max_upload_bytes/1e6)} MB`;
});
async function send(file) {
  $('error').textContent = ''; $('result').style.display = 'none';
  $('verdict').textContent = ''; $('name').textContent = 'analysing ' + file.name + '…';
  let r, body;
  try {
    r = await fetch('/api/detect', {method: 'POST', body: file,
                                    headers: {'Content-Type': 'application/octet-stream', 'X-Filename': encodeURIComponent(file.name)}});
    body = await r.json();
  } catch (e) { $('error').textContent = 'request failed: ' + e; return; }
  if (!r.ok) { $('error').textContent = body.error || ('error ' + r.status); $('name').textContent = ''; return; }
  $('verdict').textContent = body.verdict.toUpperCase();
  $('verdict').className = 'verdict ' + body.verdict;
  $('pfake').textContent = body.p_fake.toFixed(3);
  $('thr').textContent = `(threshold ${body.p_fake_threshold.toFixed(3)}, ${body.threshold})`;
  $('name').textContent = `${file.name}: ${body.width}×${body.height} px; examined [top,left,bottom,right] = [${body.window}]`;
  $('overlay').src = body.overlay;
  const box = $('patches'); box.replaceChildren();
  body.top_patches.forEach((p, k) => {
    const f = document.createElement('figure'), im = document.createElement('img'), c = document.createElement('figcaption');
    im.src = p.crop; im.alt = 'patch ' + (k + 1);
    c.textContent = `#${k + 1} p(fake) ${p.p_fake.toFixed(2)} at [${p.box}]`;
    f.append(im, c); box.append(f);
  });
  $('result').style.display = 'block';
}
const drop = $('drop');
drop.addEventListener('dragover', e => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', e => { e.preventDefault(); drop.classList.remove('over');
  if (e.dataTransfer.files.length) send(e.dataTransfer.files[0]); });
$('file').addEventListener('change', e => { if (e.target.files.length) send(e.target.files[0]); });
</script></body></html>
"""
