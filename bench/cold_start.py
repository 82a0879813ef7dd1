"""Cold start of ``detect``: the wall time of ``python -m patchforensics detect PHOTO`` in a fresh
process, for one or more source trees, runs interleaved so that load from other processes hits
each alike.

    python bench/cold_start.py [--photo P] [--runs 7] [--src before=OTHER/src after=src] [--json out.json]

Each ``--src NAME=DIR`` runs the package from ``DIR`` (default: this checkout's ``src`` alone).
Prints every run's seconds and the median per tree; the 1-minute load average is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PORTRAITS = REPO.parent / "shared" / "data" / "raw" / "wild-portraits"


def one_run(src: Path, photo: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "patchforensics", "detect", str(photo), "--format", "json"], env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photo", default=str(sorted(PORTRAITS.glob("*.jpg"))[0]))
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--src", nargs="+", default=[f"this={REPO / 'src'}"], metavar="NAME=DIR")
    ap.add_argument("--json")
    args = ap.parse_args()
    trees = dict(item.split("=", 1) for item in args.src)
    one_run(Path(next(iter(trees.values()))), Path(args.photo))        # page cache warm for every tree alike
    seconds: dict[str, list[float]] = {name: [] for name in trees}
    loads = []
    for _ in range(args.runs):
        for name, src in trees.items():
            loads.append(os.getloadavg()[0])
            seconds[name].append(round(one_run(Path(src), Path(args.photo)), 2))
    out = {"photo": Path(args.photo).name, "runs": args.runs, "load_avg_1min": [min(loads), max(loads)],
           "seconds": seconds, "median_s": {k: statistics.median(v) for k, v in seconds.items()}}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
