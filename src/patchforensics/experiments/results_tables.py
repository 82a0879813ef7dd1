"""The committed record of finished cells: three CSV tables in one folder (``docs/findings``).

::

    cells.csv     one row per cell x test set x corruption x aggregation: the cell's portable key,
                  what it trained (model, field, fakes, seed, epochs, crop), the test set and how its
                  fakes relate to the training fakes, AP / ROC-AUC with 95% bootstrap intervals,
                  the seed's AP, where and in which precision it trained, the data, the commit
    curves.csv    one row per cell x epoch: validation AP per aggregation, lr, training loss, seconds
    regions.csv   one row per cell x test set x class x face region: top / random patch counts (claim c)
    probe.csv     one row per probed model x test data x intervention x class: the mean change of
                  p(fake) with its interval, flips, counts (claim e; appended by ``probe --findings``)

The first three come from ``experiment --findings``, the last from ``probe --findings``. Rows
are only ever appended (under a lock, written atomically), and a row whose identity is
already there is not added again, so tables from two machines merge by union
(:meth:`FindingsTables.merge`). ``experiment --findings DIR`` appends a cell's rows when it
finishes and treats a cell whose rows are all there as finished: a grid whose cells are all
in the table trains nothing, on any machine (the key holds no absolute path, see
``grid.cell_key``). The figures and tables of ``patchforensics findings`` are computed from
these files alone; weights are not part of them.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import fileio
from ..models import create_model, is_patch_model, receptive_field
from .grid import Cell, Grid, relative_folder

CELL_COLUMNS = (
    "grid", "cell", "key", "model", "field", "load_size", "train_real", "train_fakes", "seed", "epochs", "crop",
    "best_epoch", "best_val", "test_set", "test_real", "test_fake", "relation", "corruption", "aggregation", "n",
    "ap", "ap_lo", "ap_hi", "ap_real_positive", "roc_auc", "roc_auc_lo", "roc_auc_hi", "acc", "real_acc",
    "fake_acc", "train_minutes", "device", "precision", "train_data", "test_data", "data_version", "commit",
    "finished")
CURVE_COLUMNS = ("key", "model", "train_fakes", "seed", "epochs", "epoch", "val_metric", "val", "val_ap_vote",
                 "val_ap_before_softmax", "val_ap_after_softmax", "lr", "train_loss", "seconds")
REGION_COLUMNS = ("key", "model", "train_fakes", "seed", "epochs", "test_set", "test_data", "class", "region",
                  "top", "random", "top_share", "random_share", "assigned", "topn")
PROBE_COLUMNS = ("key", "model", "field", "checkpoint", "real", "fake", "test_data", "intervention", "class", "n",
                 "skipped", "area", "mean_change", "lo", "hi", "flipped", "flagged_before", "flagged_after", "threshold",
                 "threshold_name", "seed", "device", "commit", "finished")
#: the columns that make a row unique in each table
TABLES = {
    "cells": (CELL_COLUMNS, ("key", "test_set", "test_data", "corruption", "aggregation")),
    "curves": (CURVE_COLUMNS, ("key", "epoch")),
    "regions": (REGION_COLUMNS, ("key", "test_set", "test_data", "class", "region")),
    "probe": (PROBE_COLUMNS, ("key", "real", "fake", "test_data", "intervention", "class", "seed")),
}
#: the measured columns of each table: a row of the same identity that differs in one of them is a
#: conflict (:meth:`FindingsTables.append` with ``refuse_conflicts``), not the same row again
MEASURED = {"probe": ("n", "skipped", "mean_change", "lo", "hi", "flipped", "threshold")}


def field_size(model: str, size: int) -> int | None:
    """Receptive-field side in pixels at ``size`` px; ``None`` for a full-image model."""
    if not is_patch_model(model):
        return None
    return int(receptive_field(create_model(model), size).size[0])


def crop_text(train_config: dict) -> str:
    """What a cell trained on: ``whole`` image, or ``random-<px>`` crops (``resized-<px>``: random resized)."""
    if train_config.get("random_resized_crop"):
        return f"resized-{train_config['fine_size']}"
    if train_config.get("random_crop") and train_config["fine_size"] < train_config["load_size"]:
        return f"random-{train_config['fine_size']}"
    return "whole" if train_config["fine_size"] == train_config["load_size"] else f"center-{train_config['fine_size']}"


@dataclass
class FindingsTables:
    """The three tables of one findings folder; reads are cached until the file changes."""

    folder: Path
    _cache: dict[str, tuple[tuple[int, int], list[dict]]] = field(default_factory=dict, repr=False)

    def path(self, table: str) -> Path:
        return Path(self.folder) / f"{table}.csv"

    def read(self, table: str) -> list[dict[str, str]]:
        """The rows of ``table`` (``cells``, ``curves`` or ``regions``) as strings; [] when absent."""
        path = self.path(table)
        try:
            st = path.stat()
        except FileNotFoundError:
            return []
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(table)
        if cached and cached[0] == stamp:
            return cached[1]
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        self._cache[table] = (stamp, rows)
        return rows

    def append(self, table: str, rows: list[dict[str, Any]], refuse_conflicts: bool = False) -> int:
        """Add the rows whose identity is not in ``table`` yet; returns how many were added. With
        ``refuse_conflicts``, a row whose identity is there with other :data:`MEASURED` values
        raises ``ValueError`` naming it, and nothing is added."""
        self._cache.pop(table, None)
        return append_keyed_csv(self.path(table), *TABLES[table], rows,
                                compare=MEASURED.get(table, ()) if refuse_conflicts else ())

    def merge(self, other: "FindingsTables") -> dict[str, int]:
        """Append every row of ``other``'s tables (e.g. those a GPU machine sent back) that this
        folder lacks; returns the rows added per table."""
        return {table: self.append(table, other.read(table)) for table in TABLES}

    # ------------------------------------------------------------ lookups
    def has_rows(self, grid: Grid, cell: Cell) -> bool:
        """Whether ``cells.csv`` holds the cell's rows for every suite dataset x corruption of the grid."""
        have = {(r["test_set"], r["test_data"], r["corruption"]) for r in self.read("cells") if r["key"] == cell.key}
        return all((d.name, grid.test_data[d.name], ",".join(c) or "none") in have
                   for s in grid.suites for d in s.datasets for c in s.corruptions)

    def has_regions(self, grid: Grid, cell: Cell) -> bool:
        """Whether ``regions.csv`` holds the cell's region counts on every suite dataset."""
        have = {(r["test_set"], r["test_data"]) for r in self.read("regions") if r["key"] == cell.key}
        return all((d.name, grid.test_data[d.name]) in have for s in grid.suites for d in s.datasets)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV file as strings; [] when it is absent."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def append_keyed_csv(path: str | Path, columns, identity, rows: list[dict[str, Any]], compare=()) -> int:
    """Append to the CSV at ``path`` the ``rows`` whose ``identity`` columns are not there yet;
    returns how many were added. A row whose identity is there but whose ``compare`` columns
    differ raises ``ValueError`` naming it (nothing is added). Holds ``<name>.lock`` while reading
    and rewriting (several workers append at once); the file is rewritten atomically."""
    if not rows:
        return 0
    path = Path(path)
    with fileio.locked(path.with_name(f"{path.name}.lock")):
        old = read_csv(path)
        have = {tuple(r.get(c, "") for c in identity): r for r in old}
        new = []
        for row in rows:
            text = {c: _text(row.get(c)) for c in columns}
            ident = tuple(text[c] for c in identity)
            there = have.get(ident)
            if there is not None and any(there.get(c, "") != text[c] for c in compare):
                differ = ", ".join(f"{c} {there.get(c, '')} (new {text[c]})" for c in compare
                                   if there.get(c, "") != text[c])
                raise ValueError(f"{path} already holds {dict(zip(identity, ident))} with other numbers: {differ}; "
                                 "remove that row first to replace it (nothing was added)")
            if there is None:
                have[ident] = text
                new.append(text)
        if new:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(old + new)
            fileio.write_text(path, buf.getvalue())
        return len(new)


