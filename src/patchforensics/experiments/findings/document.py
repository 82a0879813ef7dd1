"""A findings folder written from table rows, and the generated blocks of a document filled from it.

::

    table.csv, table.md      the rows (cell × test set × corruption × aggregation)
    ap_vs_rf.png             AP and ROC-AUC against receptive field, mean ± sd over seeds, one line
                             per test set (one training set, several models)
    cross_generator.png      AP per train set × test set, per model (several training sets)
    curves.png               validation AP per epoch, mean over seeds, per model
    regions.png              fakes' top patches vs random patches per face region, per test set
    tables.md                the summary tables in Markdown, each under a ``<!-- table: ID -->`` line
    experiment.json          all of the above for the report

The summary figures and tables use the ``after_softmax`` aggregation; the long table has every
aggregation and both APs. Nothing in the folder depends on when it was written (the
``finished`` of experiment.json is its newest cell's), so redrawing unchanged rows changes no byte.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

from ...core import fileio
from ..results_tables import CELL_COLUMNS
from .figures import plot_ap_vs_rf, plot_cross, plot_curves, plot_regions
from .stats import AGGREGATION, model_order, ordered, regions_summary, typed
from .tables import (auc_table, cross_table, length_table, markdown_table, patch_vs_full_table, regions_table,
                     rf_table, source_table)


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_findings(name: str, rows: dict[str, list[dict]], out_dir: Path, info: dict | None = None) -> Path:
    """Write the long table, the summary tables and figures and ``experiment.json`` of ``rows``
    (``{"cells": …, "curves": …, "regions": …}``, table rows) into ``out_dir``, replaced as a
    whole: it is derived from the rows, which stay where they are."""
    with fileio.atomic_dir(out_dir, force=True) as tmp:
        write_findings_into(name, {t: [typed(r) for r in part] for t, part in rows.items()}, tmp, info or {})
    return out_dir


def write_findings_into(name: str, rows: dict[str, list[dict]], out_dir: Path, info: dict) -> None:
    """:func:`write_findings` of rows already :func:`typed`, into the existing folder ``out_dir``
    (``render_views`` writes several grids into one folder it replaces as a whole)."""
    cells = rows["cells"]
    tables, figures = [], []
    fileio.write_text(out_dir / "table.csv", _csv(rows["cells"], list(CELL_COLUMNS)))
    long_columns = ["model", "field", "train_fakes", "seed", "epochs", "crop", "test_set", "relation", "corruption",
                    "aggregation", "n", "ap", "ap_lo", "ap_hi", "roc_auc", "ap_real_positive", "device"]
    fileio.write_text(out_dir / "table.md", markdown_table(long_columns, [
        [f"{r[c]:.4f}" if isinstance(r[c], float) else r[c] for c in long_columns] for r in cells]))
    models = ordered(r["model"] for r in cells)
    fakes = ordered(r["train_fakes"] for r in cells)
    corruptions = ordered(r["corruption"] for r in cells)
    # rows of several training lengths (the length check) are compared by length only: pooling
    # them by model would average two protocols
    one_length = len({r["epochs"] for r in cells}) == 1
    for table in (patch_vs_full_table(cells), source_table(cells)) if one_length else (length_table(cells),):
        if table:
            tables.append(table)
    if one_length and len(models) > 1 and len(fakes) == 1:      # a receptive-field ablation
        plot_ap_vs_rf(out_dir / "ap_vs_rf.png", cells, fakes[0])
        figures.append({"file": "ap_vs_rf.png", "caption": f"AP and ROC-AUC ({AGGREGATION}) against receptive "
                                                           f"field, trained on {fakes[0]}: mean ± sd over seeds, "
                                                           "one line per test set"})
        tables += [rf_table(cells, fakes[0], c) for c in corruptions] + [auc_table(cells, fakes[0])]
    if one_length and len(fakes) > 1:
        plot_cross(out_dir / "cross_generator.png", cells)
        figures.append({"file": "cross_generator.png",
                        "caption": f"AP ({AGGREGATION}, clean) trained on each fake set (rows), tested on every "
                                   "test set (columns), mean ± sd over seeds"})
        tables += [cross_table(cells, m) for m in model_order(cells)]
    if rows["curves"]:
        plot_curves(out_dir / "curves.png", rows["curves"])
        figures.append({"file": "curves.png", "caption": f"validation AP ({AGGREGATION}) per epoch, mean over "
                                                         "seeds: has every model stopped learning by the end?"})
    regions = regions_summary(rows["regions"])
    if regions:
        plot_regions(out_dir / "regions.png", regions)
        figures.append({"file": "regions.png", "caption": "fakes: where the most fake-looking patch of each image "
                                                          "falls vs a random patch of the same image (mediapipe "
                                                          "regions), per test set; bars: mean (± sd) over cells"})
        tables.append(regions_table(regions))
    keys = {r["key"]: r for r in cells}
    seeds = sorted({r["seed"] for r in cells})
    summary = {"name": name, **info, "cells": len(keys), "seeds": seeds, "models": models, "train_fakes": fakes,
               "epochs": sorted({r["epochs"] for r in cells}), "crops": ordered(r["crop"] for r in cells),
               "devices": ordered(r["device"] for r in cells), "aggregation": AGGREGATION,
               "minutes": round(sum(r["train_minutes"] for r in keys.values()), 1),
               "finished": max((str(r.get("finished") or "") for r in cells), default=""),
               "table": "table.csv", "tables": tables, "figures": figures, "regions": regions}
    md = [f"# {name}\n", f"{len(keys)} cells; seeds {', '.join(map(str, seeds))}; "
                         f"{', '.join(map(str, summary['epochs']))} epochs; training input "
                         f"{', '.join(summary['crops'])}; AP: fakes positive.\n"]
    for t in tables:
        md += [f"<!-- table: {t['id']} -->", f"### {t['title']}\n", markdown_table(t["columns"], t["rows"])]
    fileio.write_text(out_dir / "tables.md", "\n".join(md))
    fileio.write_json(out_dir / "experiment.json", summary)


_BLOCK = "<!-- generated: {id} -->"
_END = "<!-- /generated -->"   # the blocks of fill_document: the lines between are replaced


def fill_document(doc: Path, generated: Path) -> tuple[list[str], list[str]]:
    """Replace every ``<!-- generated: GRID/ID -->`` … ``<!-- /generated -->`` block of ``doc`` with
    that table (ID: a table id), figure (ID: its file, e.g. ``ap_vs_rf.png``, linked relative to
    ``doc``) or text (ID: a ``texts`` id, claim e's statements) of ``generated/GRID/experiment.json``,
    or with a line saying what is not there yet.
    Returns the ids filled and, among them, those the rendered grid lacks (a table whose rows are
    not in yet, e.g. the regions before the CPU computed them, or a misspelt id)."""
    text = doc.read_text()
    filled, lacking = [], []

    def content(block_id: str) -> str:
        grid, _, item = block_id.partition("/")
        info_path = generated / grid / "experiment.json"
        if not info_path.is_file():
            return f"_No cells of {grid} in the table yet._\n"
        info = json.loads(info_path.read_text())
        figure = next((f for f in info["figures"] if f["file"] == item), None)
        if figure is not None:
            link = Path(os.path.relpath(generated / grid / item, doc.resolve().parent)).as_posix()
            return f"![{figure['caption']}]({link})\n"
        text = next((t for t in info.get("texts", []) if t["id"] == item), None)
        if text is not None:
            return text["text"]
        table = next((t for t in info["tables"] if t["id"] == item), None)
        if table is None:
            lacking.append(block_id)
            return f"_{grid} has no `{item}` yet._\n"
        return f"{table['title']}:\n\n" + markdown_table(table["columns"], table["rows"])

    def replace(match: re.Match) -> str:
        block_id = match.group(1).strip()
        filled.append(block_id)
        return f"{_BLOCK.format(id=block_id)}\n{content(block_id)}{_END}"

    # markers on lines of their own: one quoted in the prose (`<!-- generated: … -->`) is left alone
    new = re.sub(r"^<!-- generated: ([^\n]+?) -->\n.*?^<!-- /generated -->$", replace, text, flags=re.S | re.M)
    if new != text:
        fileio.write_text(doc, new)
    return filled, lacking
