"""Memory of ``patchforensics serve`` under concurrent large uploads, against a real uvicorn server.

Starts ``python -m patchforensics serve --port 0`` on 127.0.0.1 (loopback only) as a child
process, warms it up with one small photo (model, face finder and page loaded), then sends
``--uploads`` large uploads at once (one thread each) and reads the server's memory from
``/proc/PID/status``: resident set before, peak during (``VmHWM``, reset before the burst) and
after (the burst answered, ``--settle`` seconds later). Each kind of upload gets its own server:

- ``bomb``: the issue's case, an 8-bit greyscale PNG of 9400 x 9400 px (~86 KB, 88 MP, under the
  decompression-bomb guard, over the default ``--max-pixels``);
- ``budget``: a greyscale PNG just inside the default budget (4990 x 4990 px) with a portrait in it;
- ``jpeg``: a 48 MP JPEG (8000 x 6000 px) with a portrait in it, decoded at half size.

::

    python bench/serve_memory.py [--kinds bomb budget jpeg] [--uploads 20] [--src OTHER/src] [--json out.json]

``--src`` runs the server from another checkout's ``src`` (e.g. the code before the budget).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PORTRAITS = REPO.parent / "shared" / "data" / "raw" / "wild-portraits"


def upload(kind: str) -> tuple[str, bytes, str]:
    """``(file name, bytes, content type)`` of one upload of ``kind``."""
    portrait = Image.open(sorted(PORTRAITS.glob("*.jpg"))[0]).convert("RGB")
    buf = io.BytesIO()
    if kind == "bomb":
        Image.new("L", (9400, 9400), 0).save(buf, "PNG", optimize=True)
        return "bomb.png", buf.getvalue(), "image/png"
    side, fmt = ((4990, 4990), "PNG") if kind == "budget" else ((8000, 6000), "JPEG")
    canvas = Image.new("RGB", side, (128, 128, 128))
    face = portrait.resize((portrait.width * 6, portrait.height * 6), Image.Resampling.LANCZOS)
    canvas.paste(face, (side[0] // 3, side[1] // 4))
    (canvas.convert("L") if fmt == "PNG" else canvas).save(buf, fmt, quality=90)
    return f"{kind}.{fmt.lower()}", buf.getvalue(), f"image/{fmt.lower()}"


def status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid``, MB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+) kB", text).group(1)) // 1024 for k in ("VmRSS", "VmHWM")}


def start_server(src: Path, env_extra: dict) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(src), **env_extra}
    proc = subprocess.Popen([sys.executable, "-m", "patchforensics", "serve", "--host", "127.0.0.1", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in proc.stdout:
        found = re.search(r"open (http://127\.0\.0\.1:\d+)/", line)
        if found:
            return proc, found.group(1)
    raise RuntimeError("the server did not start")


def burst(kind: str, uploads: int, src: Path, settle: float) -> dict:
    name, data, ctype = upload(kind)
    proc, url = start_server(src, {})
    try:
        with httpx.Client(timeout=600) as client:
            small = io.BytesIO()
            Image.open(sorted(PORTRAITS.glob("*.jpg"))[0]).save(small, "JPEG")
            assert client.post(url + "/api/detect", files={"file": ("w.jpg", small.getvalue())}).status_code == 200
        time.sleep(settle)
        before = status(proc.pid)["VmRSS"]
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")        # reset the peak to the current RSS
        start = time.perf_counter()

        def post(_):
            with httpx.Client(timeout=600) as c:
                r = c.post(url + "/api/detect", files={"file": (name, data, ctype)})
                return r.status_code, (r.json().get("error") or "")[:120]
        with ThreadPoolExecutor(uploads) as pool:
            answers = list(pool.map(post, range(uploads)))
        seconds = time.perf_counter() - start
        peak = status(proc.pid)["VmHWM"]
        time.sleep(settle)
        after = status(proc.pid)["VmRSS"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    codes = sorted({code for code, _ in answers})
    return {"kind": kind, "upload_bytes": len(data), "uploads": uploads, "status_codes": codes,
            "error": next((e for _, e in answers if e), None), "rss_before_mb": before, "peak_mb": peak,
            "rss_after_mb": after, "seconds": round(seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", nargs="+", default=["bomb", "budget", "jpeg"], choices=["bomb", "budget", "jpeg"])
    ap.add_argument("--uploads", type=int, default=20)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to wait before reading RSS")
    ap.add_argument("--src", default=str(REPO / "src"), help="the package's source folder to serve from")
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = [burst(k, args.uploads, Path(args.src), args.settle) for k in args.kinds]
    for row in rows:
        print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps({"src": args.src, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
