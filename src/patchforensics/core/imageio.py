"""Finding and decoding images robustly.

Every loader in the package goes through :func:`load_rgb`, so EXIF orientation,
odd modes (CMYK, 16-bit, palette, alpha) and broken files are handled the same
way in ``prepare``, ``train``, ``test`` and ``detect``. A file that cannot be
used raises :class:`ImageLoadError` with its path and a reason; callers record
it in a :class:`SkipLog` and go on. When nothing usable is left, a command
raises :class:`NoUsableImagesError` (the CLI exits with status 1).

What is refused, and why (see ``docs/reliability.md``):

- missing files, broken symlinks, symlink loops, unreadable permissions,
  folders, FIFOs and devices (opening a FIFO would block forever);
- zero-byte, truncated, corrupt and non-image files;
- formats outside :data:`DECODERS` (e.g. EPS, which Pillow hands to Ghostscript);
- images above :data:`MAX_PIXELS` (decompression bombs), below
  :data:`MIN_SIDE` pixels on a side, or more elongated than
  :data:`MAX_ASPECT_RATIO` (resizing the shorter side to ``load_size`` would
  blow such a strip up to gigapixels);
- for :func:`decode_rgb`'s callers (``detect``, ``serve``), images that would
  decode to more than their ``max_pixels`` budget (:data:`SCREEN_MAX_PIXELS`).

Every size is read from the file's header, before any pixel is decoded (Pillow
opens lazily). :func:`decode_rgb` also decodes a large JPEG at a reduced size
(:data:`DRAFT_MIN_SIDE`): the full-size pixels are never made.
"""
from __future__ import annotations

import errno
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

Image.init()   # register every Pillow plugin now: ``Image.open(formats=…)`` looks them up by name
#: The accepted image formats, the one list every reader, folder scan, error and page names:
#: each format's name, as people know it, and its Pillow decoders. All are in-process
#: decoders; EPS/PDF (external programs) and rarely-seen formats are left out. An animation
#: (GIF, WebP, APNG) or a multi-page TIFF gives its first frame.
FORMATS = {"PNG": ("PNG",), "JPEG": ("JPEG", "MPO"), "WebP": ("WEBP",), "BMP": ("BMP", "DIB"), "TIFF": ("TIFF",),
           "GIF": ("GIF",)}
#: Pillow decoders tried on every file, whatever its extension (MPO has none of its own: JPEG's opens it).
DECODERS = tuple(d for decoders in FORMATS.values() for d in decoders if d in Image.OPEN)
#: The file name extensions a folder scan takes for images: Pillow's for :data:`FORMATS`
#: (``.png``, ``.apng``, ``.jpg``, ``.jpeg``, ``.jpe``, ``.jfif``, ``.mpo``, ``.webp``, ``.bmp``,
#: ``.dib``, ``.tif``, ``.tiff``, ``.gif``).
IMAGE_EXTENSIONS = frozenset(ext for ext, fmt in Image.registered_extensions().items()
                             if any(fmt in decoders for decoders in FORMATS.values()))
#: :data:`FORMATS` in words, for messages: ``PNG, JPEG, WebP, BMP, TIFF or GIF``
FORMATS_TEXT = ", ".join(list(FORMATS)[:-1]) + " or " + list(FORMATS)[-1]
#: what is read of an animation or a multi-page file, in words
FIRST_FRAME_TEXT = "an animated GIF, WebP or PNG, or a multi-page TIFF: its first frame only"
#: Refuse images with more than this many pixels (decompression-bomb guard, about
#: 9459 x 9459; exactly this many is accepted). It is Pillow's default
#: ``Image.MAX_IMAGE_PIXELS``, above which Pillow only warns (silenced here); Pillow
#: itself refuses above twice that, and :func:`load_rgb` reports both with this limit.
MAX_PIXELS = 89_478_485
#: ``detect``'s and ``serve``'s default pixel budget (``--max-pixels``): an image that would decode
#: to more pixels is refused before decoding (one at ~12 bytes a pixel on the way through the face
#: finder: 25 MP ~ 0.3 GB). About 5000 x 5000, more than a 24-MP camera's frame; a larger JPEG
#: still fits, decoded at a reduced size (:data:`DRAFT_MIN_SIDE`).
SCREEN_MAX_PIXELS = 25_000_000
#: A JPEG whose shorter side is at least twice this is decoded by :func:`decode_rgb` (given
#: ``draft_side``) at the smallest of 1/2, 1/4 or 1/8 scale that keeps its shorter side at least
#: this many pixels (Pillow's draft mode: libjpeg scales the DCT, so the full-size pixels are never made).
DRAFT_MIN_SIDE = 2048
#: Refuse images whose shorter side is below this (nothing left to analyse).
MIN_SIDE = 16
#: Refuse images whose longer side is more than this many times the shorter.
MAX_ASPECT_RATIO = 20.0

