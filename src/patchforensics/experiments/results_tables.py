"""The committed record of finished cells: three CSV tables in one folder (``docs/findings``).

::

    cells.csv     one row per cell x test set x corruption x aggregation: the cell's portable key,
                  what it trained (model, field, fakes, seed, epochs, crop), the test set and how its
                  fakes relate to the training fakes, AP / ROC-AUC with 95% bootstrap intervals,
                  the seed's AP, where and in which precision it trained, the data, the commit
    curves.csv    one row per cell x epoch: validation AP per aggregation, lr, training loss, seconds
    regions.csv   one row per cell x test set x class x face region: top / random patch counts (claim c)

Rows are appended (under a lock, written atomically), and a row whose identity is already
there is not added again, so tables from two machines merge by union
(:meth:`FindingsTables.merge`). One key never holds rows of two trainings: a merged row with
the identity of a committed one but other measured values (:data:`MEASURED`) is refused naming
its key unless ``replace``, which replaces every row of that key; a cell trained again replaces
every row of its key together (``write_cell(..., replace=True)``). ``experiment --findings
DIR`` appends a cell's rows when it finishes and treats a cell whose rows are all there as
finished: a grid whose cells are all in the table trains nothing, on any machine (the key
holds no absolute path, see ``grid.cell_key``). The figures and tables of ``patchforensics findings`` are computed from
these files alone; weights are not part of them.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection

from ..core import fileio
from ..core.config import ConfigError
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
#: the columns that make a row unique in each table
TABLES = {
    "cells": (CELL_COLUMNS, ("key", "test_set", "test_data", "corruption", "aggregation")),
    "curves": (CURVE_COLUMNS, ("key", "epoch")),
    "regions": (REGION_COLUMNS, ("key", "test_set", "test_data", "class", "region")),
}

#: the columns of each table that hold what a training measured: a row whose identity is committed
#: with other values here is of another training (the grid and cell names, commit and time may differ)
MEASURED = {
    "cells": ("best_epoch", "best_val", "n", "ap", "ap_lo", "ap_hi", "ap_real_positive", "roc_auc", "roc_auc_lo",
              "roc_auc_hi", "acc", "real_acc", "fake_acc"),
    "curves": ("val", "val_ap_vote", "val_ap_before_softmax", "val_ap_after_softmax", "lr", "train_loss"),
    "regions": ("top", "random", "top_share", "random_share", "assigned"),
}


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

    def append(self, table: str, rows: list[dict[str, Any]], replace_keys: Collection[str] = ()) -> int:
        """Add the rows whose identity is not in ``table`` yet, after dropping every row of
        ``replace_keys``; returns how many were added."""
        self._cache.pop(table, None)
        return append_keyed_csv(self.path(table), *TABLES[table], rows, drop=("key", set(replace_keys)))

    def clashes(self, other: "FindingsTables") -> dict[str, str]:
        """The keys of which ``other`` holds rows of another training: key -> the first difference, in words."""
        found: dict[str, str] = {}
        for table, (_, identity) in TABLES.items():
            mine = {tuple(r.get(c, "") for c in identity): r for r in self.read(table)}
            for row in other.read(table):
                have = mine.get(tuple(row.get(c, "") for c in identity))
                diff = next((c for c in MEASURED[table] if have and have.get(c, "") != row.get(c, "")), None)
                if diff and row["key"] not in found:
                    found[row["key"]] = (f"{table}.csv {'/'.join(row.get(c, '') for c in identity[1:])}: {diff} "
                                         f"{row.get(diff)} vs committed {have.get(diff)}")
        return found

    def check_merge(self, other: "FindingsTables") -> None:
        """Refuse (``ConfigError`` naming the key) ``other``'s rows of another training under a committed key."""
        clashes = self.clashes(other)
        if clashes:
            key, first = next(iter(clashes.items()))
            more = f" and {len(clashes) - 1} more key(s)" if len(clashes) > 1 else ""
            raise ConfigError(f"--add {other.folder}: key {key}{more} holds rows of another training than the "
                              f"committed ones ({first}); pass --replace to replace every row of "
                              f"{'those keys' if more else 'that key'} with {other.folder}'s, or leave it out")

    def merge(self, other: "FindingsTables", replace: bool = False) -> dict[str, int]:
        """Append every row of ``other``'s tables (e.g. those a GPU machine sent back) that this
        folder lacks; returns the rows added per table. Rows of another training under a committed
        key are refused (:meth:`check_merge`) unless ``replace``: then every row of that key here
        is replaced by ``other``'s."""
        if not replace:
            self.check_merge(other)
        clashes = self.clashes(other) if replace else {}
        return {table: self.append(table, other.read(table), clashes) for table in TABLES}

    # ------------------------------------------------------------ lookups
    def has_rows(self, grid: Grid, cell: Cell) -> bool:
        """Whether ``cells.csv`` holds the cell's rows for every suite dataset x corruption of the grid."""
        return not self.missing_tests(grid, cell)

    def missing_tests(self, grid: Grid, cell: Cell) -> set[tuple[str, str]]:
        """The grid's ``(suite dataset, corruption)`` tests of which ``cells.csv`` lacks the cell's rows."""
        have = {(r["test_set"], r["test_data"], r["corruption"]) for r in self.read("cells") if r["key"] == cell.key}
        return {(d.name, ",".join(c) or "none") for s in grid.suites for d in s.datasets for c in s.corruptions
                if (d.name, grid.test_data[d.name], ",".join(c) or "none") not in have}

    def holds_key(self, key: str) -> bool:
        """Whether any table holds a row of ``key``."""
        return any(r["key"] == key for table in TABLES for r in self.read(table))

    def trained_as(self, key: str, best_epoch: Any, best_val: Any) -> bool:
        """Whether ``cells.csv``'s rows of ``key`` are of the training whose best epoch and validation
        value are these (a checkpoint's ``train_summary.json``): that training's rows, not another's."""
        rows = [r for r in self.read("cells") if r["key"] == key]
        return bool(rows) and all((r["best_epoch"], r["best_val"]) == (_text(best_epoch), _text(best_val))
                                  for r in rows)

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


