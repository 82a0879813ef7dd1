"""Time of finding faces (``FaceLandmarker.detect``) on a folder of photos, and faces found.

    python bench/face_finding.py                                  # ../shared/data/raw/wild-portraits
    python bench/face_finding.py FOLDER --repeats 5 --json out.json
    python bench/face_finding.py --src /tmp/old/src               # another version of the package

The photos are decoded first; each repeat times ``detect`` on every photo once, and the
best repeat is kept, in wall-clock and in CPU seconds (all threads; the CPU is shared and
its load moves wall-clock time more than CPU time). ``--src`` imports the
package from another tree (a version exported with ``git archive``), so that two versions
can be timed alternately on the same photos; run them a few times each, in turns.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=str(REPO.parent / "shared" / "data" / "raw" / "wild-portraits"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--src", default=str(REPO / "src"), help="the tree to import patchforensics from")
    ap.add_argument("--json", help="write the result here as well")
    args = ap.parse_args(argv)
    sys.path.insert(0, args.src)
    import numpy as np

    from patchforensics.core.imageio import load_rgb
    from patchforensics.data.align import FaceLandmarker

    photos = [np.asarray(load_rgb(p)) for p in sorted(Path(args.folder).iterdir())
              if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    times, cpu, faces = [], [], []
    with FaceLandmarker() as landmarker:
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            faces = [len(landmarker.detect(photo)) for photo in photos]
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    result = {"src": args.src, "folder": args.folder, "photos": len(photos), "faces": sum(faces),
              "faces_per_photo": {str(k): faces.count(k) for k in sorted(set(faces))},
              "seconds": [round(t, 3) for t in times],
              "best_ms_per_photo": round(1000 * min(times) / len(photos), 2),
              "cpu_seconds": [round(t, 3) for t in cpu],
              "best_cpu_ms_per_photo": round(1000 * min(cpu) / len(photos), 2),
              "load_average": round(os.getloadavg()[0], 2)}
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