_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageLoadError(Exception):
    """An image that cannot be used; ``str()`` names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class ImageTooLargeError(ImageLoadError):
    """An image over :data:`MAX_PIXELS` or a caller's pixel budget, refused from its header
    (``serve`` answers it with HTTP 413, not as a bad file)."""


class NoUsableImagesError(RuntimeError):
    """Every input of a run (or of a class it needs) was skipped: nothing left to do.

    The CLI reports it in one line and exits with status 1; the run's summary
    still lists the skipped files where one is written.
    """


@dataclass
class SkipLog:
    """Files skipped during a run, with the reason for each."""

    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, err: ImageLoadError) -> None:
        self.skipped.append((err.path, err.reason))

    def __len__(self) -> int:
        return len(self.skipped)

    def as_list(self) -> list[dict[str, str]]:
        return [{"path": p, "reason": r} for p, r in self.skipped]


def list_images(root: str | os.PathLike, recursive: bool = True,
                skipped: SkipLog | None = None) -> list[Path]:
    """Sorted image files (by extension, :data:`IMAGE_EXTENSIONS`; hidden files excluded)
    under ``root``, a folder or a single image file.

    Symlinked folders are followed, but each real folder is visited once, so a
    symlink loop ends the descent (it is reported, not followed forever). A
    sub-folder that cannot be listed (permissions) is added to ``skipped``
    when given, else reported with a warning. With ``skipped`` given, every other
    file passed over is added to it too, with the reason (another extension), except
    hidden ones (a name starting with ``.``, or under such a folder: ``.DS_Store``,
    ``._photo.jpg``, ``.git``), which are no one's photos. Raises ``FileNotFoundError``
    with a hint if ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        hint = " (it is a broken or looping symbolic link)" if root.is_symlink() else ""
        raise FileNotFoundError(f"{root} does not exist{hint}; pass an existing folder of images "
                                f"({FORMATS_TEXT})")
    if root.is_file():
        return [root]

    def report(path, reason: str) -> None:
        err = ImageLoadError(path, reason)
        if skipped is not None:
            skipped.add(err)
        else:
            warnings.warn(f"skipped {err}", stacklevel=3)

    def on_walk_error(e: OSError) -> None:
        report(e.filename, f"cannot list folder ({e.strerror or e})")

    def folder_id(path) -> tuple[int, int]:
        st = os.stat(path)
        return st.st_dev, st.st_ino

    found: list[Path] = []
    visited = {folder_id(root)}   # real folders already queued: each is listed once
    for dirpath, dirnames, filenames in os.walk(root, onerror=on_walk_error, followlinks=True):
        keep = []
        for d in sorted(dirnames) if recursive else ():
            sub = os.path.join(dirpath, d)
            try:
                sub_id = folder_id(sub)
            except OSError as e:
                report(sub, f"cannot open folder ({e.strerror or e})")
                continue
            if sub_id in visited:
                # an alias of a folder already listed is skipped quietly; a loop is worth a word
                if Path(os.path.realpath(dirpath)).is_relative_to(os.path.realpath(sub)):
                    report(sub, "symbolic link loop (points back to a parent folder); not followed")
                continue
            visited.add(sub_id)
            keep.append(d)
        dirnames[:] = keep
        hidden = any(part.startswith(".") for part in Path(dirpath).relative_to(root).parts)
        for name in filenames:
            if name.startswith("."):
                continue
            suffix = Path(name).suffix.lower()
            if suffix in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
            elif skipped is not None and not hidden:
                skipped.add(ImageLoadError(Path(dirpath) / name, not_an_image_name(suffix)))
    return sorted(found)


def not_an_image_name(suffix: str) -> str:
    """Why a folder scan passed a file over: its extension is none of :data:`FORMATS`'."""
    what = f"{suffix} is not the extension of" if suffix else "no extension naming"
    return f"not read: {what} an accepted format ({FORMATS_TEXT}); a file named on its own is read by its content"


def require_images(root: str | os.PathLike, hint: str = "") -> list[Path]:
    """:func:`list_images`, failing with ``ValueError`` (plus ``hint``) when ``root`` holds none."""
    paths = list_images(root)
    if not paths:
        raise ValueError(f"no images found under {root}{hint}")
    return paths

