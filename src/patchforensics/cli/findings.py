"""``patchforensics findings``."""
from __future__ import annotations

import argparse


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="figures and tables of the committed findings tables (docs/findings)",
                       description="Draws each findings grid's figures and summary tables from the committed "
                                   "tables in DIR alone (cells.csv, curves.csv, regions.csv; no data, no "
                                   "checkpoint) into DIR/generated/<grid>/ (replaced as a whole: it is derived), "
                                   "and with --doc fills that document's '<!-- generated: GRID/TABLE -->' blocks. "
                                   "--add first merges the rows of other findings folders (a GPU run's) into DIR.")
    p.add_argument("folder", metavar="DIR", help="the findings folder, e.g. docs/findings")
    p.add_argument("--grid", action="append", metavar="GRID",
                   help="grid YAML or bundled name whose cells to show; repeatable (default: every bundled "
                        "findings-* grid)")
    p.add_argument("--doc", metavar="FILE", help="Markdown file whose generated blocks to fill, e.g. docs/findings.md")
    p.add_argument("--add", action="append", default=[], metavar="DIR",
                   help="another findings folder whose rows DIR lacks are appended first; repeatable. A row of "
                        "another training under a committed key (same key and test, other numbers) is refused "
                        "naming the key")
    p.add_argument("--replace", action="store_true",
                   help="with --add: replace every row (cells, curves, regions) of such a key with the added ones")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..experiments.findings import fill_document, findings_grids, render_views
    from ..experiments.results_tables import FindingsTables

    folder = Path(args.folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass the findings folder (e.g. docs/findings)")
    tables = FindingsTables(folder)
    others = [FindingsTables(Path(other)) for other in args.add]
    for other in others:
        if not other.folder.is_dir():
            raise FileNotFoundError(f"--add {other.folder} is not a folder of findings tables")
        if not args.replace:
            tables.check_merge(other)                 # every folder checked before any is merged
    for other in others:
        replaced = sorted(tables.clashes(other)) if args.replace else []
        added = tables.merge(other, replace=args.replace)
        print(f"from {other.folder}: " + ", ".join(f"{n} rows added to {t}.csv" for t, n in added.items())
              + (f" (every row of key{'s' * (len(replaced) > 1)} {', '.join(replaced)} replaced)" if replaced else ""))
    for grid, out in render_views(folder, args.grid or findings_grids()).items():
        print(f"{grid}: {out}" if out else f"{grid}: no cells in {folder / 'cells.csv'} yet")
    if args.doc:
        filled, lacking = fill_document(Path(args.doc), folder / "generated")
        print(f"{args.doc}: {len(filled)} generated block(s) filled")
        for block in lacking:
            grid = block.partition("/")[0]
            info = json.loads((folder / "generated" / grid / "experiment.json").read_text())
            has = [t["id"] for t in info["tables"]] + [f["file"] for f in info["figures"]]
            print(f"  {block}: not drawn from the rows so far (a misspelt id?); {grid} has {', '.join(has)}")
    return 0
