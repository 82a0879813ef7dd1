"""The summary tables of the findings, one per claim: each ``{"id", "title", "columns", "rows"}``."""
from __future__ import annotations

from collections import defaultdict

from .stats import AGGREGATION, field_text, fmt, model_order, ordered, pooled, relation_mean, stat, summary_rows


def markdown_table(columns: list[str], rows: list[list]) -> str:
    """A Markdown table: one header line, one line per row (cells as ``str``)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def rf_table(rows: list[dict], train_fakes: str, corruption: str) -> dict:
    """AP (mean ± sd over seeds [95% interval]) per model and its field × test set."""
    ap = pooled(rows, "ap", corruption)
    datasets = ordered(r["test_set"] for r in rows)
    field = {r["model"]: field_text(r) for r in rows}
    out = [[m, field[m], ap[(m, train_fakes, datasets[0])].n]
           + [fmt(ap.get((m, train_fakes, d)), interval=True) for d in datasets]
           for m in model_order(rows) if (m, train_fakes, datasets[0]) in ap]
    return {"id": f"rf-{train_fakes}-{corruption}",
            "title": f"AP ({AGGREGATION}) against receptive field; trained on {train_fakes}, test corruption "
                     f"{corruption}; mean ± sd over seeds [95% bootstrap interval over the test images]",
            "columns": ["model", "field (px)", "seeds", *datasets], "rows": out}


def auc_table(rows: list[dict], train_fakes: str) -> dict:
    """ROC-AUC (clean) per model × test set."""
    auc = pooled(rows, "roc_auc")
    datasets = ordered(r["test_set"] for r in rows)
    field = {r["model"]: field_text(r) for r in rows}
    out = [[m, field[m]] + [fmt(auc.get((m, train_fakes, d)), interval=True) for d in datasets]
           for m in model_order(rows) if (m, train_fakes, datasets[0]) in auc]
    return {"id": f"auc-{train_fakes}", "title": f"ROC-AUC ({AGGREGATION}, clean); trained on {train_fakes}; "
                                                 "mean ± sd over seeds [95% bootstrap interval]",
            "columns": ["model", "field (px)", *datasets], "rows": out}


def _mark(relation: str) -> str:
    return {"seen": " (seen)", "other-source": " (other source)"}.get(relation, "")


def cross_table(rows: list[dict], model: str) -> dict:
    """AP per train fake set (rows) × test set (columns) for one model, plus the mean over unseen sets."""
    ap = pooled(rows, "ap")
    datasets = ordered(r["test_set"] for r in rows)
    relation = {(r["train_fakes"], r["test_set"]): r["relation"] for r in rows}
    out = []
    for fakes in ordered(r["train_fakes"] for r in rows):
        if (model, fakes, datasets[0]) not in ap:
            continue
        out.append([fakes, ap[(model, fakes, datasets[0])].n]
                   + [fmt(ap.get((model, fakes, d))) + _mark(relation.get((fakes, d), "")) for d in datasets]
                   + [fmt(relation_mean(rows, model, fakes, "unseen"))])
    return {"id": f"cross-{model}", "title": f"{model}: AP ({AGGREGATION}, clean) per training fake set × test "
                                              "set; mean ± sd over seeds; (seen) = the training folder, (other "
                                              "source) = its generator from another source",
            "columns": ["trained on", "seeds", *datasets, "mean unseen"], "rows": out}


def patch_vs_full_table(rows: list[dict]) -> dict | None:
    """Claim (a): mean AP on unseen generators of every model, per training set and corruption."""
    if not any(r["field"] == "full" for r in rows) or all(r["field"] == "full" for r in rows):
        return None
    fakes = ordered(r["train_fakes"] for r in rows)
    corruptions = ordered(r["corruption"] for r in rows)
    out = []
    for m in model_order(rows):
        row = next(r for r in rows if r["model"] == m)
        out.append([m, field_text(row)]
                   + [f"{fmt(relation_mean(rows, m, f, 'unseen', 'ap', c))} "
                      f"(seen {fmt(relation_mean(rows, m, f, 'seen', 'ap', c))})"
                      for f in fakes for c in corruptions])
    return {"id": "patch-vs-full", "title": f"mean AP ({AGGREGATION}) over the test sets of generators not trained "
                                            "on (in brackets: over the training folder), mean ± sd over seeds",
            "columns": ["model", "field (px)"] + [f"trained on {f}, {c}" for f in fakes for c in corruptions],
            "rows": out}


def source_table(rows: list[dict]) -> dict | None:
    """Claim (d): the same generator from another source, against the training source, per model."""
    pairs = ordered((r["model"], r["train_fakes"]) for r in summary_rows(rows) if r["relation"] == "other-source")
    if not pairs:
        return None
    ap, auc = pooled(rows, "ap"), pooled(rows, "roc_auc")
    out = []
    for model, fakes in sorted(pairs, key=lambda p: (p[1], model_order(rows).index(p[0]))):
        clean = [r for r in summary_rows(rows) if r["model"] == model and r["train_fakes"] == fakes]
        seen = next((r["test_set"] for r in clean if r["relation"] == "seen"), None)
        other = next(r["test_set"] for r in clean if r["relation"] == "other-source")
        drops = defaultdict(dict)
        for r in clean:
            if r["test_set"] in (seen, other):
                drops[r["seed"]][r["test_set"]] = r["ap"]
        drop = stat([d[seen] - d[other] for d in drops.values() if seen in d and other in d]) if seen else None
        out.append([model, field_text(clean[0]), fakes, ap[(model, fakes, other)].n,
                    f"{seen}: {fmt(ap.get((model, fakes, seen)), True)}" if seen else "–",
                    f"{other}: {fmt(ap[(model, fakes, other)], True)}", fmt(drop),
                    fmt(auc.get((model, fakes, seen))) if seen else "–", fmt(auc[(model, fakes, other)])])
    return {"id": "source", "title": f"the same generator from another source (claim d): AP ({AGGREGATION}, clean) "
                                     "on the training source and on the other one, mean ± sd over seeds [95% "
                                     "bootstrap interval]; drop = seen − other source, per seed",
            "columns": ["model", "field (px)", "trained on", "seeds", "AP, training source", "AP, other source",
                        "drop", "ROC-AUC, training source", "ROC-AUC, other source"], "rows": out}


def length_table(rows: list[dict]) -> dict | None:
    """The length check: a model trained at several lengths, seen / other-source / unseen AP per length."""
    lengths = defaultdict(set)
    for r in rows:
        lengths[(r["model"], r["train_fakes"])].add(r["epochs"])
    groups = [g for g, e in lengths.items() if len(e) > 1]
    if not groups:
        return None
    out = []
    for model, fakes in groups:
        for epochs in sorted(lengths[(model, fakes)]):
            part = [r for r in rows if r["model"] == model and r["train_fakes"] == fakes and r["epochs"] == epochs]
            out.append([model, fakes, epochs, len({r["seed"] for r in part})]
                       + [fmt(relation_mean(part, model, fakes, rel)) for rel in ("seen", "other-source", "unseen")])
    return {"id": "length", "title": f"training length check: AP ({AGGREGATION}, clean) of one model at each length, "
                                     "mean over the test sets of each kind, mean ± sd over seeds",
            "columns": ["model", "trained on", "epochs", "seeds", "seen", "other source", "unseen"], "rows": out}


def regions_table(summary: dict) -> dict:
    datasets = list(summary)
    regions = ordered(r for d in datasets for r in summary[d])
    out = [[reg] + [f"{summary[d][reg]['top']:.1%} / {summary[d][reg]['random']:.1%}" if reg in summary[d] else "–"
                    for d in datasets] for reg in regions]
    cells = {d: next(iter(summary[d].values()))["cells"] for d in datasets}
    return {"id": "regions", "title": "fakes: share of the most fake-looking patches (one per image) per face "
                                      "region / share of random patches in the same images; mean over "
                                      + ", ".join(f"{d}: {cells[d]} cells" for d in datasets),
            "columns": ["region", *datasets], "rows": out}
