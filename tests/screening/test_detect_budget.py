"""The pixel budget of ``detect`` and ``serve`` (issue #28, item 6): an image that would decode to
more than ``--max-pixels`` is refused from its header, before a pixel is decoded, in one line (HTTP
413 from the API); a large JPEG is decoded at a reduced size and gives the same faces, boxes in the
file's pixels; ``detect`` holds at most a budget's worth of decoded pixels at once, ``serve`` at most
``DECODE_SLOTS`` decoded uploads."""
from __future__ import annotations

import io
import struct
import threading
import time
import zlib

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFile

import patchforensics.screening.detect as detect_module
import patchforensics.screening.serve.service as service_module
from conftest import raw_images
from patchforensics.cli import main
from patchforensics.core.config import ConfigError
from patchforensics.core.imageio import (DRAFT_MIN_SIDE, MAX_PIXELS, SCREEN_MAX_PIXELS, ImageTooLargeError,
                                         decode_rgb)
from patchforensics.screening.decode import decode_photo, in_file_pixels
from patchforensics.screening.detect import DetectConfig, detect
from patchforensics.screening.detector import open_detector
from patchforensics.screening.serve import ServeConfig, create_app
from patchforensics.screening.serve.service import DECODE_SLOTS, DetectService

WILD = raw_images("wild-portraits", 3)