def probe_rows(summary: dict) -> list[dict[str, Any]]:
    """The ``probe.csv`` rows of a probe run (its probe.json content, ``summary``); a number not
    measured (NaN in memory, ``null`` in probe.json) is an empty cell either way."""
    model, threshold = summary["model"], summary["threshold"]
    runtime = summary.get("runtime") or {}
    common = {"key": model["key"], "model": model["architecture"], "field": model["field"],
              "checkpoint": model["name"], "real": summary["real_folder"], "fake": summary["fake_folder"],
              "test_data": summary["test_data"], "threshold": threshold["p_fake"], "threshold_name": threshold["name"],
              "seed": summary["seed"], "device": f"{runtime.get('device', '')}: {runtime.get('cpu', '')}",
              "commit": short_commit(summary.get("commit")), "finished": summary.get("finished", "")}
    measured = ("intervention", "class", "n", "skipped", "area", "mean_change", "lo", "hi", "flipped", "flagged_before",
                "flagged_after")
    return [{**common, **{c: None if r.get(c) != r.get(c) else r.get(c) for c in measured}} for r in summary["rows"]]


def short_commit(commit: str | None) -> str:
    """The first 12 hex digits of a commit, keeping a ``-dirty`` mark."""
    if not commit:
        return ""
    head = commit.removesuffix("-dirty")
    return head[:12] + ("-dirty" if head != commit else "")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if value == value else "nan"
    return str(value)


