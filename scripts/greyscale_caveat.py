"""The greyscale caveat's numbers (docs/detect.md, "Greyscale photos"), with the bundled detector.

    PYTHONPATH=src python scripts/greyscale_caveat.py [../shared/data]

1. How the detector's catch falls with colour: every shared test fake it flags in colour,
   desaturated step by step (PIL ``ImageEnhance.Color`` 0.8 ... 0.3, and greyscale), each version
   binned by its mean chroma (``faces.mean_chroma``): the share still flagged, StyleGAN folders
   apart from generated-photos (whose flat backdrops it flags in any colour).
2. What the caveat (mean chroma under ``GREYSCALE_MAX_CHROMA``) catches: the shared real test
   faces (ffhq, celebahq), the wild portraits (faces found as ``detect`` does), the raw 1024-px
   StyleGAN2 fakes in colour and in greyscale; how many real test faces other cuts would mark.
3. Toned monochrome: the flagged StyleGAN test fakes toned sepia, and their mean chroma.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from patchforensics.screening.detector import open_detector
from patchforensics.screening.faces import GREYSCALE_MAX_CHROMA, mean_chroma

FAKES = ("tpdne-stylegan2", "stylegan2-nvidia", "stylegan1", "generated-photos")
REALS = ("ffhq", "celebahq")
STEPS = (0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.0)
CUTS = (6, 8, 10, 12)
BINS = (0, 4, 6, 8, 10, 12, 14, 17, 20, 256)


def test_faces(root: Path, folder: str) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted((root / "faces128" / folder / "test").glob("*.png"))]


def sepia(image: Image.Image) -> Image.Image:
    """A sepia-toned copy: the luminance times a warm brown (a tinted monochrome photo)."""
    grey = np.asarray(image.convert("L"), dtype=np.float64)[..., None]
    return Image.fromarray(np.uint8(np.clip(grey * np.array([1.07, 0.74, 0.43]), 0, 255)))


def catch_by_chroma(detector, root: Path) -> None:
    thr = detector.p_fake_threshold
    rows = []                                    # (folder, chroma, still flagged)
    for folder in FAKES:
        faces = test_faces(root, folder)
        flagged = [im for im, f in zip(faces, detector.analyze(faces)) if f.p_fake >= thr]
        for step in STEPS:
            faded = [ImageEnhance.Color(im).enhance(step) for im in flagged]
            rows += [(folder, mean_chroma(im), f.p_fake >= thr) for im, f in zip(faded, detector.analyze(faded))]
        toned = [sepia(im) for im in flagged]
        print(f"{folder}: {len(flagged)} of {len(faces)} flagged in colour; in greyscale "
              f"{sum(k for f, c, k in rows[-len(flagged):])} of them; toned sepia "
              f"{sum(f.p_fake >= thr for f in detector.analyze(toned))} "
              f"(median mean chroma {np.median([mean_chroma(im) for im in toned]):.1f})")
    print("| mean chroma | StyleGAN fakes still flagged | generated-photos still flagged |")
    print("|---|---|---|")
    for lo, hi in zip(BINS, BINS[1:]):
        cells = []
        for gp in (False, True):
            kept = [k for f, c, k in rows if lo <= c < hi and (f == "generated-photos") == gp]
            cells.append(f"{np.mean(kept):.0%} ({len(kept)})" if kept else "-")
        print(f"| {lo}-{hi} | {cells[0]} | {cells[1]} |")


def caveat_counts(detector, root: Path) -> None:
    images = [im for folder in REALS for im in test_faces(root, folder)]
    reals = detector.analyze(images)
    chroma = np.array([mean_chroma(im) for im in images])
    print(f"shared real test faces ({', '.join(REALS)}): {sum(bool(f.caveat) for f in reals)} of {len(reals)} "
          f"with the caveat (mean chroma < {GREYSCALE_MAX_CHROMA:g}); mean chroma median {np.median(chroma):.1f}, "
          f"1st percentile {np.percentile(chroma, 1):.1f}; under other cuts: "
          + ", ".join(f"{int((chroma < cut).sum())} under {cut}" for cut in CUTS))
    photos = sorted((root / "raw" / "wild-portraits").glob("*.jpg"))
    found = detector.screen_paths(photos, "find")
    faces = [f for s in found for f in s.faces]
    stored_grey = sum(np.ptp(np.asarray(Image.open(p).convert("RGB")), axis=2).max() == 0 for p in photos)
    print(f"wild portraits: {sum(bool(f.caveat) for f in faces)} of {len(faces)} faces, "
          f"{sum(any(f.caveat for f in s.faces) for s in found)} of {len(photos)} photos "
          f"({stored_grey} photos are stored greyscale, R = G = B)")
    raw = [Image.open(p).convert("RGB") for p in sorted((root / "raw" / "tpdne-1024").glob("*.jpg"))]
    for name, images in (("colour", raw), ("greyscale", [im.convert("L").convert("RGB") for im in raw])):
        faces = [f for s in detector.screen(images, "find") for f in s.faces]
        print(f"raw tpdne-1024 in {name}: {sum(f.is_fake for f in faces)} of {len(faces)} called fake, "
              f"{sum(bool(f.caveat) for f in faces)} with the caveat")


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    with open_detector() as detector:
        catch_by_chroma(detector, root)
        caveat_counts(detector, root)


if __name__ == "__main__":
    main()