def grey_png(width: int, height: int, rows: int | None = None) -> bytes:
    """An 8-bit greyscale PNG claiming ``width x height`` whose first ``rows`` rows (all, by default)
    are black: a real ~86 KB file for 9400 x 9400 (88 MP)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)                      # filter byte + one byte a pixel
    data = b"".join(z.compress(row) for _ in range(height if rows is None else rows)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("budget") / "huge.png"
    path.write_bytes(grey_png(9400, 9400))
    assert path.stat().st_size < 200_000 and 9400 * 9400 < MAX_PIXELS      # the case: under the bomb guard
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Decoding any pixel fails the test: refusals must come from the header."""
    def load(self):
        raise AssertionError("pixels were decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.fixture(scope="module")
def detector():
    with open_detector() as d:
        yield d


def test_detect_refuses_a_huge_small_png_in_one_line_before_decoding(huge_png, capsys, no_decoding):
    assert main(["detect", str(huge_png), "--format", "json"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"skipped {huge_png}: too large to screen: 9400x9400 = 88360000 pixels, above the "
                      f"{SCREEN_MAX_PIXELS}-pixel budget (--max-pixels); downscale it first or raise --max-pixels")


def test_max_pixels_is_checked_and_lowers_the_budget(huge_png, tmp_path, capsys):
    for bad in (0, MAX_PIXELS + 1):
        with pytest.raises(ConfigError, match=f"max_pixels: must be between 1 and {MAX_PIXELS}"):
            DetectConfig(paths=[str(huge_png)], max_pixels=bad).validate()
        with pytest.raises(ConfigError, match="max_pixels"):
            ServeConfig(max_pixels=bad).validate()
    Image.new("RGB", (200, 150)).save(tmp_path / "small.png")
    assert main(["detect", str(tmp_path / "small.png"), "--max-pixels", "29999"]) == 1
    assert "200x150 = 30000 pixels, above the 29999-pixel budget" in capsys.readouterr().err


def test_the_api_answers_413_before_decoding(huge_png, detector, no_decoding):
    client = TestClient(create_app(DetectService(detector, 10**7)))
    r = client.post("/api/detect", files={"file": ("huge.png", huge_png.read_bytes(), "image/png")})
    assert r.status_code == 413
    assert r.json()["error"] == (f"huge.png: too large to screen: 9400x9400 = 88360000 pixels, above the "
                                 f"{SCREEN_MAX_PIXELS}-pixel budget (--max-pixels); downscale it first or raise "
                                 "--max-pixels")


def test_a_large_jpeg_is_decoded_at_a_reduced_size(tmp_path):
    """Shorter side 2x DRAFT_MIN_SIDE: decoded at half size, never below DRAFT_MIN_SIDE; counted at
    that size against the budget (a JPEG over --max-pixels in the file passes)."""
    side = 2 * DRAFT_MIN_SIDE
    Image.new("RGB", (side + 100, side), (120, 90, 60)).save(tmp_path / "big.jpg", quality=80)
    photo = decode_photo(tmp_path / "big.jpg", max_pixels=(side + 100) * side - 1)
    assert photo.file_size == (side + 100, side) and photo.image.size == ((side + 100 + 1) // 2, DRAFT_MIN_SIDE)
    assert decode_rgb(tmp_path / "big.jpg").image.size == (side + 100, side)       # load_rgb: whole, as before
    Image.new("RGB", (side, side - 2)).save(tmp_path / "short.jpg")
    assert decode_photo(tmp_path / "short.jpg").image.size == (side, side - 2)     # shorter side below 2x: whole


def enlarged_jpeg(path, factor: int, out) -> None:
    im = Image.open(path).convert("RGB")
    im.resize((im.width * factor, im.height * factor), Image.Resampling.LANCZOS).save(out, quality=95)


def test_a_jpeg_decoded_in_draft_mode_gives_the_same_faces(detector, tmp_path, monkeypatch):
    """Real portraits enlarged 4x, decoded whole and (draft side lowered to keep the test quick) at
    1/2 or 1/4 size: the same faces, verdicts and (in the file's pixels) boxes."""
    monkeypatch.setattr("patchforensics.screening.decode.DRAFT_MIN_SIDE", 300)
    for i, source in enumerate(WILD):
        enlarged_jpeg(source, 4, tmp_path / f"{i}.jpg")
        whole, drafted = decode_rgb(tmp_path / f"{i}.jpg"), decode_photo(tmp_path / f"{i}.jpg")
        assert drafted.image.width < whole.image.width and drafted.file_size == whole.image.size
        (a,), (b,) = detector.screen([whole.image], "find"), detector.screen([drafted.image], "find")
        assert len(a.faces) == len(b.faces) >= 1
        for fa, fb in zip(a.faces, b.faces):
            fb = in_file_pixels(fb.without_maps(), drafted)
            assert fa.verdict == fb.verdict and fb.p_fake == pytest.approx(fa.p_fake, abs=0.05)
            side = fa.face_box[2] - fa.face_box[0]
            assert max(abs(u - v) for u, v in zip(fa.face_box, fb.face_box)) <= 0.05 * side
            assert fb.upscale == pytest.approx(fa.upscale, rel=0.05)
            assert all(0 <= p.box[0] < p.box[2] <= whole.image.height and 0 <= p.box[1] < p.box[3]
                       <= whole.image.width for p in fb.top_patches)


def test_detect_holds_one_budget_of_decoded_pixels_at_a_time(tmp_path, monkeypatch):
    for i in range(5):
        Image.new("RGB", (100, 100), (i, 0, 0)).save(tmp_path / f"{i}.png")
    held: list[int] = []
    real_screen = detect_module.Detector.screen

    def screen(self, images, *args, **kwargs):
        held.append(sum(im.width * im.height for im in images))
        return real_screen(self, images, *args, **kwargs)
    monkeypatch.setattr(detect_module.Detector, "screen", screen)
    result = detect(DetectConfig(paths=[str(tmp_path)], faces="aligned", max_pixels=25_000), progress=False)
    assert len(result.faces) == 5 and held == [20_000, 20_000, 10_000]


def test_serve_decodes_at_most_decode_slots_uploads_at_once(detector, monkeypatch):
    inside, most, lock = 0, 0, threading.Lock()
    real_decode = service_module.decode_photo

    def decode(path, max_pixels):
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.05)
        try:
            return real_decode(path, max_pixels)
        finally:
            with lock:
                inside -= 1
    monkeypatch.setattr(service_module, "decode_photo", decode)
    service = DetectService(detector, 10**7, faces="aligned")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 90, 90)).save(buf, "PNG")
    threads = [threading.Thread(target=service.analyze_bytes, args=(buf.getvalue(),)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == DECODE_SLOTS >= 1


def test_the_bomb_guard_is_a_too_large_error_too(tmp_path):
    (tmp_path / "bomb.png").write_bytes(grey_png(12_000, 12_000, rows=1))
    with pytest.raises(ImageTooLargeError, match="decompression-bomb guard"):
        decode_photo(tmp_path / "bomb.png")
