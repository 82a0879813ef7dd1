"""``serve``: a local web page and JSON API for checking images, on FastAPI + uvicorn.

``GET /`` is a page where a person drops or picks an image and sees every face
found in it with its verdict, p(fake), heatmap and most suspicious patches, and
the model's scope note; it talks to the JSON API (described at ``/openapi.json``;
``/docs`` lists the operations on a page that works offline):

- ``POST /api/detect`` takes the image either as a standard multipart upload
  (form field ``file``: ``curl -F file=@photo.jpg``, an HTML form) or as the raw
  request body (``curl --data-binary @photo.jpg``, name in ``X-Filename``), and
  ``?faces=auto|find|aligned`` (default: the server's ``--faces``). It returns
  :class:`DetectOut`: one entry per face found (largest first; none when the
  image holds no face: no verdict, ``message`` says so). Boxes are ``[top, left,
  bottom, right]`` in pixels of the uploaded image, always inside it; crops and
  overlays are PNG data URLs. Errors come back as ``{"error": message}`` with
  status 400 (not an image, empty, no ``file`` field), 413 (over the size cap:
  refused from the declared length before the body is read, or as soon as a body
  without one passes the cap), 422 (a bad query value) or 500 (a bug: still JSON,
  which the page shows);
- ``GET /api/info``: the model, its scope note, its thresholds and the decision
  threshold's false-alarm rate on validation, the face mode and the upload cap.

Scoring holds a lock: one image at a time (the CPU is the bottleneck, and the
face finder's mediapipe graphs are not thread-safe). The server binds
127.0.0.1 unless told otherwise: uploads are not authenticated, so exposing it
beyond the machine is the operator's decision.
"""
from __future__ import annotations

import errno
import html
import ipaddress
import socket
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..core.config import ConfigError, require
from ..core.heatmap import SCALE_TEXT
from ..core.imageio import ImageLoadError, load_rgb
from ..data.align import STYLES
from ..scoring.fastpath import BACKENDS
from .detect import (DEFAULT_ALIGN_STYLE, DEFAULT_THRESHOLD, FACE_MODES, Detector, face_caption, face_results,
                     open_detector, render_on_original, render_overlay)
from .report import png_data_url

MAX_UPLOAD_MB = 20
FaceMode = Literal["auto", "find", "aligned"]


@dataclass
class ServeConfig:
    """Options of ``patchforensics serve``."""

    host: str = "127.0.0.1"
    port: int = 8000                   # 0 = any free port
    model: str | None = None           # checkpoint folder or .onnx; None = bundled detector
    which_epoch: str | None = None
    backend: str = "auto"
    threshold: str = DEFAULT_THRESHOLD
    faces: str = "auto"                # auto | find | aligned, the default of each request
    align_style: str = DEFAULT_ALIGN_STYLE
    max_upload_mb: float = MAX_UPLOAD_MB
    top_k: int = 3
    device: str = "auto"

    def validate(self) -> None:
        require(0 <= self.port <= 65535, "port", "must be between 0 and 65535 (0 = any free port)")
        require(self.max_upload_mb > 0, "max_upload_mb", "must be > 0")
        require(self.top_k > 0, "top_k", "must be > 0")
        require(self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}")
        require(self.faces in FACE_MODES, "faces", f"must be one of {', '.join(FACE_MODES)}")
        require(self.align_style in STYLES, "align_style", f"must be one of {', '.join(STYLES)}")


# ------------------------------------------------------------- API schema
class PatchOut(BaseModel):
    box: list[int]                       # [top, left, bottom, right], uploaded-image px
    p_fake: float
    crop: str                            # PNG data URL of that box


class FaceOut(BaseModel):
    index: int                           # 0 = largest face
    p_fake: float
    verdict: Literal["fake", "real"]
    face_box: list[int]                  # [top, left, bottom, right], uploaded-image px
    quad: list[list[float]] | None       # aligned square's corners (x, y), found faces only
    fill_share: float                    # share of the examined square outside the photo (alignment fill)
    upscale: float                       # model-input px per photo px: above 1, a small face enlarged
    top_patches: list[PatchOut]          # most suspicious first (none mostly in the fill)
    overlay: str                         # PNG data URL: the examined face beside its heatmap


