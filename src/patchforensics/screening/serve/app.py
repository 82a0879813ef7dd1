"""``serve``'s web app: the page (``assets/serve.html``), ``/docs`` and the JSON API, on FastAPI.

Every answer is JSON, errors included (``{"error": message}``: 400 not an image, empty, no
``file`` field; 413 over the upload cap or the pixel budget; 422 a bad query value; 500 a bug),
so the page can show it.
"""
from __future__ import annotations

import html
from urllib.parse import unquote

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ...core.assets import read_asset
from ...core.imageio import FORMATS_TEXT, ImageLoadError, ImageTooLargeError
from ..detector import face_modes_text
from .schemas import DetectOut, ErrorOut, FaceMode, InfoOut
from .service import DetectService

#: the page a person uses: drop an image, see every face's verdict, heatmap and patches
PAGE = read_asset("serve.html")

#: both upload forms of ``POST /api/detect``, for the OpenAPI description (the body is read by hand)
_UPLOAD_BODY = {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}

#: ``?faces=``, in words
_FACES_TEXT = face_modes_text(default=None) + "; default: the server's --faces (faces in GET /api/info)"

router = APIRouter()


async def _service(request: Request) -> DetectService:
    return request.app.state.service


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


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> str:
    return PAGE


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
async def docs(request: Request) -> str:
    return api_docs_page(request.app.openapi())


@router.get("/api/info", response_model=InfoOut)
async def info(service: DetectService = Depends(_service)) -> dict:
    """The model, its scope, its thresholds (as p(fake) cuts) and the decision threshold's false-alarm
    rate on validation, the face mode and the upload cap."""
    return service.info()


@router.post("/api/detect", response_model=DetectOut, openapi_extra={"requestBody": _UPLOAD_BODY},
             responses={400: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut},
                        500: {"model": ErrorOut}})
async def api_detect(request: Request, faces: FaceMode | None = Query(None, description=_FACES_TEXT),
                     service: DetectService = Depends(_service)) -> dict:
    """Score every face of one image: a multipart upload (field `file`) or the raw request body."""
    cap = service.max_upload_bytes
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
    except ImageTooLargeError as e:     # over --max-pixels or the bomb guard: refused before decoding
        raise HTTPException(413, f"{name}: {e.reason}") from None
    except ImageLoadError as e:
        hint = "" if FORMATS_TEXT in e.reason else f"; upload a {FORMATS_TEXT} file"   # said once
        raise HTTPException(400, f"{name} is not an image we can read ({e.reason}){hint}") from None


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers={"Cache-Control": "no-store"})


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    # a bug must still answer in JSON, which the page shows, rather than as a bare 500 page
    return JSONResponse({"error": f"internal error ({type(exc).__name__}: {exc}); please report it "
                                  "with the image"}, status_code=500)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or e['loc'][0]}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"error": errors}, status_code=422)


async def _headers(request: Request, call_next):
    response = await call_next(request)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def create_app(service: DetectService) -> FastAPI:
    """The page and the JSON API over ``service`` (``app.state.service``)."""
    # Swagger UI and ReDoc load their scripts from a CDN: /docs is a local page instead
    app = FastAPI(title="patchforensics", version="1", summary="Is this face generated? Patch-classifier screening.",
                  docs_url=None, redoc_url=None)
    app.state.service = service
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _server_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.middleware("http")(_headers)
    app.include_router(router)
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
