"""Peak memory of evaluation against the number of images: it must stay flat.

    python bench/memory.py                         # N = 1k, 10k, 100k images
    python bench/memory.py --sizes 1000 10000 --json mem.json

Each N runs in a fresh process that pushes N images' worth of synthetic patch
logits (shaped like ``--model``'s output at ``--side`` px) through the scoring
code of ``patchforensics test`` (:class:`~patchforensics.scoring.metrics.ScoreAccumulator`
-> :class:`~patchforensics.scoring.metrics.Predictions` -> metrics) and reports its
peak resident memory. Per image only three scores, a label, an index and a
path are kept; per-patch AP comes from a streaming histogram whose
``ap_error_bound`` (the largest AP change that re-ordering patches inside a bin
could cause) is printed, together with the exact per-patch AP where N is small
enough to keep every patch score.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from patchforensics.scoring.metrics import ScoreAccumulator  # noqa: E402
from patchforensics.models import create_model  # noqa: E402

EXACT_LIMIT = 2_000_000   # at most this many patch scores are kept for the exact AP check


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux reports KiB


def current_rss_mb() -> float:
    """Resident memory now (Linux), as opposed to the peak so far."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def output_shape(model: str, side: int) -> tuple[int, int]:
    with torch.inference_mode():
        out = create_model(model).eval()(torch.zeros(1, 3, side, side))
    return tuple(out.shape[2:])


def run_one(n: int, h: int, w: int, batch: int, seed: int = 0) -> dict:
    """Score ``n`` synthetic images with ``(2, h, w)`` logit maps in this process;
    returns memory, time and metrics."""
    rss_before = current_rss_mb()
    g = torch.Generator().manual_seed(seed)
    acc = ScoreAccumulator()
    exact_scores, exact_labels = [], []
    keep_exact = n * h * w <= EXACT_LIMIT
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        b = min(batch, n - start)
        labels = torch.randint(0, 2, (b,), generator=g)
        # real images' patches lean real (+0.4 logit margin), fakes' lean fake, and each
        # image has its own offset, so neither image nor patch AP is perfect
        margin = (labels.float() * 2 - 1) * 0.4 + torch.randn(b, generator=g) * 0.5
        logits = torch.randn(b, 2, h, w, generator=g)
        logits[:, 1] += margin.view(-1, 1, 1)
        acc.add(logits, labels, [f"/data/images/{i:07d}.png" for i in range(start, start + b)],
                torch.arange(start, start + b))
        if keep_exact:
            exact_scores.append((logits[:, 1] - logits[:, 0]).reshape(-1).numpy())
            exact_labels.append(labels.repeat_interleave(h * w).numpy().astype(np.int8))
    preds = acc.result()
    metrics = preds.metrics()
    out = {"n_images": n, "patches_per_image": h * w, "seconds": time.perf_counter() - t0,
           "rss_after_imports_mb": rss_before, "rss_at_end_mb": current_rss_mb(), "peak_rss_mb": peak_rss_mb(),
           "patch_maps_if_kept_mb": n * 2 * h * w * 4 / 2 ** 20,
           "image_ap_after_softmax": metrics["after_softmax"]["ap"],
           "patch_ap_histogram": metrics["patch"]["ap"], "ap_error_bound": metrics["patch"]["ap_error_bound"]}
    if keep_exact:
        from sklearn.metrics import average_precision_score
        # fakes are the positive class, ranked by p(fake), i.e. by -(logit_real - logit_fake)
        exact = average_precision_score(np.concatenate(exact_labels) == 0, -np.concatenate(exact_scores))
        out["patch_ap_exact"] = float(exact)
        out["patch_ap_error"] = abs(float(exact) - metrics["patch"]["ap"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000, 100000])
    ap.add_argument("--model", default="xception_block2", help="whose output shape to simulate")
    ap.add_argument("--side", type=int, default=299, help="input side in px (sets patches per image)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--one", type=int, nargs=3, help=argparse.SUPPRESS)   # internal: N H W in this process
    args = ap.parse_args(argv)
    if args.one is not None:
        print(json.dumps(run_one(*args.one, args.batch_size)))
        return 0
    h, w = output_shape(args.model, args.side)
    results = []
    print(f"{'N':>8} {'patches/img':>11} {'RSS start MB':>12} {'RSS end MB':>10} {'peak RSS MB':>11} "
          f"{'maps if kept MB':>15} "
          f"{'s':>6} {'patch AP':>9} {'bound':>9} {'exact err':>9}")
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), str(h), str(w), "--batch-size", str(args.batch_size)]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        results.append(r)
        err = f"{r['patch_ap_error']:.2e}" if "patch_ap_error" in r else "-"
        print(f"{n:>8} {r['patches_per_image']:>11} {r['rss_after_imports_mb']:>12.0f} {r['rss_at_end_mb']:>10.0f} "
              f"{r['peak_rss_mb']:>11.0f} "
              f"{r['patch_maps_if_kept_mb']:>15.0f} "
              f"{r['seconds']:>6.1f} {r['patch_ap_histogram']:>9.5f} {r['ap_error_bound']:>9.2e} {err:>9}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "model": args.model, "side": args.side,
                                               "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
