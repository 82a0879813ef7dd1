"""Fuzzing: >= 10,000 generated bad or odd files through ``load_rgb`` and the
``detect`` command. Nothing may crash; every file is either decoded to RGB or
refused with an :class:`ImageLoadError` naming it and a reason, and ``detect``
skips exactly the files the loader refuses (one loader everywhere)."""
from __future__ import annotations

import contextlib
import io
import json
import struct
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from patchforensics.models.checkpoint import save_weights, weights_path
from patchforensics.cli import main as cli_main
from patchforensics.core.imageio import (IMAGE_EXTENSIONS, MAX_ASPECT_RATIO, MAX_PIXELS, MIN_SIDE, ImageLoadError,
                                    load_rgb)
from patchforensics.models import create_model
from patchforensics.training.train import TrainConfig
from reliability_support import one_thread  # noqa: F401 (fixture)

FILES_PER_EXAMPLE = 100
EXAMPLES = 101
EXTENSIONS = sorted(IMAGE_EXTENSIONS)

# (format, modes it can store) for valid-but-odd images
ENCODINGS = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I"],
    "JPEG": ["L", "RGB", "CMYK"],
    "WEBP": ["RGB", "RGBA"],
    "BMP": ["1", "L", "P", "RGB"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F", "LAB"],
    "GIF": ["L", "P"],
}
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"RIFF\x00\x01\x00\x00WEBPVP8 ", b"BM", b"II*\x00",
         b"MM\x00*", b"GIF89a", b"%!PS-Adobe-3.0 EPSF-3.0\n", b"%PDF-1.4\n", b"<svg", b"\x00\x00\x00\x0cjP  "]


# ------------------------------------------------------------------ builders
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_header(width: int, height: int, payload: bytes = b"") -> bytes:
    """A PNG whose IHDR claims ``width x height`` RGB pixels, followed by ``payload``
    as (compressed) pixel data: checksums valid, content far too short or absent."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(payload))
            + _chunk(b"IEND", b""))


def odd_image(rng: np.random.Generator, mode: str, width: int, height: int) -> Image.Image:
    """A noisy image of ``mode`` (values over the mode's whole range)."""
    if mode in ("I;16",):
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    if mode == "I":
        return Image.fromarray(rng.integers(-2**20, 2**20, (height, width), dtype=np.int32))
    if mode == "F":
        a = rng.normal(0.5, 2.0, (height, width)).astype(np.float32)
        a[rng.random((height, width)) < 0.05] = np.nan
        return Image.fromarray(a)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    if mode == "P":
        return rgb.quantize(int(rng.integers(2, 256)))
    if mode in ("LA", "RGBA"):
        im = rgb.convert(mode)
        im.putalpha(Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)))
        return im
    return rgb.convert(mode)


def encode(im: Image.Image, fmt: str, orientation: int | None, rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    kwargs = {}
    if orientation is not None and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    if fmt == "PNG" and im.mode == "P" and rng.random() < 0.5:
        kwargs["transparency"] = int(rng.integers(0, 2))
    if fmt == "GIF" and rng.random() < 0.3:   # animated
        frames = [im.convert("P")] + [im.rotate(90 * k).convert("P") for k in (1, 2)]
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
        return buf.getvalue()
    try:
        im.save(buf, fmt, **kwargs)
    except (OSError, ValueError, KeyError, TypeError):
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "PNG")
    return buf.getvalue()


KINDS = ("random", "magic", "truncated", "corrupted", "valid", "huge_header", "empty", "exif_garbage")
#: side lengths worth hitting often: degenerate, just below/at the minimum, very elongated
EDGE_SIDES = (1, 2, MIN_SIDE - 1, MIN_SIDE, 17, 400)


def pick(rng: np.random.Generator, options):
    return options[int(rng.integers(0, len(options)))]


def side(rng: np.random.Generator) -> int:
    return int(pick(rng, EDGE_SIDES)) if rng.random() < 0.3 else int(rng.integers(8, 65))