class DetectOut(BaseModel):
    filename: str
    model: str
    threshold: str
    p_fake_threshold: float
    width: int
    height: int
    input: Literal["aligned", "found"]   # taken as one aligned face, or faces found and aligned
    faces: list[FaceOut]                 # empty: no face found, no verdict
    message: str | None                  # "no face found: no verdict" when faces is empty
    overlay: str | None                  # found faces: the upload with every face's heatmap on it


class InfoOut(BaseModel):
    model: str
    scope: str                           # what the model was trained on, what it does not detect
    architecture: str
    backend: str
    threshold: str
    p_fake_threshold: float
    validation_false_alarm_rate: float | None   # validation reals called fake at the threshold; null: unknown
    thresholds_p_fake: dict[str, float]
    faces: str
    align_style: str
    input_size: int
    heatmap: str
    max_upload_bytes: int


class ErrorOut(BaseModel):
    error: str


# ------------------------------------------------------------- service
class DetectService:
    """Decodes uploads and scores every face in them with one :class:`Detector` (one request at a time)."""

    def __init__(self, detector: Detector, max_upload_bytes: int, top_k: int = 3, faces: str = "auto"):
        require(faces in FACE_MODES, "faces", f"must be one of {', '.join(FACE_MODES)}")
        self.detector = detector
        self.max_upload_bytes = max_upload_bytes
        self.top_k = top_k
        self.faces = faces
        self._lock = threading.Lock()

    def info(self) -> dict:
        card = self.detector.card
        return {"model": card.name, "scope": self.detector.scope, "architecture": card.architecture,
                "backend": self.detector.engine.backend, "threshold": self.detector.threshold_name,
                "p_fake_threshold": self.detector.p_fake_threshold,
                "validation_false_alarm_rate": self.detector.validation_false_alarm_rate(),
                "thresholds_p_fake": {k: card.p_fake_threshold(k) for k in card.thresholds},
                "faces": self.faces, "align_style": self.detector.align_style,
                "input_size": card.transform().load_size, "heatmap": SCALE_TEXT,
                "max_upload_bytes": self.max_upload_bytes}

    def analyze_bytes(self, data: bytes, filename: str = "upload", faces: str | None = None) -> dict:
        """Score every face of one uploaded file (``faces``: a :data:`FACE_MODES` value,
        default the service's); the :class:`DetectOut` fields. Raises
        :class:`ImageLoadError` for a non-image."""
        # decode through load_rgb (EXIF, odd modes, size guard) via a private temp file
        with tempfile.TemporaryDirectory(prefix="patchforensics-upload-") as tmp:
            path = Path(tmp) / "upload"
            path.write_bytes(data)
            try:
                image = load_rgb(path)
            except ImageLoadError as e:
                raise ImageLoadError(filename, e.reason) from None
        with self._lock:
            screened = self.detector.screen([image], faces or self.faces, self.top_k)[0]
        out = []
        for row, a in zip(face_results(screened), screened.faces):
            out.append({"index": row.index, "p_fake": row.p_fake, "verdict": row.verdict,
                        "face_box": list(row.face_box), "quad": row.quad, "fill_share": row.fill_share,
                        "upscale": row.upscale, "top_patches": [
                            {"box": list(p.box), "p_fake": p.p_fake,
                             "crop": png_data_url(image.crop((p.box[1], p.box[0], p.box[3], p.box[2])))}
                            for p in a.top_patches],
                        "overlay": png_data_url(render_overlay(a))})
        found = screened.mode == "found" and screened.faces
        return {"filename": filename, "model": self.detector.card.name, "threshold": self.detector.threshold_name,
                "p_fake_threshold": self.detector.p_fake_threshold, "width": image.width, "height": image.height,
                "input": screened.mode, "faces": out,
                "message": None if screened.faces else "no face found: no verdict",
                "overlay": png_data_url(render_on_original(image, screened.faces,
                                                           [face_caption(i, a) for i, a in enumerate(screened.faces)]))
                if found else None}


# ------------------------------------------------------------- app
def _capped(receive, cap: int):
    """An ASGI ``receive`` that refuses (HTTP 413) a body growing past ``cap`` bytes."""
    seen = 0

    async def wrapped():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                raise HTTPException(413, f"upload is over the limit of {cap / 1e6:.0f} MB")
        return message
    return wrapped


