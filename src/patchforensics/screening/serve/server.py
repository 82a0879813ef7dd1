"""``serve``'s server: its options, the bound socket and uvicorn serving the app on it.

It binds 127.0.0.1 unless told otherwise: uploads are not authenticated, so exposing it
beyond the machine is the operator's decision (and warned about).
"""
from __future__ import annotations

import errno
import ipaddress
import socket
import warnings
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from ...core.config import ConfigError, require
from ...core.imageio import SCREEN_MAX_PIXELS
from ...data.align import STYLES
from ...scoring.runtime import BACKENDS
from ..decode import check_max_pixels
from ..detector import DEFAULT_ALIGN_STYLE, DEFAULT_FACE_MODE, DEFAULT_THRESHOLD, FACE_MODES, Detector, open_detector
from .app import create_app
from .service import DetectService

MAX_UPLOAD_MB = 20


@dataclass
class ServeConfig:
    """Options of ``patchforensics serve``."""

    host: str = "127.0.0.1"
    port: int = 8000                   # 0 = any free port
    model: str | None = None           # checkpoint folder or .onnx; None = bundled detector
    which_epoch: str | None = None
    backend: str = "auto"              # one of BACKENDS
    threshold: str = DEFAULT_THRESHOLD
    faces: str = DEFAULT_FACE_MODE     # one of FACE_MODES, the default of each request
    align_style: str = DEFAULT_ALIGN_STYLE
    max_upload_mb: float = MAX_UPLOAD_MB
    max_pixels: int = SCREEN_MAX_PIXELS  # an upload that would decode to more pixels: HTTP 413
    top_k: int = 3
    device: str = "auto"

    def validate(self) -> None:
        require(0 <= self.port <= 65535, "port", "must be between 0 and 65535 (0 = any free port)")
        require(self.max_upload_mb > 0, "max_upload_mb", "must be > 0")
        check_max_pixels(self.max_pixels)
        require(self.top_k > 0, "top_k", "must be > 0")
        require(self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}")
        require(self.faces in FACE_MODES, "faces", f"must be one of {', '.join(FACE_MODES)}")
        require(self.align_style in STYLES, "align_style", f"must be one of {', '.join(STYLES)}")


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
        self.service.close()


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
        service = DetectService(detector, int(cfg.max_upload_mb * 1e6), cfg.top_k, cfg.faces, cfg.max_pixels)
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
