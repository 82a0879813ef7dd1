"""``serve``: a local web page and JSON API for checking images, on FastAPI + uvicorn.

The answers' models (:mod:`.schemas`), the scoring behind them (:mod:`.service`), the app
(:mod:`.app`) and the server (:mod:`.server`); what the page and the API do: docs/detect.md.
"""
from .app import api_docs_page, create_app
from .schemas import DetectOut, ErrorOut, FaceMode, FaceOut, InfoOut, PatchOut
from .server import MAX_UPLOAD_MB, PortInUseError, Server, ServeConfig, make_server
from .service import DetectService

__all__ = ["MAX_UPLOAD_MB", "DetectOut", "DetectService", "ErrorOut", "FaceMode", "FaceOut", "InfoOut", "PatchOut",
           "PortInUseError", "ServeConfig", "Server", "api_docs_page", "create_app", "make_server"]