@dataclass(frozen=True)
class Decoded:
    """An image as :func:`decode_rgb` gives it: ``image`` 8-bit RGB, EXIF orientation applied, and
    ``file_size`` the ``(width, height)`` the file holds, upright; they differ when a large JPEG was
    decoded at a reduced size."""

    image: Image.Image
    file_size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """File px per decoded px, across and down (1 unless decoded at a reduced size)."""
        return self.file_size[0] / self.image.width, self.file_size[1] / self.image.height


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` to an 8-bit RGB PIL image, EXIF orientation applied.

    Alpha is composited on white; 16-bit and float images are scaled to 8
    bits; CMYK, palette and grey images are converted; animations give their
    first frame. Raises :class:`ImageLoadError` (never anything else for a
    bad file) with a reason a person can act on.
    """
    return decode_rgb(path).image


def decode_rgb(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, draft_side: int | None = None) -> Decoded:
    """:func:`load_rgb` within a pixel budget: an image that would decode to more than
    ``max_pixels`` is refused before decoding, and with ``draft_side`` a JPEG whose shorter side
    is at least twice that is decoded at the reduced size that keeps it at least ``draft_side``
    (:data:`DRAFT_MIN_SIDE`)."""
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns about odd metadata (and about large images, which
            # _check_geometry refuses with a clearer message); real errors raise.
            warnings.simplefilter("ignore")
            with Image.open(path, formats=DECODERS) as im:
                _check_geometry(path, *im.size)
                header = im.size
                if draft_side and im.format in ("JPEG", "MPO") and min(header) >= 2 * draft_side:
                    im.draft(im.mode, (draft_side, draft_side))    # sets the decoded size; decodes nothing
                _check_budget(path, header, im.size, max_pixels)
                im.load()
                decoded = im.size
                im = _apply_exif_orientation(im)
                rgb = _to_rgb(path, im)
                turned = im.size != decoded                 # a quarter turn swaps the file's sides too
                return Decoded(rgb if rgb is not im else im.copy(),   # copy: detach from the closing file
                               header[::-1] if turned else header)
    except ImageLoadError:
        raise
    except PermissionError:
        raise ImageLoadError(path, "permission denied; make the file readable") from None
    except UnidentifiedImageError:
        raise ImageLoadError(path, f"not a supported image (accepted: {FORMATS_TEXT})") from None
    except Image.DecompressionBombError as e:
        # Pillow refuses by itself above twice its warning threshold, before _check_geometry
        # sees the size; say it with this package's limit, not Pillow's doubled one
        claimed = re.search(r"\((\d+) pixels\)", str(e))
        raise ImageTooLargeError(path, _too_large(f"{claimed.group(1)} pixels" if claimed else "its size")) from None
    except MemoryError:
        raise ImageLoadError(path, "out of memory while decoding") from None
    except OSError as e:  # truncated or corrupt data, unsupported codec, I/O error
        raise ImageLoadError(path, f"truncated or corrupt ({e})") from None
    except Exception as e:  # noqa: BLE001 - a decoder choking on malformed data is a bad file, not a crash
        raise ImageLoadError(path, f"corrupt ({type(e).__name__}: {e})") from None


def _check_file(path: Path) -> None:
    """Refuse what is not a non-empty regular file, before any decoder touches it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageLoadError(path, f"broken symbolic link (target {os.readlink(path)} is missing)") from None
        raise ImageLoadError(path, "file not found") from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied (cannot reach the file)") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageLoadError(path, "symbolic link loop") from None
        raise ImageLoadError(path, f"cannot access ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageLoadError(path, "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageLoadError(path, "not a regular file (FIFO, socket or device)")
    if st.st_size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")


def _check_geometry(path: Path, w: int, h: int) -> None:
    if w * h > MAX_PIXELS:
        raise ImageTooLargeError(path, _too_large(f"{w}x{h} = {w * h} pixels"))
    if min(w, h) < MIN_SIDE:
        raise ImageLoadError(path, f"too small: {w}x{h} pixels; need at least {MIN_SIDE} on each side")
    if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        raise ImageLoadError(path, f"too elongated: {w}x{h} pixels, aspect ratio above "
                                   f"{MAX_ASPECT_RATIO:g}:1; crop it first")


def _check_budget(path: Path, header: tuple[int, int], decoded: tuple[int, int], max_pixels: int) -> None:
    """Refuse an image that would decode to more than ``max_pixels`` (``detect``'s and ``serve``'s
    ``--max-pixels``), in one line that says what to do."""
    if decoded[0] * decoded[1] > max_pixels:
        (w, h), reduced = header, " even at the reduced size it would be decoded at" * (decoded != header)
        raise ImageTooLargeError(path, f"too large to screen: {w}x{h} = {w * h} pixels, above the "
                                   f"{max_pixels}-pixel budget (--max-pixels){reduced}; downscale it first "
                                   "or raise --max-pixels")


def _too_large(size: str) -> str:
    return (f"too large: {size}, above the {MAX_PIXELS}-pixel limit (decompression-bomb guard); "
            "downscale it first")


def _apply_exif_orientation(im: Image.Image) -> Image.Image:
    """Rotate/flip per the EXIF orientation tag; malformed EXIF leaves the pixels as stored
    (as browsers do), since the pixel data itself is fine."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - any EXIF parsing failure
        return im


def _to_rgb(path: Path, im: Image.Image) -> Image.Image:
    try:
        return _convert_to_rgb(im)
    except ValueError as e:   # a mode Pillow cannot convert
        raise ImageLoadError(path, f"unsupported colour mode {im.mode} ({e})") from None


def _convert_to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in _HIGH_BIT_DEPTH_MODES:
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(arr.max()) if arr.size else 0.0
        if im.mode.startswith("I;16") or peak > 255:
            full_scale = 65535.0
        elif im.mode == "F" and peak <= 1.0:
            full_scale = 1.0      # float images stored in [0, 1]
        else:
            full_scale = 255.0
        arr = np.clip(arr / full_scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if "transparency" in im.info and im.mode in ("P", "L", "RGB"):
        im = im.convert("RGBA")
    if im.mode in _ALPHA_MODES:
        if im.mode == "La":
            im = im.convert("LA")
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im