def append_keyed_csv(path: str | Path, columns, identity, rows: list[dict[str, Any]],
                     drop: tuple[str, Collection[str]] = ("", ())) -> int:
    """Append to the CSV at ``path`` the ``rows`` whose ``identity`` columns are not there yet;
    returns how many were added. ``drop=(column, values)`` first removes the rows whose ``column``
    is one of ``values`` (a key's rows replaced together). Holds ``<name>.lock`` while reading and
    rewriting (several workers append at once); the file is rewritten atomically."""
    column, values = drop
    if not rows and not values:
        return 0
    path = Path(path)
    with fileio.locked(path.with_name(f"{path.name}.lock")):
        old = read_csv(path)
        kept = [r for r in old if r.get(column) not in values] if values else old
        have = {tuple(r.get(c, "") for c in identity) for r in kept}
        new = []
        for row in rows:
            text = {c: _text(row.get(c)) for c in columns}
            ident = tuple(text[c] for c in identity)
            if ident not in have:
                have.add(ident)
                new.append(text)
        if new or len(kept) < len(old):
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept + new)
            fileio.write_text(path, buf.getvalue())
        return len(new)


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


def write_cell(tables: FindingsTables, grid: Grid, cell: Cell, record: dict, replace: bool = False
               ) -> dict[str, int]:
    """Append a finished cell's rows to the tables; returns the rows added per table. ``replace``:
    its key's rows of every table (another training's) are dropped first, so the key holds this
    training's rows alone."""
    rows = cell_rows(grid, cell, record)
    return {table: tables.append(table, rows[table], [cell.key] if replace else ()) for table in TABLES}