def build_file(recipe: tuple[str, str, int]) -> tuple[str, bytes]:
    """``(extension, content)`` of one bad or odd file.

    Hypothesis chooses the kind, the extension and a seed; the seed drives the
    details (format, mode, size, orientation, where to cut or flip bytes), so an
    example is cheap to draw and a failure shrinks to a reproducible recipe.
    """
    kind, ext, seed = recipe
    rng = np.random.default_rng(seed)
    if kind == "empty":
        return ext, b""
    if kind == "random":
        return ext, rng.bytes(int(rng.integers(1, 4097)))
    if kind == "magic":
        return ext, pick(rng, MAGIC) + rng.bytes(int(rng.integers(0, 513)))
    if kind == "huge_header":
        w, h = (int(pick(rng, (1, 9_460, 100_000, 2**31 - 1))) if rng.random() < 0.5
                else int(rng.integers(1, 2**31)) for _ in range(2))
        return ext, png_with_header(w, h, rng.bytes(int(rng.integers(0, 257))))
    fmt = pick(rng, sorted(ENCODINGS))
    mode = pick(rng, ENCODINGS[fmt])
    width, height = side(rng), side(rng)
    orientation = None if rng.random() < 0.4 else int(pick(rng, (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 65535)))
    if kind == "exif_garbage":
        # a JPEG whose APP1 Exif segment is noise (malformed orientation metadata)
        jpeg = encode(odd_image(rng, "RGB", width, height), "JPEG", None, rng)
        junk = b"Exif\x00\x00" + rng.bytes(int(rng.integers(0, 200)))
        return ext, jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk + jpeg[2:]
    data = encode(odd_image(rng, mode, width, height), fmt, orientation, rng)
    if kind == "truncated":
        return ext, data[: int(rng.integers(1, max(2, len(data))))]
    if kind == "corrupted":
        buf = bytearray(data)
        for _ in range(int(rng.integers(1, 17))):
            buf[int(rng.integers(0, len(buf)))] = int(rng.integers(0, 256))
        return ext, bytes(buf)
    return ext, data


odd_file = st.tuples(st.sampled_from(KINDS), st.sampled_from(EXTENSIONS), st.integers(0, 2**32 - 1)).map(build_file)


# ------------------------------------------------------------------ checks
def check_loader(path: Path) -> bool:
    """True if decoded; False if refused properly. Anything else fails the test."""
    try:
        im = load_rgb(path)
    except ImageLoadError as e:
        assert e.path == str(path) and str(e).startswith(str(path))
        assert e.reason.strip(), f"empty reason for {path}"
        return False
    assert im.mode == "RGB"
    w, h = im.size
    assert MIN_SIDE <= min(w, h) and w * h <= MAX_PIXELS and max(w, h) <= MAX_ASPECT_RATIO * min(w, h)
    np.asarray(im)   # pixels really there
    return True


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    """An untrained xception_block1 checkpoint at 32 px: enough to exercise detect."""
    ckpt = tmp_path_factory.mktemp("fuzz_ckpt") / "fuzz"
    cfg = TrainConfig(model="xception_block1", load_size=32, fine_size=32, name="fuzz")
    cfg.card("fuzz").write(ckpt)
    save_weights(weights_path(ckpt, "bestval"), create_model("xception_block1", seed=0), epoch=0)
    return ckpt


def run_detect(folder: Path, ckpt: Path) -> tuple[int, dict]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(["detect", str(folder), "--model", str(ckpt), "--threshold", "0.5", "--faces", "aligned",
                       "--format", "json", "--device", "cpu", "--batch-size", "64"])
    assert rc in (0, 1), err.getvalue()
    return rc, json.loads(out.getvalue())


def test_fuzz_loader_and_detect(random_checkpoint, capsys, one_thread):
    start = time.perf_counter()
    counts = {"files": 0, "decoded": 0, "refused": 0}
    reasons: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(odd_file, min_size=FILES_PER_EXAMPLE, max_size=FILES_PER_EXAMPLE))
    def batch(files):
        with tempfile.TemporaryDirectory(prefix="pf-fuzz-") as tmp:
            folder = Path(tmp)
            paths = []
            for i, (ext, data) in enumerate(files):
                path = folder / f"f{i:03d}{ext}"
                path.write_bytes(data)
                paths.append(path)
            decoded = {str(p) for p in paths if check_loader(p)}
            rc, out = run_detect(folder, random_checkpoint)
            scored = {r["path"] for r in out["results"] if r["error"] is None}
            skipped = {s["path"]: s["reason"] for s in out["skipped"]}
            assert scored == decoded, "detect and load_rgb disagree"
            assert set(skipped) == {str(p) for p in paths} - decoded
            assert all(r.strip() for r in skipped.values())
            assert all(len(r["faces"]) == 1 and 0.0 <= r["faces"][0]["p_fake"] <= 1.0
                       for r in out["results"] if r["error"] is None)
            assert rc == (0 if decoded else 1)
            counts["files"] += len(paths)
            counts["decoded"] += len(decoded)
            counts["refused"] += len(paths) - len(decoded)
            for reason in skipped.values():
                key = reason.split("(")[0].split(":")[0].strip()
                reasons[key] = reasons.get(key, 0) + 1

    batch()
    assert counts["files"] >= 10_000
    with capsys.disabled():
        print(f"\n[fuzz] {counts['files']} generated files through load_rgb and detect: "
              f"{counts['decoded']} decoded, {counts['refused']} refused with a reason, 0 crashes "
              f"({time.perf_counter() - start:.0f} s)")
        print("[fuzz] refusals: " + ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])))
