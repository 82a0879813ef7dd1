"""The card's everyday edits: which edits a forger gets for free take a fake past the detector?

:func:`evasion_metrics` runs :func:`~patchforensics.evaluation.evasion.evasion_table` on every test
image of the shared sets (reals :data:`~.recipe.REAL_SETS`, fakes :data:`~.recipe.FAKE_SETS`) for
each edit of :data:`~patchforensics.data.corruptions.EVERYDAY_EDITS` at the card's default
threshold; the release keeps it in ``card_metrics.json`` under ``evasion``. The rest renders the
card's "Everyday edits" section from those rows: the table (between the ``<!-- card-evasion -->``
markers :func:`~.card_metrics.parse` reads), the edits that flip more than :data:`FLIP_LIMIT` of a
set's verdicts, what that means for a screener and the known-limits items.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from ..core.imageio import ImageLoadError, SkipLog, list_images, load_rgb
from ..core.provenance import code_commit
from ..data.corruptions import EVERYDAY_EDITS
from ..evaluation.evasion import UNEDITED, evasion_table
from ..scoring.engine import Engine
from ..scoring.runtime import cpu_kind
from ..screening.faces import GREYSCALE_CAVEAT, GREYSCALE_MAX_CHROMA
from .card_metrics import thresholds
from .recipe import FAKE_SETS, REAL_SETS

#: an edit that flips more than this share of a set's verdicts (fakes passed as real, reals
#: flagged) against the same faces unedited is listed on the card and among its known limits
FLIP_LIMIT = 0.10
#: what each edit of the ``--corrupt`` grammar is, in a screener's words
EDIT_WORDS = {"jpeg": "re-compression", "blur": "blur", "gamma": "a tone change", "resize": "resizing",
              "flip": "a mirror flip", "grey": "greyscale", "noise": "noise", "hue": "a colour shift",
              "saturation": "a colour shift", "brightness": "a tone change", "contrast": "a tone change",
              "shift": "a shift by a few pixels", "backdrop": "a painted backdrop"}


def load_test_faces(faces: Path, skipped: SkipLog) -> tuple[dict[str, list], dict[str, list]]:
    """``(reals, fakes)``: set name -> the RGB images of ``<faces>/<set>/test``; an unreadable
    file is added to ``skipped`` and left out."""
    def load(folder: str) -> list:
        images = []
        for path in list_images(faces / folder / "test"):
            try:
                images.append(load_rgb(path))
            except ImageLoadError as err:
                skipped.add(err)
        return images
    return {s: load(s) for s in REAL_SETS}, {s: load(s) for s in FAKE_SETS}


def evasion_metrics(faces: str | Path, engine: Engine, command: str, edits: Sequence[str] = EVERYDAY_EDITS,
                    progress: bool = False) -> dict[str, Any]:
    """The card's ``evasion`` entry: :func:`evasion_table`'s ``rows`` for ``edits`` on the test
    split of ``faces``, at the card's default threshold (``threshold``: its name and p(fake) cut),
    with the files ``skipped``, and what measured it (``command``, git ``commit``, ``cpu``, ``minutes``)."""
    start, skipped = time.perf_counter(), SkipLog()
    cut = thresholds(engine)["default"]
    reals, fakes = load_test_faces(Path(faces), skipped)
    rows = evasion_table(engine, reals, fakes, edits, cut["p_fake"], progress=progress)
    return {"threshold": cut, "edits": [UNEDITED, *edits], "rows": rows, "skipped": skipped.as_list(),
            "command": command, "commit": code_commit(), "cpu": cpu_kind(),
            "minutes": round((time.perf_counter() - start) / 60, 1)}


# ------------------------------------------------------------------ the card
def _by_edit(evasion: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """edit -> set -> row, in the measured order."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in evasion["rows"]:
        out.setdefault(r["edit"], {})[r["set"]] = r
    return out


def _sets(evasion: dict[str, Any]) -> list[dict[str, Any]]:
    """The unedited row of each set: fakes first (recall), then reals (false alarms)."""
    first = [r for r in evasion["rows"] if r["edit"] == UNEDITED]
    return [r for r in first if r["class"] == "fake"] + [r for r in first if r["class"] == "real"]


def markdown(evasion: dict[str, Any]) -> str:
    """The table: one row per edit (``none`` first), a column per set, each cell the share flagged
    with its count, in bold where the edit flips more than :data:`FLIP_LIMIT` of that set."""
    sets = _sets(evasion)
    head = [f"{r['set']} ({'fake: caught' if r['class'] == 'fake' else 'real: false alarms'})" for r in sets]
    lines = ["<!-- card-evasion -->", "| edit | " + " | ".join(head) + " |", "|---|" + "---|" * len(sets)]
    for edit, by_set in _by_edit(evasion).items():
        cells = []
        for s in sets:
            r = by_set[s["set"]]
            cell = f"{r['flagged_share']:.1%} ({r['flagged']}/{r['n']})"
            cells.append(f"**{cell}**" if r["flipped_share"] > FLIP_LIMIT else cell)
        lines.append(f"| {edit} | " + " | ".join(cells) + " |")
    lines.append("<!-- /card-evasion -->")
    return "\n".join(lines)


