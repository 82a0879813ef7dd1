"""Finding and decoding images robustly.

Every loader in the package goes through :func:`load_rgb`, so EXIF orientation,
odd modes (CMYK, 16-bit, palette, alpha) and broken files are handled the same
way in ``prepare``, ``train``, ``test`` and ``detect``. A file that cannot be
used raises :class:`ImageLoadError` with its path and a reason; callers record
it in a :class:`SkipLog` and go on.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
#: Refuse images above this many pixels (decompression-bomb guard, ~16k × 16k).
MAX_PIXELS = 16384 * 16384


class ImageLoadError(Exception):
    """An image that cannot be used; ``str()`` names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


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


def list_images(root: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Sorted image files under ``root`` (a folder, or a single image file).

    Raises ``FileNotFoundError`` with a hint if ``root`` does not exist. Symlinked
    folders are not followed (that makes loops impossible); symlinked files are.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist; pass an existing folder of images "
                                f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
    if root.is_file():
        return [root]
    found: list[Path] = []
    walker = os.walk(root, onerror=None) if recursive else [(str(root), [], os.listdir(root))]
    for dirpath, dirnames, filenames in walker:
        dirnames.sort()
        for name in filenames:
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS and not name.startswith("."):
                found.append(Path(dirpath) / name)
    return sorted(found)


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode ``path`` to an 8-bit RGB PIL image, EXIF orientation applied.

    Alpha is composited on white; 16-bit images are scaled to 8 bits; CMYK,
    palette and grey images are converted. Raises :class:`ImageLoadError`.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageLoadError(path, f"image is {w}x{h} pixels, above the "
                                               f"{MAX_PIXELS}-pixel limit (decompression-bomb guard)")
                im.load()
                im = ImageOps.exif_transpose(im)
                return _to_rgb(im)
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied") from None
    except IsADirectoryError:
        raise ImageLoadError(path, "is a directory") from None
    except UnidentifiedImageError:
        size = path.stat().st_size if path.exists() else 0
        raise ImageLoadError(path, "empty file" if size == 0 else "not a recognised image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(path, f"too large (decompression-bomb guard): {e}") from None
    except OSError as e:  # truncated or corrupt data, unsupported codec
        raise ImageLoadError(path, f"cannot decode ({e})") from None
    except (ValueError, SyntaxError, EOFError, MemoryError, Image.UnidentifiedImageError) as e:
        raise ImageLoadError(path, f"cannot decode ({type(e).__name__}: {e})") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im
