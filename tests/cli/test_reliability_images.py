"""Image loading everywhere: odd but valid images decode to the right RGB pixels,
bad files are named and explained, and ``train``/``test``/``detect`` skip them,
list them in their summaries and exit 0 unless nothing usable is left."""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from patchforensics.cli import main as cli_main
from patchforensics.data.dataset import REAL, ImageDataset, Sample
from patchforensics.core.imageio import (DECODERS, FORMATS, FORMATS_TEXT, IMAGE_EXTENSIONS, MAX_PIXELS, ImageLoadError,
                                        SkipLog, list_images, load_rgb)
from patchforensics.data.transforms import TransformConfig, eval_transform
from reliability_support import one_thread  # noqa: F401 (fixture)

ORIENTATION_TAG = 0x0112
# EXIF orientation -> how the stored pixels relate to the upright picture: the
# transpose that *stores* an upright image under that tag (inverse of displaying it).
STORE_AS = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


@pytest.fixture(scope="module")
def face(faces) -> Image.Image:
    """A real 128x128 FFHQ face, made non-square (128x112) so rotations show."""
    path = sorted((faces / "ffhq" / "test").glob("*.png"))[0]
    return Image.open(path).convert("RGB").crop((0, 8, 128, 120))


def encoded(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def with_orientation(im: Image.Image, orientation: int, fmt: str) -> bytes:
    stored = im if STORE_AS[orientation] is None else im.transpose(STORE_AS[orientation])
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    return encoded(stored, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


def png_claiming(width: int, height: int, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    """A small PNG whose header claims ``width x height`` pixels (RGB unless told)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def as_array(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.int16)


# ------------------------------------------------------------ odd but valid
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(face, tmp_path, orientation):
    path = tmp_path / "rotated.png"
    path.write_bytes(with_orientation(face, orientation, "PNG"))
    if orientation != 1:
        assert Image.open(path).size != face.size or orientation in (2, 3, 4)
    assert np.array_equal(as_array(load_rgb(path)), as_array(face))


def test_exif_orientation_same_in_train_test_and_jpeg(face, tmp_path):
    """``train``/``test`` read through ImageDataset: an EXIF-rotated JPEG gives the same
    tensor as the upright JPEG (up to JPEG noise, far below the un-rotated difference)."""
    upright, rotated = tmp_path / "upright.jpg", tmp_path / "rotated.jpg"
    upright.write_bytes(encoded(face, "JPEG", quality=95))
    rotated.write_bytes(with_orientation(face, 6, "JPEG"))
    tcfg = TransformConfig(load_size=64, fine_size=64)
    ds = ImageDataset([Sample(str(upright), REAL), Sample(str(rotated), REAL)], eval_transform(tcfg))
    a, b = ds[0]["image"], ds[1]["image"]
    unrotated = eval_transform(tcfg)(Image.open(rotated).convert("RGB"))
    assert (a - b).abs().mean() < 0.02 < (a - unrotated).abs().mean()


def test_odd_modes_decode_to_the_right_pixels(face, tmp_path):
    grey = face.convert("L")
    cases = {}
    # CMYK JPEG (print workflows): Pillow's RGB<->CMYK round trip is exact, so only JPEG noise remains
    cases["cmyk.jpg"] = encoded(face.convert("CMYK"), "JPEG", quality=95)
    # 16-bit greyscale PNG: v*257 must come back as v
    cases["grey16.png"] = encoded(Image.fromarray(np.asarray(grey).astype(np.uint16) * 257), "PNG")
    # RGBA with the left half fully transparent -> composited on white
    rgba = face.convert("RGBA")
    alpha = np.full((face.height, face.width), 255, np.uint8)
    alpha[:, : face.width // 2] = 0
    rgba.putalpha(Image.fromarray(alpha))
    cases["alpha.png"] = encoded(rgba, "PNG")
    # palette image with palette index 0 transparent
    pal = face.quantize(16)
    cases["palette.png"] = encoded(pal, "PNG", transparency=0)
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    out = {name: load_rgb(tmp_path / name) for name in cases}
    assert all(im.mode == "RGB" and im.size == face.size for im in out.values())

    assert np.abs(as_array(out["cmyk.jpg"]) - as_array(face)).mean() < 4
    assert np.array_equal(as_array(out["grey16.png"]), as_array(grey.convert("RGB")))
    left, right = as_array(out["alpha.png"])[:, : face.width // 2], as_array(out["alpha.png"])[:, face.width // 2:]
    assert (left == 255).all() and np.array_equal(right, as_array(face)[:, face.width // 2:])
    index = np.asarray(pal)
    expected = as_array(pal.convert("RGB"))
    expected[index == 0] = 255
    assert np.array_equal(as_array(out["palette.png"]), expected)


def test_more_odd_formats_decode(face, tmp_path):
    files = {
        "int32.tif": encoded(Image.fromarray(np.asarray(face.convert("L")).astype(np.int32) * 200), "TIFF"),
        "float.tif": encoded(Image.fromarray(np.asarray(face.convert("L"), np.float32) / 255.0), "TIFF"),
        "bilevel.png": encoded(face.convert("1"), "PNG"),
        "ycbcr.tif": encoded(face.convert("YCbCr"), "TIFF"),
        "la.png": encoded(face.convert("LA"), "PNG"),
        "lossless.webp": encoded(face, "WEBP", lossless=True),
        "gif-named.png": encoded(face.convert("P"), "GIF"),   # wrong extension: content decides
    }
    frames = [face.convert("P"), face.rotate(180).convert("P")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    files["animated.gif.png"] = buf.getvalue()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        im = load_rgb(tmp_path / name)
        assert im.mode == "RGB" and im.size == face.size, name
    assert np.array_equal(as_array(load_rgb(tmp_path / "lossless.webp")), as_array(face))
    # float [0, 1] and int32 (> 8 bit) greys are rescaled, not clipped to white/black
    for name in ("float.tif", "int32.tif"):
        assert 40 < as_array(load_rgb(tmp_path / name)).mean() < 215, name


def test_one_list_of_formats_every_extension_listed_and_read(face, tmp_path):
    """Every extension a folder scan takes is read (a picture saved in its format under it);
    every other file is named when the caller keeps a skip log, hidden ones aside."""
    registered = Image.registered_extensions()
    for ext in sorted(IMAGE_EXTENSIONS):
        fmt = registered[ext]
        im = face.convert("P") if fmt == "GIF" else face
        (tmp_path / f"face{ext}").write_bytes(encoded(im, fmt))
    (tmp_path / "face.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (tmp_path / ".hidden.png").write_bytes(encoded(face, "PNG"))
    listed = list_images(tmp_path)
    assert sorted(p.suffix for p in listed) == sorted(IMAGE_EXTENSIONS)   # .heic and hidden files left out
    assert {".gif", ".png", ".jpg", ".webp", ".bmp", ".tif"} <= IMAGE_EXTENSIONS
    for path in listed:
        assert load_rgb(path).size == face.size, path
    log = SkipLog()
    assert list_images(tmp_path, skipped=log) == listed
    ((path, reason),) = log.skipped
    assert Path(path).name == "face.heic" and FORMATS_TEXT in reason and ".heic" in reason
    assert set(FORMATS) == {"PNG", "JPEG", "WebP", "BMP", "TIFF", "GIF"}
    assert all(name.upper() in DECODERS for name in FORMATS)


# ------------------------------------------------------------ bad files
def bad_files(face: Image.Image, root: Path) -> dict[str, str]:
    """Write one file per failure case under ``root``; returns name -> expected reason."""
    png, jpeg, webp = encoded(face, "PNG"), encoded(face, "JPEG"), encoded(face, "WEBP")
    blobs = {
        "truncated.png": (png[: len(png) // 2], "truncated or corrupt"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated or corrupt"),
        "truncated.webp": (webp[: len(webp) // 2], "truncated or corrupt"),
        "zero.png": (b"", "empty file"),
        "notes.jpg": (b"these are my holiday notes, not a picture\n" * 20, "not a supported image"),
        "vector.png": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n", "not a supported image"),
        "pixel.png": (encoded(Image.new("RGB", (1, 1)), "PNG"), "too small: 1x1"),
        "strip.png": (encoded(Image.new("RGB", (16, 400)), "PNG"), "too elongated"),
        "bomb.png": (png_claiming(12_000, 12_000), "too large"),
        "megabomb.png": (png_claiming(100_000, 100_000), "too large"),
    }
    for name, (data, _) in blobs.items():
        (root / name).write_bytes(data)
    expected = {name: reason for name, (_, reason) in blobs.items()}
    os.mkdir(root / "folder.png")
    os.mkfifo(root / "pipe.png")                         # opening it would block forever
    (root / "dangling.png").symlink_to(root / "gone.png")
    (root / "loop.png").symlink_to(root / "loop.png")
    expected.update({"pipe.png": "not a regular file", "dangling.png": "broken symbolic link",
                     "loop.png": "symbolic link loop"})
    return expected


def test_bad_files_are_named_and_explained(face, tmp_path):
    expected = bad_files(face, tmp_path)
    listed = {p.name for p in list_images(tmp_path)}
    assert listed == set(expected)              # the folder named *.png is not listed as a file
    for name, reason in expected.items():
        with pytest.raises(ImageLoadError) as info:
            load_rgb(tmp_path / name)
        assert info.value.path == str(tmp_path / name) and reason in info.value.reason, (name, info.value)
    with pytest.raises(ImageLoadError, match="is a folder"):
        load_rgb(tmp_path / "folder.png")


def test_the_pixel_limit_is_the_one_stated(tmp_path):
    """Exactly MAX_PIXELS is accepted, one row more is refused, and far above it (where
    Pillow refuses by itself, at twice its own threshold) the message states the same limit."""
    w, h = 6235, 14351                       # w * h == MAX_PIXELS (5 * 29 * 43 * 113 * 127)
    assert w * h == MAX_PIXELS == Image.MAX_IMAGE_PIXELS
    cases = {"at_limit.png": (w, h), "one_row_over.png": (w, h + 1), "pillow_refuses.png": (3 * w, 3 * h)}
    reasons = {}
    for name, size in cases.items():
        # 1-bit greyscale: the accepted one allocates 1 byte per pixel before failing on the missing data
        (tmp_path / name).write_bytes(png_claiming(*size, bit_depth=1, colour_type=0))
        with pytest.raises(ImageLoadError) as info:
            load_rgb(tmp_path / name)
        reasons[name] = info.value.reason
    assert "too large" not in reasons["at_limit.png"] and "truncated" in reasons["at_limit.png"]
    assert reasons["one_row_over.png"].startswith(f"too large: {w}x{h + 1} = {w * (h + 1)} pixels, above the "
                                                  f"{MAX_PIXELS}-pixel limit")
    assert reasons["pillow_refuses.png"].startswith(f"too large: {9 * MAX_PIXELS} pixels, above the "
                                                    f"{MAX_PIXELS}-pixel limit")
    assert str(2 * MAX_PIXELS) not in reasons["pillow_refuses.png"]


def test_symlinked_folders_are_followed_but_loops_end(face, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    face.save(tmp_path / "a" / "b" / "x.png")
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a")       # loop
    (tmp_path / "elsewhere").mkdir()
    face.save(tmp_path / "elsewhere" / "y.png")
    (tmp_path / "a" / "linked").symlink_to(tmp_path / "elsewhere")  # a plain folder link
    log = SkipLog()
    found = list_images(tmp_path / "a", skipped=log)
    assert [p.name for p in found] == ["x.png", "y.png"]
    assert len(log) == 1 and "symbolic link loop" in log.skipped[0][1] and log.skipped[0][0].endswith("up")


def _as_nobody(fn):
    """Run ``fn()`` in a child process as user ``nobody`` (root may read anything, so
    permission checks need an ordinary user); returns its JSON-able result."""
    if os.geteuid() != 0:
        return fn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:   # child
        try:
            os.setgid(65534)
            os.setuid(65534)
            payload = json.dumps({"ok": fn()})
        except BaseException as e:  # noqa: BLE001 - report anything to the parent
            payload = json.dumps({"error": repr(e)})
        os.write(write_end, payload.encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks))
    assert "ok" in result, result
    return result["ok"]


@pytest.fixture
def world_readable_tmp():
    """A temp folder an unprivileged user can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="pf-perm-"))
    path.chmod(0o755)
    yield path
    for p in path.rglob("*"):
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(path)


def test_unreadable_files_and_folders_are_reported(face, world_readable_tmp):
    root = world_readable_tmp
    face.save(root / "ok.png")
    face.save(root / "secret.png")
    (root / "secret.png").chmod(0o000)
    (root / "locked").mkdir()
    face.save(root / "locked" / "inside.png")
    (root / "locked").chmod(0o000)

    def probe():
        log = SkipLog()
        names = [p.name for p in list_images(root, skipped=log)]
        reasons = {}
        for name in names:
            try:
                load_rgb(root / name)
                reasons[name] = "ok"
            except ImageLoadError as e:
                reasons[name] = e.reason
        return names, reasons, log.skipped

    names, reasons, folder_skips = _as_nobody(probe)
    assert names == ["ok.png", "secret.png"]
    assert reasons == {"ok.png": "ok", "secret.png": "permission denied; make the file readable"}
    assert [(Path(p).name, r) for p, r in folder_skips] == [("locked", "cannot list folder (Permission denied)")]


# ------------------------------------------------------------ whole commands
def mixed_dataset(root: Path, faces: Path, face: Image.Image, counts: dict[str, int]) -> dict[str, set[str]]:
    """real/fake x train/val/test: a few real faces each plus every bad-file case
    (in a ``junk`` subfolder); returns the bad paths per split."""
    bad: dict[str, set[str]] = {s: set() for s in counts}
    for kind, src in (("real", "ffhq"), ("fake", "tpdne-stylegan2")):
        for split, n in counts.items():
            d = root / kind / split
            d.mkdir(parents=True)
            for p in sorted((faces / src / split).glob("*.png"))[:n]:
                (d / p.name).symlink_to(p)
            # a usable face whose name is not valid UTF-8 (Latin-1 'é'), as in scraped folders
            (d / os.fsdecode(b"caf\xe9.png")).symlink_to(p)
            junk = d / "junk"
            junk.mkdir()
            bad[split] |= {str(junk / n) for n in bad_files(face, junk)}
    return bad


@pytest.fixture(scope="module")
def mixed_run(faces, face, tmp_path_factory, one_thread):
    """A tiny training run on folders where every split also holds all the bad-file cases."""
    root = tmp_path_factory.mktemp("mixed")
    bad = mixed_dataset(root / "data", faces, face, {"train": 12, "val": 6, "test": 6})
    rc = cli_main(["train", "--real", str(root / "data" / "real"), "--fake", str(root / "data" / "fake"),
                   "--model", "xception_block1", "--name", "mixed", "--load-size", "32", "--fine-size", "32",
                   "--batch-size", "8", "--max-epochs", "1", "--checkpoints-dir", str(root / "checkpoints"),
                   "--runs-dir", str(root / "runs")])
    return root, bad, rc


def test_train_skips_and_lists_bad_files(mixed_run):
    root, bad, rc = mixed_run
    assert rc == 0
    summary = json.loads((root / "checkpoints" / "mixed" / "train_summary.json").read_text())
    assert {s["path"] for s in summary["skipped"]} == bad["train"] | bad["val"]
    assert all(s["reason"] for s in summary["skipped"]) and summary["status"] == "finished"


def test_test_and_detect_skip_and_list_bad_files(mixed_run, capsys):
    root, bad, _ = mixed_run
    data, ckpt = root / "data", root / "checkpoints" / "mixed"
    rc = cli_main(["test", str(ckpt), "--real", str(data / "real"), "--fake", str(data / "fake"),
                   "--dataset-name", "mixed", "--which-epoch", "latest", "--results-dir", str(root / "results"),
                   "--device", "cpu"])
    assert rc == 0
    metrics = json.loads(next((root / "results").rglob("metrics.json")).read_text())
    assert {s["path"] for s in metrics["skipped"]} == bad["test"]
    assert metrics["metrics"]["after_softmax"]["n"] == 14
    scores = next((root / "results").rglob("scores.csv")).read_text(encoding="utf-8")
    assert "caf\\udce9.png" in scores                 # written escaped, not a crash

    capsys.readouterr()
    rc = cli_main(["detect", str(data / "real" / "test"), "--model", str(ckpt), "--which-epoch", "latest",
                   "--threshold", "0.5", "--format", "json", "--device", "cpu", "--faces", "aligned"])
    out = capsys.readouterr()
    assert rc == 0
    result = json.loads(out.out)
    assert len([r for r in result["results"] if r["error"] is None]) == 7
    reasons = {s["path"]: s["reason"] for s in result["skipped"]}
    assert set(reasons) == {p for p in bad["test"] if "/real/" in p}
    for path in reasons:
        assert f"skipped {path}" in out.err          # named as met, on stderr


def test_nothing_usable_exits_1(mixed_run, faces, face, tmp_path, capsys):
    root, _, _ = mixed_run
    data, ckpt = root / "data", root / "checkpoints" / "mixed"
    capsys.readouterr()
    # test: the fake class holds only junk
    rc = cli_main(["test", str(ckpt), "--real", str(data / "real"), "--fake", str(data / "fake" / "test" / "junk"),
                   "--dataset-name", "junkfakes", "--which-epoch", "latest",
                   "--results-dir", str(tmp_path / "results"), "--device", "cpu"])
    assert rc == 1 and "nothing usable" in capsys.readouterr().err
    # detect: nothing but junk
    rc = cli_main(["detect", str(data / "fake" / "test" / "junk"), "--model", str(ckpt), "--which-epoch", "latest",
                   "--threshold", "0.5", "--format", "json", "--device", "cpu"])
    out = capsys.readouterr()
    assert rc == 1 and len(json.loads(out.out)["skipped"]) == 13
    # train: every fake training image unreadable -> exit 1, and the summary lists them
    only_junk = tmp_path / "fake"
    (only_junk / "train").mkdir(parents=True)
    junk_names = bad_files(face, only_junk / "train")
    (only_junk / "val").symlink_to(data / "fake" / "val")
    rc = cli_main(["train", "--real", str(data / "real"), "--fake", str(only_junk), "--model", "xception_block1",
                   "--name", "nofakes", "--load-size", "32", "--fine-size", "32", "--batch-size", "8",
                   "--max-epochs", "1", "--checkpoints-dir", str(tmp_path / "ck"), "--runs-dir", str(tmp_path / "runs")])
    assert rc == 1 and "no readable fake training images" in capsys.readouterr().err
    summary = json.loads((tmp_path / "ck" / "nofakes" / "train_summary.json").read_text())
    assert summary["status"].startswith("failed")
    assert {str(only_junk / "train" / n) for n in junk_names} <= {s["path"] for s in summary["skipped"]}


def test_prepare_skips_bad_files_and_applies_exif(face, tmp_path, capsys):
    """``prepare`` (the first command users run on a scraped folder) reads through the
    same loader: bad files listed in summary.json, EXIF-rotated photos stored upright."""
    src = tmp_path / "scraped"
    src.mkdir()
    expected = bad_files(face, src)                   # includes a FIFO: must not hang
    (src / "upright.png").write_bytes(encoded(face, "PNG"))
    (src / "rotated.png").write_bytes(with_orientation(face, 6, "PNG"))
    out = tmp_path / "prepared"
    assert cli_main(["prepare", str(src), str(out), "--size", "64", "--split", "1,0,0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}.keys() == set(expected)
    upright, rotated = (as_array(Image.open(out / "train" / f"{n}.png")) for n in ("upright", "rotated"))
    assert np.array_equal(upright, rotated)
