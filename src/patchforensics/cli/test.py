"""``patchforensics test``."""
from __future__ import annotations

import argparse

from .options import add_dataset_options, add_fast_path_options, dataset_kwargs

FAST_PATH_KEYS = ("channels_last", "bf16", "fold_bn", "backend", "threads")


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="evaluate a checkpoint on one real/fake dataset",
                       description="Per-aggregation (vote, before_softmax, after_softmax) and per-patch AP, "
                                   "accuracy, ROC-AUC; written to results/<name>/<partition>/epoch_<which>/<dataset>/")
    add_dataset_options(p, force_help="recompute even if results are up to date")
    add_fast_path_options(p, training=False)
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """The :class:`~patchforensics.evaluation.evaluate.TestConfig` of parsed ``test`` options."""
    from ..evaluation.evaluate import TestConfig

    return TestConfig(**dataset_kwargs(args), **{k: getattr(args, k) for k in FAST_PATH_KEYS if hasattr(args, k)})


def run(args: argparse.Namespace) -> int:
    from ..core.ranks import is_main_process
    from ..evaluation.evaluate import run_test
    from .options import print_skipped, progress_enabled

    cfg = build_config(args)
    result, out_dir = run_test(cfg, progress=progress_enabled())
    if not is_main_process():   # under torchrun, rank 0 reports for all
        return 0
    print(format_metrics(result["metrics"]))
    print_skipped(result["skipped"], "unreadable files")
    print(f"results in {out_dir}")
    return 0


def format_metrics(metrics: dict) -> str:
    rows = ["aggregation      AP      acc     ROC-AUC  real_acc fake_acc  n"]
    for agg, m in metrics.items():
        rows.append(f"{agg:<15} {m['ap']:.4f}  {m['acc']:.4f}  {m['roc_auc']:.4f}   {m['real_acc']:.4f}   "
                    f"{m['fake_acc']:.4f}  {m['n']}")
    calibrated = metrics.get("after_softmax", {})
    for name in (k[4:] for k in calibrated if k.startswith("acc@")):   # thresholds stored by calibrate
        rows.append(f"after_softmax at threshold {name}: acc {calibrated['acc@' + name]:.4f}  "
                    f"real_acc {calibrated['real_acc@' + name]:.4f}  fake_acc {calibrated['fake_acc@' + name]:.4f}")
    return "\n".join(rows)
