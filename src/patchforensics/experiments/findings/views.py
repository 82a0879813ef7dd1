"""Views of the committed results tables: the rows of the cells a grid describes, drawn per grid.

A grid's cells are found by what they trained (model, reals, fakes, seed, epochs, crop, size),
not by key, so a fresh clone with no data and no checkpoint finds them.
"""
from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

from ...core import fileio
from ...core.config import from_dict, load_yaml_file, to_dict
from ...evaluation.suite import suite_path
from ...training.train import TrainConfig
from ..grid import bundled_grids, grid_path
from ..results_tables import TABLES, FindingsTables, crop_text
from .document import write_findings_into
from .probe_claim import NAME as PROBE_VIEW, write_probe_claim
from .stats import typed


def spec_signatures(spec: dict) -> set[tuple]:
    """What each cell of a grid spec trains, as the table's columns say it (model, reals, fakes,
    seed, epochs, crop, size): enough to find its rows without the data or the key."""
    base, vary = spec.get("base") or {}, spec.get("vary") or {}
    keys = list(vary)
    out = set()
    for values in itertools.product(*(vary[k] for k in keys)):
        merged = {**base, **dict(zip(keys, values))}
        cfg = from_dict(TrainConfig, merged)
        out.add(_signature({"model": cfg.model, "train_real": "+".join(cfg.real), "train_fakes": "+".join(cfg.fake),
                            "seed": cfg.seed, "epochs": cfg.max_epochs, "crop": crop_text(to_dict(cfg)),
                            "load_size": cfg.load_size}))
    return out


def _signature(row: dict) -> tuple:
    return tuple(str(row[c]) for c in ("model", "train_real", "train_fakes", "seed", "epochs", "crop", "load_size"))


def spec_tests(spec: dict, grid_file: Path) -> set[tuple[str, str]]:
    """``(test set, corruption)`` of a grid spec, from its suite files (no data needed)."""
    out = set()
    for name in spec.get("suites") or ["faces128"]:
        local = grid_file.parent / name
        suite = fileio.read_yaml(local if local.is_file() else suite_path(name)) or {}
        corruptions = spec.get("corruptions")
        corruptions = corruptions if corruptions is not None else suite.get("corruptions") or [[]]
        out |= {(d["name"], ",".join(c or []) or "none") for d in suite.get("datasets") or [] for c in corruptions}
    return out


def grid_view(spec: dict, tables: dict[str, list[dict]], tests: set[tuple[str, str]]) -> dict[str, list[dict]]:
    """The rows of the cells a grid spec describes, on its ``tests`` (test set, corruption): rows a
    shared cell has from another grid stay out. A cell described twice in the table (two keys:
    other training options or other training images) is refused, naming both keys."""
    wanted = spec_signatures(spec)
    keys_by_signature: dict[tuple, set[str]] = defaultdict(set)
    for r in tables["cells"]:
        if _signature(r) in wanted:
            keys_by_signature[_signature(r)].add(r["key"])
    clashes = {s: k for s, k in keys_by_signature.items() if len(k) > 1}
    if clashes:
        sig, keys = next(iter(clashes.items()))
        cell = dict(zip(("model", "real", "fakes", "seed", "epochs", "crop", "size"), sig))
        raise ValueError(f"grid {spec.get('name')}: the cell {cell} has rows under {len(keys)} keys "
                         f"({', '.join(sorted(keys))}): other training options or other training images; remove "
                         "the rows that no longer apply from the tables")
    keys = {k for ks in keys_by_signature.values() for k in ks}
    return view_rows(tables, keys, tests)


def view_rows(tables: dict[str, list[dict]], keys: set[str], tests: set[tuple[str, str]]) -> dict[str, list[dict]]:
    """The rows of the cells ``keys`` on ``tests`` (``(test set, corruption)``) in each table."""
    test_sets = {t for t, _ in tests}
    return {"cells": [r for r in tables["cells"] if r["key"] in keys and (r["test_set"], r["corruption"]) in tests],
            "curves": [r for r in tables["curves"] if r["key"] in keys],
            "regions": [r for r in tables["regions"] if r["key"] in keys and r["test_set"] in test_sets]}


def findings_grids() -> list[str]:
    """The bundled grids that make up docs/findings.md (``findings-*``)."""
    return [g for g in bundled_grids() if g.startswith("findings-")]


def render_views(folder: Path, grids: list[str]) -> dict[str, Path | None]:
    """For each grid (bundled name or YAML file), its findings from the tables in ``folder`` into
    ``folder/generated/<grid>/`` (``None`` where the table holds none of its cells yet), and claim
    (e) from ``probe.csv`` into ``folder/generated/probe/`` (``None`` without contrast rows). The
    ``generated`` folder is replaced as a whole: it is derived from the tables."""
    source = FindingsTables(folder)
    tables = {t: source.read(t) for t in TABLES}
    out: dict[str, Path | None] = {}
    with fileio.atomic_dir(Path(folder) / "generated", force=True) as tmp:
        for grid in grids:
            spec = load_yaml_file(grid_path(grid))
            view = grid_view(spec, tables, spec_tests(spec, grid_path(grid)))
            name = str(spec.get("name") or Path(grid).stem)
            if not view["cells"]:
                out[name] = None
                continue
            (tmp / name).mkdir()
            write_findings_into(name, {t: [typed(r) for r in part] for t, part in view.items()}, tmp / name,
                            {"grid": spec})
            out[name] = Path(folder) / "generated" / name
        (tmp / PROBE_VIEW).mkdir()
        drawn = write_probe_claim(tmp / PROBE_VIEW, tables["probe"], tables["regions"])
        if not drawn:
            (tmp / PROBE_VIEW).rmdir()
        out[PROBE_VIEW] = Path(folder) / "generated" / PROBE_VIEW if drawn else None
    return out
