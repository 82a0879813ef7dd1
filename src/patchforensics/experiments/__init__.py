"""Grids of training runs (models × seeds × fake sets …), their suites, one long table and the findings."""
