"""A probe's results folder, written atomically as a whole::

    probe.csv    one row per intervention x class (then the transplant-vs-same contrasts)
    probe.md     the same as readable tables, sorted by the size of the change, with what they mean
    probe.png    mean change per intervention with its interval, one panel per class
    probe.json   everything: model, threshold, seed, counts, skipped and no-face files, the rows
    pairs.csv    the pairs the transplants used (class, image, kind, partner)
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..core import fileio
from .figure import plot_probe
from .inputs import CLASSES
from .registry import CONTRAST

CSV_COLUMNS = ("intervention", "family", "region", "class", "n", "skipped", "no_face", "no_region", "area",
               "mean_change", "lo", "hi", "flipped", "flagged_before", "flagged_after", "mean_p_before",
               "mean_p_after")
PAIR_COLUMNS = ("class", "image", "kind", "partner")
MEANING = (
    "Each row changes one thing in every face of a class and scores the face again: **change** is the mean "
    "of p(fake) edited − p(fake) original over the faces measured, with its 95% bootstrap interval over "
    "them; **flipped** is the share of those faces whose verdict changed at the threshold; **flagged** the "
    "share called fake before → after (fakes: recall; reals: false alarms). A fake moving toward real "
    "(negative) lost evidence the change took away; a real moving toward fake (positive) gained evidence "
    "it brought. A transplant pastes one region from a paired face of the other class, its **-same** "
    f"control from another face of the same class: **{CONTRAST}** (transplant minus its control, per "
    "face) is what the region's content of the other class does beyond the seams, the causal answer to "
    "\"which region carries the evidence\". **skipped** counts faces the segmenter found no face in or "
    "without the region (or no overlap with the partner's); **area** is the mean share of a face's pixels "
    "the edit's mask covers (a larger region moves more pixels); identity must read exactly +0.000.")


def _number(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def csv_text(rows: list[dict], columns) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows({c: _number(r.get(c)) for c in columns} for r in rows)
    return buf.getvalue()


def change_text(row: dict) -> str:
    """``-0.123 [-0.150, -0.098]`` (``–`` when nothing was measured)."""
    if not row["n"]:
        return "–"
    return f"{row['mean_change']:+.3f} [{row['lo']:+.3f}, {row['hi']:+.3f}]"


def _share(value) -> str:
    return "–" if value is None or value != value else f"{value:.0%}"


def sorted_rows(rows: list[dict], cls: str) -> list[dict]:
    """The interventions (not the contrasts) of a class, largest change first (either way)."""
    mine = [r for r in rows if r["class"] == cls and r["family"] != CONTRAST]
    return sorted(mine, key=lambda r: -abs(r["mean_change"]) if r["n"] else 0.0)


def contrast_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Per region: each class's transplant-vs-same change and n, the fakes' most negative first."""
    contrast = {(r["region"], r["class"]): r for r in rows if r["family"] == CONTRAST}
    regions = sorted({reg for reg, _ in contrast},
                     key=lambda reg: contrast.get((reg, "fake"), {}).get("mean_change", 0.0) or 0.0)
    columns = ["region"] + [f"{cls}s: {CONTRAST} [95%] (n)" for cls in CLASSES]
    out = [[reg] + [f"{change_text(contrast[(reg, c)])} ({contrast[(reg, c)]['n']})" if (reg, c) in contrast
                    else "–" for c in CLASSES] for reg in regions]
    return columns, out


def class_table(rows: list[dict], cls: str) -> tuple[list[str], list[list[str]]]:
    columns = ["intervention", "n", "skipped", "area", "change [95%]", "flipped", "flagged before → after"]
    return columns, [[r["intervention"], r["n"], r["skipped"], _share(r["area"]), change_text(r),
                      _share(r["flipped"]), f"{_share(r['flagged_before'])} → {_share(r['flagged_after'])}"]
                     for r in sorted_rows(rows, cls)]


def markdown_table(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]) + "\n"


