"""How long a grid's cell trains, before it runs (``experiment --plan``'s ``est_minutes``).

From the best source at hand, named in ``est_source``: ``table``, the cell's own
``train_minutes`` in the findings' ``cells.csv`` (a cell trained before, on the machine that
trained it); ``record``, its local record's training time; ``model``, the median over the
``cells.csv`` cells of the same model of their ``train_minutes`` scaled by this cell's epochs over
theirs; else none (``null``). Minutes are of the machine that measured them: a table's rows from a
GPU and from a CPU differ by an order of magnitude, so the estimate is for planning, not a promise.
"""
from __future__ import annotations

from statistics import median

from .grid import Cell

#: where an estimate came from (``est_source``), best first
SOURCES = ("table", "record", "model")


def estimate_minutes(cell: Cell, cells_rows: list[dict[str, str]], record: dict | None
                     ) -> tuple[float | None, str | None]:
    """``(minutes, source)`` of ``cell``'s training (see the module docstring); ``(None, None)``
    when nothing tells. ``cells_rows`` are ``cells.csv``'s rows, ``record`` the cell's local record."""
    own = [float(r["train_minutes"]) for r in cells_rows if r["key"] == cell.key and r.get("train_minutes")]
    if own:
        return own[0], SOURCES[0]
    if record and record.get("train_s"):
        return round(record["train_s"] / 60, 2), SOURCES[1]
    per_key = {r["key"]: float(r["train_minutes"]) * cell.train.max_epochs / float(r["epochs"])
               for r in cells_rows if r["model"] == cell.train.model and r.get("train_minutes") and r.get("epochs")}
    if per_key:
        return round(median(per_key.values()), 2), SOURCES[2]
    return None, None