def flipping(evasion: dict[str, Any], cls: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """edit -> its rows (of class ``cls``, default both) whose flipped share exceeds :data:`FLIP_LIMIT`;
    only edits with at least one such row, in the measured order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in evasion["rows"]:
        if r["flipped_share"] > FLIP_LIMIT and cls in (None, r["class"]):
            out.setdefault(r["edit"], []).append(r)
    return out


def _flips(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['set']} {r['flipped']}/{r['n']} ({r['flipped_share']:.1%})" for r in rows)


def flip_list(evasion: dict[str, Any]) -> str:
    """The edits that flip more than :data:`FLIP_LIMIT` of any set's verdicts, one item each."""
    flips = flipping(evasion)
    if not flips:
        return f"No edit flips more than {FLIP_LIMIT:.0%} of any test set's verdicts."
    lines = [f"Edits that flip more than {FLIP_LIMIT:.0%} of a test set's verdicts against the same faces unedited:", ""]
    for edit, rows in flips.items():
        parts = [f"{what} {_flips([r for r in rows if r['class'] == cls])}"
                 for cls, what in (("fake", "fakes passed as real:"), ("real", "reals flagged:"))
                 if any(r["class"] == cls for r in rows)]
        lines.append(f"- `{edit}`: " + "; ".join(parts))
    return "\n".join(lines)


def _named(edits: Sequence[str]) -> str:
    """``greyscale (`grey`), re-compression (`jpeg:75`, `jpeg:50`) and resizing (`resize:0.5`)``."""
    groups: dict[str, list[str]] = {}
    for edit in edits:
        groups.setdefault(EDIT_WORDS[edit.partition(":")[0]], []).append(f"`{edit}`")
    items = [f"{words} ({', '.join(specs)})" for words, specs in groups.items()]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def screener_text(evasion: dict[str, Any]) -> str:
    """What the rows mean for a screener: the edits that pass fakes or flag reals, and the caveat."""
    evading, alarming = list(flipping(evasion, "fake")), list(flipping(evasion, "real"))
    text = ("Every edit above costs a forger nothing (a photo editor, or saving the file again), and genuine "
            "photos meet re-compression, resizing and colour changes on their way, so a screener can neither "
            "prevent nor refuse them. ")
    if evading:
        text += (f"{_capital(_named(evading))} pass fakes this detector catches unedited: "
                 "a face it passes that may have been through one of them is **no evidence of a real photo**. ")
    else:
        text += (f"None of them passes more than {FLIP_LIMIT:.0%} of a fake test set here; that holds for these "
                 "generators' test faces only, and a pass is still no evidence of a real photo. ")
    if alarming:
        text += f"{_capital(_named(alarming))} make real faces look fake. "
    return text + (f"`detect`, `serve` and the report mark a face whose examined pixels hold little colour (mean "
                   f"chroma under {GREYSCALE_MAX_CHROMA:g}) with the caveat \"{GREYSCALE_CAVEAT}\"; no other edit "
                   "is marked: nothing in the output tells an edited fake from an untouched face.")


def limits(evasion: dict[str, Any]) -> list[str]:
    """The known-limits items of the measured rows: the edits that pass fakes (greyscale on its own
    item, with the caveat), and those that flag reals."""
    by_edit, out = _by_edit(evasion), []
    evading, alarming = flipping(evasion, "fake"), flipping(evasion, "real")
    if evading:
        out.append(f"- **Everyday edits pass fakes**: {', '.join(f'`{e}`' for e in evading)} each pass more than "
                   f"{FLIP_LIMIT:.0%} of a fake test set's faces as real (Everyday edits); a face passed after one "
                   "of them is no evidence of a real photo.")
    if "grey" in evading:
        fakes = [s["set"] for s in _sets(evasion) if s["class"] == "fake"]
        colour, grey = (sum(by_edit[e][s]["flagged"] for s in fakes) for e in (UNEDITED, "grey"))
        n = sum(by_edit[UNEDITED][s]["n"] for s in fakes)
        out.append(f"- **Greyscale photos: fakes pass.** It catches {grey} of the {n} fake test faces in greyscale "
                   f"against {colour} in colour. `detect`, `serve` and the report mark a face whose examined pixels "
                   f"hold little colour (mean chroma under {GREYSCALE_MAX_CHROMA:g}) with the caveat "
                   f"\"{GREYSCALE_CAVEAT}\"; washed-out colour photos above that cut are screened weakly too. See "
                   "docs/detect.md (greyscale photos) for the measurements, and docs/recipe.md (greyscale "
                   "augmentation) for the remedy in training the release's choice weighed against this detector.")
    if alarming:
        out.append(f"- **Everyday edits flag real faces**: {', '.join(f'`{e}`' for e in alarming)} each flag more "
                   f"than {FLIP_LIMIT:.0%} of a real test set that is not flagged unedited (Everyday edits).")
    return out


def card_fields(evasion: dict[str, Any]) -> dict[str, Any]:
    """The card template's fields of the section and of the known-limits list."""
    return {"evasion_table": markdown(evasion), "evasion_flips": flip_list(evasion),
            "evasion_screener": screener_text(evasion), "evasion_command": evasion["command"],
            "evasion_commit": evasion["commit"], "evasion_cpu": evasion["cpu"], "flip_limit": FLIP_LIMIT,
            "evasion_cut": evasion["threshold"]["p_fake"], "evasion_cut_name": evasion["threshold"]["name"],
            # items of the known-limits list, each ending its line
            "evasion_limits": "".join(line + "\n" for line in limits(evasion))}