_UPLOAD_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}


def create_app(service: DetectService) -> FastAPI:
    """The page and the JSON API over ``service`` (``app.state.service``)."""
    # Swagger UI and ReDoc load their scripts from a CDN: /docs is a local page instead
    app = FastAPI(title="patchforensics", version="1", summary="Is this face generated? Patch-classifier screening.",
                  docs_url=None, redoc_url=None)
    app.state.service = service
    cap = service.max_upload_bytes

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                            headers={"Cache-Control": "no-store"})

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        # a bug must still answer in JSON, which the page shows, rather than as a bare 500 page
        return JSONResponse({"error": f"internal error ({type(exc).__name__}: {exc}); please report it "
                                      "with the image"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or e['loc'][0]}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": errors}, status_code=422)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> str:
        return api_docs_page(app.openapi())

    @app.get("/api/info", response_model=InfoOut)
    async def info() -> dict:
        """The model, its scope, its thresholds (as p(fake) cuts) and the decision threshold's false-alarm
        rate on validation, the face mode and the upload cap."""
        return service.info()

    @app.post("/api/detect", response_model=DetectOut, openapi_extra={"requestBody": _UPLOAD_BODY},
              responses={400: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut},
                         500: {"model": ErrorOut}})
    async def api_detect(request: Request, faces: FaceMode | None = Query(
            None, description="auto: an image of the model's input size is one aligned face, others are "
                              "searched; find: always find faces; aligned: score the image as it is")) -> dict:
        """Score every face of one image: a multipart upload (field `file`) or the raw request body."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:      # refused before the body is read
            raise HTTPException(413, f"upload is {int(declared) / 1e6:.1f} MB; the limit is {cap / 1e6:.0f} MB")
        body = Request(request.scope, _capped(request.receive, cap))
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            async with body.form(max_files=1, max_fields=16, max_part_size=cap) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise HTTPException(400, "no file in the form: send the image in the field 'file' "
                                             "(curl -F file=@photo.jpg)")
                data, name = await upload.read(), upload.filename or "upload"
        else:
            data, name = await body.body(), unquote(request.headers.get("x-filename", "upload"))
        name = name[:200]
        if not data:
            raise HTTPException(400, "empty upload: choose an image file")
        try:
            return await run_in_threadpool(service.analyze_bytes, data, name, faces)
        except ImageLoadError as e:
            raise HTTPException(400, f"{name} is not an image we can read ({e.reason}); "
                                     "upload a PNG, JPEG, WebP, BMP or TIFF file") from None

    return app


def api_docs_page(spec: dict) -> str:
    """``/docs``: the API's operations, read from its OpenAPI description, on a page that
    needs no network (Swagger UI would fetch its scripts from a CDN); the full
    description is ``/openapi.json``."""
    rows = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            codes = ", ".join(sorted(op.get("responses", {})))
            rows.append(f"<tr><td><code>{method.upper()} {html.escape(path)}</code></td>"
                        f"<td>{html.escape(op.get('description') or op.get('summary', ''))}</td>"
                        f"<td>{html.escape(codes)}</td></tr>")
    title = html.escape(spec["info"]["title"]) + " API"
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:880px;margin:2em auto;padding:0 1em}"
            "td{border-top:1px solid #ddd;padding:.4em;vertical-align:top}</style></head><body>"
            f"<h1>{title}</h1>"
            "<p>This page works offline. The full OpenAPI description (request and response schemas) is "
            "<a href=\"/openapi.json\">/openapi.json</a>: load it into any OpenAPI viewer or client generator.</p>"
            "<table><tr><th>operation</th><th>what it does</th><th>status codes</th></tr>"
            + "".join(rows) + "</table><p>Example: <code>curl -F file=@photo.jpg http://HOST:PORT/api/detect</code>"
            "</p></body></html>")


class PortInUseError(ConfigError):
    """The address cannot be bound (in use, or not allowed)."""


class Server:
    """The app on its bound socket, served by uvicorn; ``server_address`` is
    ``(host, port)`` as bound (``port=0`` picks a free one)."""

    def __init__(self, app: FastAPI, sock: socket.socket):
        self.app = app
        self.socket = sock
        self.server_address = self.socket.getsockname()[:2]
        self._uvicorn = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                                      timeout_graceful_shutdown=5))

    @property
    def service(self) -> DetectService:
        return self.app.state.service

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (from another thread) or Ctrl-C."""
        self._uvicorn.run(sockets=[self.socket])

    def shutdown(self) -> None:
        self._uvicorn.should_exit = True

    def close(self) -> None:
        self.socket.close()
        self.service.detector.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise PortInUseError(f"port {port} on {host} is already in use; choose another with --port "
                                 "(--port 0 picks a free one)") from None
        if e.errno == errno.EACCES:
            raise PortInUseError(f"not allowed to bind port {port} on {host}; choose a port above 1023 "
                                 "with --port") from None
        raise PortInUseError(f"cannot bind {host}:{port} ({e.strerror}); check --host and --port") from None


