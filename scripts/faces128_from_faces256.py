"""Rebuild the shared data's faces128 from its faces256 JPEGs, and check the pixels.

faces128 was made as Lanczos(256-px JPEG -> 128 px) -> PNG (../shared/data/README.md), so the
256-px JPEGs (45 MB) are enough to carry to a machine that lacks the data; at 128 px the two
256-px FFHQ folders (``ffhq`` and the "140k" set's ``ffhq-140k``) are one folder again, as
in faces128. ``--check`` compares every rebuilt image with the committed digests of the
original faces128 pixels (``scripts/faces128.pixels.tsv``) and fails on any difference, so a
machine whose image library resizes otherwise cannot pass its images off as the shared data.

    python scripts/faces128_from_faces256.py SRC256 DST128 --check scripts/faces128.pixels.tsv
    python scripts/faces128_from_faces256.py --digest ../shared/data/faces128 > scripts/faces128.pixels.tsv
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from PIL import Image

SIZE = 128
#: faces256 folders that are one faces128 folder (the "140k" FFHQ reals keep their own folder at
#: 256 px only because their resizer's fingerprint survives there)
MERGED = {"ffhq-140k": "ffhq"}


def pixel_digest(image: Image.Image) -> str:
    """First 8 hex digits of SHA-256 over the RGB bytes and size: equal digests, equal pixels."""
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()[:8]


def rebuild(src: Path, dst: Path) -> dict[str, str]:
    """Every ``src/<folder>/<split>/<name>.jpg`` as ``dst/<folder'>/<split>/<name>.png`` at 128 px
    (Lanczos); returns ``{"<folder'>/<split>/<name>": pixel digest}``. Refuses a non-empty ``dst``."""
    if dst.exists() and any(dst.iterdir()):
        raise SystemExit(f"{dst} is not empty; give a new folder")
    digests = {}
    for path in sorted(src.glob("*/*/*.jpg")):
        split, folder = path.parent.name, path.parent.parent.name
        name = f"{MERGED.get(folder, folder)}/{split}/{path.stem}"
        if name in digests:
            raise SystemExit(f"{path}: {name} comes from two faces256 folders")
        with Image.open(path) as im:
            small = im.convert("RGB").resize((SIZE, SIZE), Image.LANCZOS)
        out = dst / f"{name}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        small.save(out, format="PNG")
        digests[name] = pixel_digest(small)
    if not digests:
        raise SystemExit(f"no <folder>/<split>/*.jpg under {src}")
    return digests


def digest_folder(root: Path) -> dict[str, str]:
    """``{"<folder>/<split>/<name>": pixel digest}`` of a faces128 folder's PNGs."""
    out = {}
    for path in sorted(root.glob("*/*/*.png")):
        with Image.open(path) as im:
            out[f"{path.parent.parent.name}/{path.parent.name}/{path.stem}"] = pixel_digest(im)
    return out


def check(rebuilt: dict[str, str], reference_file: Path, subset: bool = False) -> int:
    """Compare with the reference digests; prints a line, returns how many images differ, are
    unknown or (unless ``subset``: a deliberately partial copy) are missing."""
    reference = dict(line.split("\t") for line in reference_file.read_text().split("\n") if line)
    differ = [n for n, d in rebuilt.items() if reference.get(n) != d]
    missing = [] if subset else sorted(reference.keys() - rebuilt.keys())
    print(f"faces128 rebuilt: {len(rebuilt)} images, {len(rebuilt) - len(differ)} pixel-identical to the shared "
          f"faces128 ({len(reference)} listed in {reference_file.name})"
          + (f"; {len(differ)} differ or are not listed, e.g. {', '.join(differ[:3])}" if differ else "")
          + (f"; {len(missing)} missing (a partial copy?), e.g. {', '.join(missing[:3])}" if missing else ""))
    return len(differ) + len(missing)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", nargs="?", help="faces256 folder (or a copy of it)")
    p.add_argument("dst", nargs="?", help="new folder for the 128-px PNGs")
    p.add_argument("--check", type=Path, metavar="TSV", help="pixel digests of the shared faces128 to compare with")
    p.add_argument("--subset", action="store_true", help="the source is a deliberate part of faces256 (tests)")
    p.add_argument("--digest", type=Path, metavar="FACES128", help="print the pixel digests of a faces128 folder")
    args = p.parse_args(argv)
    if args.digest:
        for name, digest in digest_folder(args.digest).items():
            print(f"{name}\t{digest}")
        return 0
    if not (args.src and args.dst):
        p.error("give SRC and DST (or --digest FACES128)")
    rebuilt = rebuild(Path(args.src), Path(args.dst))
    if args.check and check(rebuilt, args.check, args.subset):
        print("the rebuilt images are not the shared data's: results on them would not be comparable", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
