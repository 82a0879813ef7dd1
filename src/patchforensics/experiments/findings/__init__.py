"""What finished cells show: one long table, summary tables and figures, drawn from table rows.

The rows are those of the results tables (:mod:`..results_tables`: ``cells.csv``,
``curves.csv``, ``regions.csv``), read from the committed files or built from a run's cell
records, so the same figures come out of a fresh clone with no checkpoint and no data.
:mod:`.stats` pools the rows over seeds, :mod:`.tables` and :mod:`.figures` draw them,
:mod:`.document` writes a findings folder and fills a document's generated blocks, and
:mod:`.views` picks each grid's rows out of the committed tables. ``report`` finds a folder
when it is ``results/experiment-<grid>/``; ``patchforensics findings`` writes them under
``<findings>/generated/<grid>/``.
"""
from .document import fill_document, write_findings, write_findings_into
from .stats import AGGREGATION, Stat, pooled, relation_mean, stat, typed
from .views import findings_grids, grid_view, render_views, spec_signatures, spec_tests, view_rows

__all__ = ["AGGREGATION", "Stat", "fill_document", "findings_grids", "grid_view", "pooled", "relation_mean",
           "render_views", "spec_signatures", "spec_tests", "stat", "typed", "view_rows", "write_findings",
           "write_findings_into"]
