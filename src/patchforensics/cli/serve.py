"""``patchforensics serve``."""
from __future__ import annotations

import argparse

from ..core.imageio import SCREEN_MAX_PIXELS
from ..data.align import STYLES
from ..screening.decode import MAX_PIXELS_HELP
from ..screening.detector import DEFAULT_ALIGN_STYLE, DEFAULT_FACE_MODE, DEFAULT_THRESHOLD, FACE_MODES
from .options import add_backend_option


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="local web page: drop an image, see each face's p(fake), heatmap and top patches",
                       description="Serve a page and a JSON API (POST /api/detect with the image as a multipart "
                                   "field 'file' or as the raw body; described at /openapi.json, listed at /docs), "
                                   "on FastAPI + uvicorn. Binds 127.0.0.1 by default; uploads are capped at "
                                   "--max-upload-mb.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="default 8000; 0 picks a free port")
    p.add_argument("--model", help="checkpoint folder or .onnx file (default: the bundled detector)")
    p.add_argument("--which-epoch", help="bestval (default) | latest | N")
    add_backend_option(p)
    p.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                   help="stored threshold name or a p(fake) value (default: the model's screening threshold, "
                        "fpr3pct, else eer)")
    p.add_argument("--faces", default=DEFAULT_FACE_MODE, choices=FACE_MODES,
                   help="default face mode of each request (as detect's --faces; a request may pass ?faces=)")
    p.add_argument("--align-style", default=DEFAULT_ALIGN_STYLE, choices=STYLES,
                   help=f"how found faces are aligned (default {DEFAULT_ALIGN_STYLE}, as the shared training faces)")
    p.add_argument("--max-upload-mb", type=float, default=20.0)
    p.add_argument("--max-pixels", type=int, default=SCREEN_MAX_PIXELS, metavar="N",
                   help=MAX_PIXELS_HELP + "; over it: HTTP 413")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..screening.serve import ServeConfig, make_server

    cfg = ServeConfig(host=args.host, port=args.port, model=args.model, which_epoch=args.which_epoch,
                      backend=getattr(args, "backend", "auto"), threshold=args.threshold,
                      faces=args.faces, align_style=args.align_style, max_upload_mb=args.max_upload_mb,
                      max_pixels=args.max_pixels, device=args.device)
    server = make_server(cfg)       # a port in use: one line saying what to do, exit 2 (cli.main)
    print(f"patchforensics: open {server.url}/ (API: {server.url}/docs, {server.url}/openapi.json; Ctrl-C to stop)",
          flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()
    return 0
