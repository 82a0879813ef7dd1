"""One cell of the training-recipe sweep (docs/recipe.md): train, then test on a suite.

    python scripts/recipe_sweep.py sweep/results.jsonl TAG [key=value ...]
        [--data ../shared/data/faces128] [--suite faces128] [--work sweep]

``key=value`` pairs override :class:`TrainConfig` fields (values are YAML, so
``init=kaiming``, ``lr=0.001``, ``flip=false``); ``real=`` and ``fake=`` take
comma-separated folder names under ``--data``. Training defaults to ``ffhq`` vs
``tpdne-stylegan2`` with ``patience=0`` (a fixed number of epochs). The model is
chosen on validation only (``bestval``); the suite's *test* split is reported.
One JSON line per cell is appended to the results file: the options, the
validation history, test AP / ROC-AUC (after_softmax, the seed's convention,
real = positive) per suite row, the real accuracy at 0.5 and the time taken.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import yaml

from patchforensics.config import from_dict
from patchforensics.suite import load_suite, run_suite
from patchforensics.train import TrainConfig, train


def cpu_kind() -> str:
    """'avx512_bf16' or 'avx2' (or the machine name), from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    return "avx512_bf16" if "avx512_bf16" in flags else ("avx2" if "avx2" in flags else platform.machine())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", help="JSON-lines file to append to")
    ap.add_argument("tag", help="cell name (checkpoint folder name)")
    ap.add_argument("overrides", nargs="*", help="TrainConfig key=value")
    ap.add_argument("--data", default="../shared/data/faces128")
    ap.add_argument("--suite", default="faces128")
    ap.add_argument("--work", default="sweep")
    args = ap.parse_args()

    data, work = Path(args.data), Path(args.work)
    values = {"real": ["ffhq"], "fake": ["tpdne-stylegan2"], "patience": 0, "max_epochs": 30}
    for item in args.overrides:
        key, _, raw = item.partition("=")
        values[key] = raw.split(",") if key in ("real", "fake") else yaml.safe_load(raw)
    options = dict(values)
    values["real"] = [str(data / d) for d in values["real"]]
    values["fake"] = [str(data / d) for d in values["fake"]]
    values.update(name=args.tag, checkpoints_dir=str(work / "checkpoints"), runs_dir=str(work / "runs"))
    cfg = from_dict(TrainConfig, values)
    suite = load_suite(args.suite, data)

    start = time.perf_counter()
    result = train(cfg, force=True, progress=False)
    train_s = time.perf_counter() - start
    table = run_suite(result.checkpoint_dir, suite, results_dir=str(work / "results"), force=True,
                      progress=False)
    rows = {r["dataset"]: r for r in table.rows if r["aggregation"] == "after_softmax"}
    record = {"tag": args.tag, "options": options, "data": str(data), "cpu": cpu_kind(),
              "best_epoch": result.best_epoch, "best_val": result.best_metric,
              "val_history": [round(h[cfg.val_metric], 4) for h in result.history],
              "test_ap": {k: round(r["ap"], 4) for k, r in rows.items()},
              "test_auc": {k: round(r["roc_auc"], 4) for k, r in rows.items()},
              "test_real_acc": {k: round(r["real_acc"], 4) for k, r in rows.items()},
              "train_s": round(train_s, 1)}
    with open(args.results, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