# ------------------------------------------------------------ a cell's rows
def cell_rows(grid: Grid, cell: Cell, record: dict) -> dict[str, list[dict[str, Any]]]:
    """The rows of a finished cell (its record, written by the runner) for each table."""
    tc = record["train_config"]
    train_fakes = [relative_folder(f, grid.data_root) for f in tc["fake"]]
    common = {"key": cell.key, "model": tc["model"], "train_fakes": "+".join(train_fakes), "seed": tc["seed"],
              "epochs": tc["max_epochs"]}
    size = field_size(tc["model"], tc["load_size"])
    tests = {d.name: d for s in grid.suites for d in s.datasets}
    runtime = record.get("runtime", {})
    cells = []
    for r in record["rows"]:
        test_fake = relative_folder(tests[r["dataset"]].fake, grid.data_root)
        cells.append({
            **common, "grid": grid.config.name, "cell": cell.name, "field": size if size is not None else "full",
            "load_size": tc["load_size"],
            "train_real": "+".join(relative_folder(f, grid.data_root) for f in tc["real"]),
            "crop": crop_text(tc), "best_epoch": record.get("best_epoch"), "best_val": record.get("best_val"),
            "test_set": r["dataset"], "test_real": relative_folder(tests[r["dataset"]].real, grid.data_root),
            "test_fake": test_fake, "relation": grid.relation(train_fakes, test_fake),
            **{k: r.get(k) for k in ("corruption", "aggregation", "n", "ap", "ap_lo", "ap_hi", "ap_real_positive",
                                     "roc_auc", "roc_auc_lo", "roc_auc_hi", "acc", "real_acc", "fake_acc")},
            "train_minutes": round(record.get("train_s", 0.0) / 60, 2), "device": runtime.get("machine", ""),
            "precision": runtime.get("precision", ""), "train_data": cell.train_data,
            "test_data": grid.test_data[r["dataset"]], "data_version": grid.data_release or "",
            "commit": short_commit(record.get("commit")),
            "finished": record.get("finished", "")})
    curves = [{**common, "epoch": h["epoch"], "val_metric": tc["val_metric"], "val": h.get(tc["val_metric"]),
               **{f"val_ap_{a}": v for a, v in h.get("val_ap", {}).items()}, "lr": h.get("lr"),
               "train_loss": h.get("train_loss"), "seconds": h.get("seconds")}
              for h in record.get("history", [])]
    regions = []
    for dataset, path in record.get("regions", {}).items():
        summary = json.loads(Path(path).read_text())
        for cls, c in summary["classes"].items():
            for region, k in c["counts"].items():
                regions.append({**common, "test_set": dataset, "test_data": grid.test_data[dataset], "class": cls,
                                "region": region, "top": k["top"], "random": k["random"],
                                "top_share": k["top_share"], "random_share": k["random_share"],
                                "assigned": c["assigned"], "topn": grid.config.regions.topn
                                if grid.config.regions else ""})
    return {"cells": cells, "curves": curves, "regions": regions}


def write_cell(tables: FindingsTables, grid: Grid, cell: Cell, record: dict) -> dict[str, int]:
    """Append a finished cell's rows to the tables; returns the rows added per table."""
    rows = cell_rows(grid, cell, record)
    return {table: tables.append(table, part) for table, part in rows.items()}
