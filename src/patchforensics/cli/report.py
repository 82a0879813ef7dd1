"""``patchforensics report``."""
from __future__ import annotations

import argparse


def register(sub, name: str) -> None:
    p = sub.add_parser(name, help="one self-contained HTML page over a results folder",
                       description="Tables of AP/accuracy per dataset x model x aggregation, PR curves, average "
                                   "heatmaps, top-patch grids and region histograms, with links to the galleries. "
                                   "Images are inlined; the page makes no network requests.")
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="the results folder (default layout: results/)")
    p.add_argument("-o", "--output", metavar="FILE", help="page to write (default RESULTS_DIR/report.html)")
    p.add_argument("--title", default="patchforensics report")
    p.add_argument("--force", action="store_true", help="overwrite an existing page")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..explain.report import ReportConfig, run_report

    out = run_report(ReportConfig(results_dir=args.results_dir, output=args.output, title=args.title,
                                  force=args.force))
    print(f"report: {out.resolve().as_uri()}")
    return 0
