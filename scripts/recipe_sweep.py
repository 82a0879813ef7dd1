"""One cell of the training-recipe sweep (docs/recipe.md): train, then test on a suite.

    python scripts/recipe_sweep.py sweep/results.jsonl TAG [key=value ...]
        [--data ../shared/data/faces128] [--suite faces128] [--work sweep]
    python scripts/recipe_sweep.py sweep/results.jsonl --table    # the Markdown table

``key=value`` pairs override :class:`TrainConfig` fields (values are YAML, so
``init=kaiming``, ``lr=0.001``, ``flip=false``); ``real=`` and ``fake=`` take
comma-separated folder names under ``--data``. Training defaults to ``ffhq`` vs
``tpdne-stylegan2`` with ``patience=0`` (a fixed number of epochs). The model is
chosen on validation only (``bestval``); the suite's *test* split is reported.
One JSON line per cell is appended to the results file: the options, the
validation history, test AP / ROC-AUC (after_softmax; AP in the seed's convention,
real = positive: ``ap_real_positive``) per suite row, the real accuracy at 0.5 and the time taken.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import yaml

from patchforensics.core.config import from_dict
from patchforensics.evaluation.suite import load_suite, run_suite
from patchforensics.scoring.runtime import cpu_kind
from patchforensics.training.train import TrainConfig, train


TABLE_SETS = ("tpdne-stylegan2", "stylegan1", "generated-photos", "celebahq-vs-tpdne-stylegan2")


def table(records: list[dict]) -> str:
    """One row per recipe (cells that differ only in ``seed`` are pooled: mean ± sd)."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        opts = {k: v for k, v in r["options"].items() if k != "seed"}
        key = json.dumps({"data": Path(r["data"]).name, **opts}, sort_keys=True)
        groups.setdefault(key, []).append(r)

    def cell(values: list[float], digits: int = 3) -> str:
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"

    head = ("| cell | recipe | data | seeds | epochs | val AP (best) | " + " | ".join(f"test AP {s}" for s in TABLE_SETS)
            + " | train min | CPU |")
    lines = [head, "|" + "---|" * (8 + len(TABLE_SETS))]
    for key, rs in groups.items():
        opts = {k: v for k, v in json.loads(key).items() if k not in ("data", "real", "fake", "patience")}
        real, fake = rs[0]["options"]["real"], rs[0]["options"]["fake"]
        recipe = " ".join(f"{k}={v}" for k, v in opts.items() if k != "max_epochs") or "defaults"
        data = f"{Path(rs[0]['data']).name}: {'+'.join(real)} vs {'+'.join(fake)}"
        tests = [cell([r["test_ap"][s] for r in rs]) if all(s in r["test_ap"] for r in rs) else "–"
                 for s in TABLE_SETS]
        lines.append(f"| {', '.join(r['tag'] for r in rs)} | {recipe} | {data} | {len(rs)} | {opts.get('max_epochs', '')} | "
                     f"{cell([r['best_val'] for r in rs])} | " + " | ".join(tests)
                     + f" | {cell([r['train_s'] / 60 for r in rs], 1)} | {rs[0]['cpu']} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", help="JSON-lines file to append to")
    ap.add_argument("tag", nargs="?", help="cell name (checkpoint folder name)")
    ap.add_argument("overrides", nargs="*", help="TrainConfig key=value")
    ap.add_argument("--data", default="../shared/data/faces128")
    ap.add_argument("--suite", default="faces128")
    ap.add_argument("--work", default="sweep")
    ap.add_argument("--table", action="store_true", help="print the results file as a Markdown table")
    args = ap.parse_args()
    if args.table:
        print(table([json.loads(line) for line in Path(args.results).read_text().splitlines() if line.strip()]))
        return 0
    if not args.tag:
        ap.error("give a TAG for the cell (or --table)")

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
    suite_result = run_suite(result.checkpoint_dir, suite, results_dir=str(work / "results"), force=True,
                      progress=False)
    rows = {r["dataset"]: r for r in suite_result.rows if r["aggregation"] == "after_softmax"}
    record = {"tag": args.tag, "options": options, "data": str(data), "cpu": cpu_kind().split(" ")[0],   # the ISA part: the table's CPU column
              "best_epoch": result.best_epoch, "best_val": result.best_metric,
              "val_history": [round(h[cfg.val_metric], 4) for h in result.history],
              "test_ap": {k: round(r["ap_real_positive"], 4) for k, r in rows.items()},
              "test_auc": {k: round(r["roc_auc"], 4) for k, r in rows.items()},
              "test_real_acc": {k: round(r["real_acc"], 4) for k, r in rows.items()},
              "train_s": round(train_s, 1)}
    with open(args.results, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