def make_server(cfg: ServeConfig, detector: Detector | None = None) -> Server:
    """A ready (bound, not yet serving) :class:`Server`; raises :class:`PortInUseError`
    (one line saying what to do) when the address cannot be bound."""
    cfg.validate()
    if not _is_loopback(cfg.host):
        warnings.warn(f"serving on {cfg.host}: anyone who can reach this address can upload images", stacklevel=2)
    sock = _bind(cfg.host, cfg.port)     # a port in use fails here, before the model loads
    try:
        if detector is None:
            detector = open_detector(cfg.model, cfg.which_epoch, cfg.backend, cfg.device, cfg.threshold,
                                     cfg.align_style)
        service = DetectService(detector, int(cfg.max_upload_mb * 1e6), cfg.top_k, cfg.faces)
        return Server(create_app(service), sock)
    except BaseException:
        sock.close()
        raise


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
 body{font-family:system-ui,sans-serif;max-width:880px;margin:2em auto;padding:0 1em;color:#222}
 h1{font-size:1.4em} #drop{border:2px dashed #888;border-radius:10px;padding:2em;text-align:center;cursor:pointer}
 #drop.over{background:#eef5ff;border-color:#3a7bd5} #error{color:#b00020;margin:1em 0;font-weight:600}
 #result{display:none;margin-top:1.5em} .verdict{font-size:1.8em;font-weight:700}
 .fake{color:#c62828} .real{color:#2e7d32} .none{color:#555}
 img.heat{max-width:100%;image-rendering:pixelated;border:1px solid #ccc}
 .face{border-top:1px solid #ddd;margin-top:1em;padding-top:.5em}
 .patches{display:flex;gap:1em;flex-wrap:wrap} .patches figure{margin:0;text-align:center;font-size:.85em}
 .patches img{width:96px;height:96px;object-fit:contain;image-rendering:pixelated;border:1px solid #ccc}
 .muted{color:#666;font-size:.9em}
</style></head><body>
<h1>Is this face generated?</h1>
<p class="muted" id="model">loading model…</p>
<p class="muted" id="scope"></p>
<form id="form" action="/api/detect" method="post" enctype="multipart/form-data">
<div id="drop">Drop an image here or <label><u>choose a file</u>
 <input id="file" name="file" type="file" accept="image/*" hidden></label></div></form>
<div id="error" role="alert"></div>
<div id="result" aria-live="polite">
 <p id="summary" class="verdict"></p>
 <p class="muted" id="name"></p>
 <div id="whole"><p class="muted">Every face found, outlined, with its per-patch p(fake) laid back over the
 photo (red = fake-looking, blue = real-looking; the colour bar at the right gives the scale).</p>
 <img id="overlay" class="heat" alt="faces and heatmaps on the photo"></div>
 <div id="faces"></div>
</div>
<script>
const $ = id => document.getElementById(id);
const el = (tag, props = {}, ...kids) => { const e = Object.assign(document.createElement(tag), props); e.append(...kids); return e; };
fetch('/api/info').then(r => r.json()).then(i => {
  const alarms = i.validation_false_alarm_rate === null ? 'unknown'
    : `${(100 * i.validation_false_alarm_rate).toFixed(1)}% of validation reals`;
  $('model').textContent = `model ${i.model} (${i.architecture}); fake when p(fake) ≥ ${i.p_fake_threshold.toFixed(3)} (${i.threshold}; false alarms on validation: ${alarms}); faces: ${i.faces} (an image of ${i.input_size}×${i.input_size} px with a face in it is taken as one aligned face, others are searched for faces); uploads up to ${Math.round(i.max_upload_bytes/1e6)} MB`;
  $('scope').textContent = 'Scope: ' + i.scope;
});
function notes(f) {
  const out = [];
  if (f.fill_share >= 0.005) out.push(`${Math.round(100 * f.fill_share)}% of the examined square lies outside ` +
                                      'the photo (filled in; patches mostly there do not count)');
  if (f.upscale > 1) out.push(`a small face, enlarged ${f.upscale.toFixed(2)}× to be scored`);
  return out.join('; ');
}
function faceCard(f, aligned) {
  const title = aligned ? 'The image (taken as one aligned face)' : `Face #${f.index}`;
  const patches = el('div', {className: 'patches'});
  f.top_patches.forEach((p, k) => patches.append(el('figure', {},
    el('img', {src: p.crop, alt: 'patch ' + (k + 1)}),
    el('figcaption', {textContent: `#${k + 1} p(fake) ${p.p_fake.toFixed(2)} at [${p.box}]`}))));
  return el('div', {className: 'face'},
    el('h3', {textContent: title}),
    el('div', {}, el('span', {className: 'verdict ' + f.verdict, textContent: f.verdict.toUpperCase()}),
       ' p(fake) = ', el('b', {className: 'pfake', textContent: f.p_fake.toFixed(3)}),
       el('span', {className: 'muted', textContent: `  face box [top,left,bottom,right] = [${f.face_box}]`})),
    el('p', {className: 'muted notes', textContent: notes(f)}),
    el('p', {className: 'muted', textContent: 'Left: what the model examined; right: per-patch p(fake), most suspicious patch outlined in white.'}),
    el('img', {className: 'heat face-overlay', src: f.overlay, alt: 'heatmap of ' + title}),
    el('h4', {textContent: 'Most suspicious patches'}), patches);
}
async function send(file) {
  $('error').textContent = ''; $('result').style.display = 'none';
  $('name').textContent = 'analysing ' + file.name + '…';
  const form = new FormData(); form.append('file', file);
  let r, body;
  try { r = await fetch('/api/detect', {method: 'POST', body: form}); }
  catch (e) { $('error').textContent = 'request failed: ' + e; $('name').textContent = ''; return; }
  const text = await r.text();
  try { body = JSON.parse(text); }
  catch (e) { body = {error: `the server answered ${r.status} ${r.statusText}, not JSON: ${text.slice(0, 200)}`}; }
  if (!r.ok || body.error) { $('error').textContent = body.error || ('error ' + r.status); $('name').textContent = ''; return; }
  const n = body.faces.length, fakes = body.faces.filter(f => f.verdict === 'fake').length;
  $('summary').className = 'verdict ' + (n ? (fakes ? 'fake' : 'real') : 'none');
  $('summary').textContent = n ? `${n} face${n > 1 ? 's' : ''}: ${fakes} fake, ${n - fakes} real`
                               : 'No face found: no verdict';
  $('name').textContent = `${file.name}: ${body.width}×${body.height} px; ` +
    (body.input === 'aligned' ? 'taken as one aligned face' : `${n} face${n === 1 ? '' : 's'} found and aligned`) +
    `; fake when p(fake) ≥ ${body.p_fake_threshold.toFixed(3)} (${body.threshold})`;
  $('whole').style.display = body.overlay ? 'block' : 'none';
  if (body.overlay) $('overlay').src = body.overlay;
  $('faces').replaceChildren(...body.faces.map(f => faceCard(f, body.input === 'aligned')));
  $('result').style.display = 'block';
}
const drop = $('drop');
drop.addEventListener('dragover', e => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', e => { e.preventDefault(); drop.classList.remove('over');
  if (e.dataTransfer.files.length) send(e.dataTransfer.files[0]); });
$('file').addEventListener('change', e => { if (e.target.files.length) send(e.target.files[0]); });
$('form').addEventListener('submit', e => { e.preventDefault(); if ($('file').files.length) send($('file').files[0]); });
</script></body></html>
"""
