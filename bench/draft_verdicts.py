"""How many verdicts does decoding large JPEGs at a reduced size (JPEG draft mode) change?

``detect`` and ``serve`` decode a JPEG whose shorter side is at least twice
``DRAFT_MIN_SIDE`` at 1/2, 1/4 or 1/8 of its size (never below ``DRAFT_MIN_SIDE``). No photo of
``raw/wild-portraits`` is that large (the largest is ~0.1 MP), so for them nothing changes; to
see what the draft does to verdicts, each portrait is enlarged (Lanczos) until its shorter side
is ``--side`` px (default 2 x DRAFT_MIN_SIDE, the smallest photo drafted), saved as JPEG, and
screened twice by the bundled detector: decoded whole, and decoded as ``detect`` decodes it::

    python bench/draft_verdicts.py [--folder ../shared/data/raw/wild-portraits] [--json out.json]

Prints (and writes as JSON) the verdicts changed, the faces found in one run and not the other,
and the p(fake) differences.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from patchforensics.core.imageio import DRAFT_MIN_SIDE, list_images  # noqa: E402
from patchforensics.screening import decode  # noqa: E402
from patchforensics.screening.detect import DetectConfig, detect  # noqa: E402
from patchforensics.screening.detector import open_detector  # noqa: E402


def enlarge(paths: list[Path], out: Path, side: int) -> list[Path]:
    """Each photo Lanczos-enlarged so its shorter side is ``side`` px, as JPEG quality 90."""
    made = []
    for p in paths:
        im = Image.open(p).convert("RGB")
        f = side / min(im.size)
        im = im.resize((math.ceil(im.width * f), math.ceil(im.height * f)), Image.Resampling.LANCZOS)
        made.append(out / f"{p.stem}.jpg")
        im.save(made[-1], quality=90)
    return made


def screen(paths: list[Path], detector, draft: bool) -> tuple[dict, float]:
    """``{path: [(verdict, p_fake), ...]}`` from ``detect``, decoding whole unless ``draft``."""
    decode.DRAFT_MIN_SIDE = DRAFT_MIN_SIDE if draft else 10**9
    start = time.perf_counter()
    result = detect(DetectConfig(paths=[str(p) for p in paths], batch_size=4), progress=False,
                    engine=detector.engine)
    return {im.path: [(f.verdict, f.p_fake) for f in im.faces] for im in result.images}, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", default=str(REPO.parent / "shared" / "data" / "raw" / "wild-portraits"))
    ap.add_argument("--side", type=int, default=2 * DRAFT_MIN_SIDE)
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos (0 = all)")
    ap.add_argument("--json")
    args = ap.parse_args()
    paths = list_images(args.folder)[: args.limit or None]
    with tempfile.TemporaryDirectory(prefix="draft-verdicts-") as tmp, open_detector() as detector:
        big = enlarge(paths, Path(tmp), args.side)
        whole, t_whole = screen(big, detector, draft=False)
        drafted, t_draft = screen(big, detector, draft=True)
    changed, found_differs, diffs = [], [], []
    for path in whole:
        a, b = whole[path], drafted[path]
        if len(a) != len(b):
            found_differs.append(Path(path).name)
        changed += [Path(path).name for (va, _), (vb, _) in zip(a, b) if va != vb]
        diffs += [abs(pa - pb) for (_, pa), (_, pb) in zip(a, b)]
    d = np.array(diffs)
    out = {"photos": len(paths), "side": args.side, "faces_compared": len(d), "verdicts_changed": len(changed),
           "changed": changed, "face_count_differs": found_differs,
           "p_fake_abs_diff": {"median": float(np.median(d)), "p95": float(np.percentile(d, 95)),
                               "max": float(d.max())},
           "seconds": {"whole": round(t_whole, 1), "draft": round(t_draft, 1)}}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