def header_text(summary: dict) -> str:
    """One paragraph: what was probed, with what, at which threshold."""
    m = summary["model"]
    field = f"{m['field']} px field" if m["field"] != "full" else "full-image model"
    return (f"{m['name']} ({m['architecture']}, {field}; {m['source']}) on {summary['n']['real']} reals of "
            f"{summary['real']} and {summary['n']['fake']} fakes of {summary['fake']}; threshold: "
            f"{summary['threshold']['source']}; seed {summary['seed']}, {summary['resamples']} bootstrap resamples; "
            f"regions: {summary['segmenter'] or 'none (no region intervention)'}"
            + (f"; transplant pairs in {summary['pairs']} (fakes' partners from {summary['pair_real']})"
               if summary["pair_real"] else "") + ".")


def tables(summary: dict) -> list[dict]:
    """The tables of probe.md and of ``report``'s section, each ``{id, title, columns, rows}``: the
    region contrasts (when a transplant and its control ran), then each class's interventions."""
    rows = summary["rows"]
    out = []
    if any(r["family"] == CONTRAST for r in rows):
        columns, body = contrast_table(rows)
        out.append({"id": "probe-contrast", "title": "Which regions carry the evidence: transplant minus its "
                                                     "same-class control", "columns": columns, "rows": body})
    for cls in CLASSES:
        columns, body = class_table(rows, cls)
        out.append({"id": f"probe-{cls}", "title": f"{cls}s ({summary['n'][cls]}), largest change first",
                    "columns": columns, "rows": body})
    return out


def with_tables(summary: dict) -> dict:
    """``summary`` with what a reader needs beside the rows: ``header``, ``meaning`` and ``tables``."""
    return {**summary, "header": header_text(summary), "meaning": MEANING, "tables": tables(summary)}


def markdown(summary: dict) -> str:
    """probe.md of a :func:`with_tables` summary."""
    parts = [f"# probe: {summary['model']['name']}\n", summary["header"] + "\n", summary["meaning"] + "\n"]
    parts += [f"- {note}" for note in summary["notes"]]
    no_face = {c: len(v) for c, v in summary["no_face"].items() if v}
    if no_face:
        parts.append("- no face found by the segmenter in " + ", ".join(f"{k} {c}s" for c, k in no_face.items())
                     + " (listed in probe.json): they are skipped by every region intervention\n")
    if summary["unreadable"]:
        parts.append(f"- {len(summary['unreadable'])} files could not be read (listed in probe.json)\n")
    for table in summary["tables"]:
        parts += [f"## {table['title']}\n", markdown_table(table["columns"], table["rows"])]
    return "\n".join(parts)


def text_summary(summary: dict) -> str:
    """What ``probe --format text`` prints: the header, then each class's rows, largest change first."""
    lines = [summary["header"]]
    for cls in CLASSES:
        lines.append(f"\n{cls}s: {'intervention':<30} {'n':>4} {'skip':>4}  {'change [95%]':<27} flipped")
        for r in sorted_rows(summary["rows"], cls):
            lines.append(f"  {r['intervention']:<36} {r['n']:>4} {r['skipped']:>4}  {change_text(r):<27} "
                         f"{_share(r['flipped'])}")
    return "\n".join(lines)


def to_json(summary: dict) -> str:
    """probe.json's text: strict JSON, a number not measured (NaN) written as ``null``."""
    plain = json.loads(json.dumps(summary), parse_constant=lambda _: None)
    return json.dumps(plain, indent=2, allow_nan=False) + "\n"


def write_results(out: Path, summary: dict, pairs: list[dict], force: bool = False) -> Path:
    """Write the folder ``out`` of a :func:`with_tables` summary (replacing it only with ``force``)."""
    title = (f"{summary['model']['name']}: {summary['real_folder']} reals vs {summary['fake_folder']} fakes, "
             f"threshold {summary['threshold']['name']}")
    with fileio.atomic_dir(out, force=force) as tmp:
        fileio.write_text(tmp / summary["table"], csv_text(summary["rows"], CSV_COLUMNS))
        fileio.write_text(tmp / summary["pairs"], csv_text(pairs, PAIR_COLUMNS))
        fileio.write_text(tmp / summary["markdown"], markdown(summary))
        plot_probe(tmp / summary["figure"], summary["rows"], title, summary["n"])
        fileio.write_text(tmp / "probe.json", to_json(summary))
    return out
