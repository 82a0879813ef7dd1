"""The numbers of the findings: table rows typed, pooled over seeds and test sets.

± is the sample standard deviation over seeds; [lo, hi] is the 95% bootstrap interval over
the test images of one seed's number (stratified percentile bootstrap, ``scoring.metrics.
bootstrap_ci``), averaged over the seeds: how far the test set alone could move it. A test
set's fakes are ``seen`` (the training folder), ``other-source`` (the same generator from
another source, claim d) or ``unseen`` (another generator); "unseen" means only the last.
Summaries use the :data:`AGGREGATION` aggregation (the seed's default) and AP with the fakes
as the positive class.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

AGGREGATION = "after_softmax"
#: the corruption of the clean test images
CLEAN = "none"
_NUMBERS = ("ap", "ap_lo", "ap_hi", "ap_real_positive", "roc_auc", "roc_auc_lo", "roc_auc_hi", "acc", "real_acc",
            "fake_acc", "best_val", "train_minutes", "top_share", "random_share", "val", "val_ap_vote",
            "val_ap_before_softmax", "val_ap_after_softmax", "lr", "train_loss", "seconds")
_INTEGERS = ("seed", "epochs", "load_size", "n", "best_epoch", "epoch", "top", "random", "assigned")


def typed(row: dict[str, Any]) -> dict[str, Any]:
    """A table row with numbers as numbers (rows read from CSV are strings); ``field`` stays
    ``"full"`` for a full-image model."""
    out = dict(row)
    for key in _NUMBERS:
        if key in out:
            out[key] = float(out[key]) if out[key] not in ("", None) else float("nan")
    for key in _INTEGERS:
        if key in out and out[key] not in ("", None):
            out[key] = int(float(out[key]))
    if "field" in out and out["field"] != "full":
        out["field"] = int(out["field"])
    return out


@dataclass(frozen=True)
class Stat:
    """Mean and sample sd over seeds, the seed count, and the mean of the seeds' 95% bootstrap bounds."""

    mean: float
    sd: float
    n: int
    lo: float = float("nan")
    hi: float = float("nan")

    def text(self, interval: bool = False) -> str:
        out = f"{self.mean:.3f} ± {self.sd:.3f}" if self.n > 1 else f"{self.mean:.3f}"
        if interval and self.lo == self.lo:
            out += f" [{self.lo:.2f}, {self.hi:.2f}]"
        return out


def stat(values: list[float], lows: list[float] | None = None, highs: list[float] | None = None) -> Stat:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    lo = statistics.fmean(lows) if lows and all(v == v for v in lows) else float("nan")
    hi = statistics.fmean(highs) if highs and all(v == v for v in highs) else float("nan")
    return Stat(statistics.fmean(values), sd, len(values), lo, hi)


def fmt(s: Stat | None, interval: bool = False) -> str:
    return "–" if s is None else s.text(interval)


def ordered(values) -> list:
    return list(dict.fromkeys(values))


def family(model: str) -> str:
    return model.split("_")[0]


def field_text(row: dict) -> str:
    """``43``, ``187 (> image)`` where the field is wider than the image, or ``full``."""
    if row["field"] == "full":
        return "full"
    return f"{row['field']} (> image)" if row["field"] > row["load_size"] else str(row["field"])


def summary_rows(rows: list[dict], corruption: str = CLEAN) -> list[dict]:
    return [r for r in rows if r["aggregation"] == AGGREGATION and r["corruption"] == corruption]


def pooled(rows: list[dict], metric: str, corruption: str = CLEAN) -> dict[tuple, Stat]:
    """``(model, train_fakes, test_set) -> Stat`` of ``metric`` (``ap`` or ``roc_auc`` carry intervals)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in summary_rows(rows, corruption):
        groups[(r["model"], r["train_fakes"], r["test_set"])].append(r)
    return {k: stat([r[metric] for r in v], [r.get(f"{metric}_lo", float("nan")) for r in v],
                    [r.get(f"{metric}_hi", float("nan")) for r in v]) for k, v in groups.items()}


def model_order(rows: list[dict]) -> list[str]:
    """Models by family, then receptive field (full-image model last)."""
    size = {r["model"]: r["field"] for r in rows}
    return sorted(ordered(r["model"] for r in rows),
                  key=lambda m: (family(m), size[m] == "full", size[m] if size[m] != "full" else 0))


def relation_mean(rows: list[dict], model: str, train_fakes: str, relation: str, metric: str = "ap",
                  corruption: str = CLEAN) -> Stat | None:
    """Per seed the mean of ``metric`` over the test sets of one ``relation`` (seen, other-source,
    unseen), then mean ± sd over seeds."""
    per_seed: dict[int, list[float]] = defaultdict(list)
    for r in summary_rows(rows, corruption):
        if r["model"] == model and r["train_fakes"] == train_fakes and r["relation"] == relation:
            per_seed[r["seed"]].append(r[metric])
    return stat([statistics.fmean(v) for v in per_seed.values()]) if per_seed else None


def regions_summary(region_rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """``test set -> region -> {top, random, top_sd, patches, cells}``: the fakes' shares, mean over cells."""
    shares: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    assigned: dict[str, dict[str, int]] = defaultdict(dict)
    for r in region_rows:
        if r["class"] != "fakes":
            continue
        shares[r["test_set"]][r["region"]]["top"].append(r["top_share"])
        shares[r["test_set"]][r["region"]]["random"].append(r["random_share"])
        assigned[r["test_set"]][r["key"]] = r["assigned"]
    return {d: {reg: {"top": statistics.fmean(v["top"]), "random": statistics.fmean(v["random"]),
                      "top_sd": statistics.stdev(v["top"]) if len(v["top"]) > 1 else 0.0,
                      "patches": sum(assigned[d].values()), "cells": len(assigned[d])} for reg, v in regs.items()}
            for d, regs in shares.items()}
