"""The card's Everyday edits: an evasion table measured with the bundled detector on a few shared
test faces of every card set renders as the card's section, its >10% list and known limits follow
the rows, ``parse`` reads it back, and ``release --card-only`` completes an installed release's card."""
from __future__ import annotations

import copy
import json
import re
import shutil

import pytest

from conftest import FACES
from patchforensics.core import fileio
from patchforensics.data.corruptions import CORRUPTION_NAMES
from patchforensics.models.checkpoint import BUNDLED_DIR
from patchforensics.release import evasion, pipeline
from patchforensics.release.card import render_installed
from patchforensics.release.card_metrics import parse
from patchforensics.release.pipeline import ReleaseConfig, run_release
from patchforensics.release.recipe import FAKE_SETS, REAL_SETS
from patchforensics.scoring.engine import Engine
from patchforensics.screening.faces import GREYSCALE_CAVEAT

PER_SET = 4
EDITS = ("grey", "jpeg:75", "brightness:1")        # brightness:1 is the identity: it flips nothing


@pytest.fixture(scope="module")
def tiny_faces(tmp_path_factory):
    """``<tmp>/faces128/<set>/test`` with the first few test faces of every card set (symlinked)
    and, in ffhq, one file that is no image."""
    root = tmp_path_factory.mktemp("tiny_test") / "faces128"
    for folder in REAL_SETS + FAKE_SETS:
        d = root / folder / "test"
        d.mkdir(parents=True)
        for p in sorted((FACES / folder / "test").glob("*.png"))[:PER_SET]:
            (d / p.name).symlink_to(p)
    (root / "ffhq" / "test" / "broken.png").write_bytes(b"not a png")
    return root


@pytest.fixture(scope="module")
def measured(tiny_faces):
    return evasion.evasion_metrics(tiny_faces, Engine.load(), "a test", edits=EDITS)


def test_rows_cover_every_set_and_edit_at_the_default_cut_and_skip_the_unreadable(measured):
    engine = Engine.load()
    assert measured["threshold"] == {"name": "fpr3pct", "p_fake": engine.card.p_fake_threshold("fpr3pct")}
    assert measured["edits"] == ["none", *EDITS]
    assert [(r["set"], r["edit"]) for r in measured["rows"]] == [
        (s, e) for s in REAL_SETS + FAKE_SETS for e in measured["edits"]]
    assert all(r["n"] == PER_SET for r in measured["rows"])           # the broken file is not counted in
    assert [s["path"].endswith("broken.png") for s in measured["skipped"]] == [True]


def test_the_table_reads_back_with_the_measured_counts_and_flips_in_bold(measured):
    table = parse(evasion.markdown(measured))["evasion"]
    assert list(table) == measured["edits"]
    by = {(r["edit"], r["set"]): r for r in measured["rows"]}
    for edit, cells in table.items():
        assert len(cells) == len(REAL_SETS + FAKE_SETS)
        for folder, cell in zip(FAKE_SETS + REAL_SETS, cells):      # recall first, then false alarms
            r = by[edit, folder]
            assert f"({r['flagged']}/{r['n']})" in cell
            assert cell.startswith("**") == (r["flipped_share"] > evasion.FLIP_LIMIT), (edit, folder, cell)


def test_the_flip_list_and_the_limits_follow_the_rows(measured):
    flips = evasion.flipping(measured)
    expected = {r["edit"] for r in measured["rows"] if r["flipped_share"] > evasion.FLIP_LIMIT}
    assert set(flips) == expected and "brightness:1" not in flips and "none" not in flips
    # the bundled detector passes greyscaled StyleGAN2 fakes (issue #29: 16 of 20 flagged in colour, 0 in grey)
    assert "grey" in evasion.flipping(measured, "fake")
    listed = re.findall(r"^- `([^`]+)`", evasion.flip_list(measured), re.M)
    assert listed == [e for e in measured["edits"] if e in expected]
    text = evasion.screener_text(measured)
    assert "greyscale (`grey`)" in text.lower() and GREYSCALE_CAVEAT in text
    assert any(item.startswith("- **Greyscale photos: fakes pass.**") for item in evasion.limits(measured))

    # rows in which nothing flips: no list, no limits, and the paragraph says so
    calm = copy.deepcopy(measured)
    for r in calm["rows"]:
        r["flipped"], r["flipped_share"] = 0, 0.0
    assert evasion.flipping(calm) == {} and evasion.limits(calm) == []
    assert evasion.flip_list(calm).startswith("No edit flips") and "None of them passes" in evasion.screener_text(calm)
    # an identity edit made to flip a real set is listed, as a false-alarm edit
    calm["rows"][[(r["edit"], r["set"]) for r in calm["rows"]].index(("brightness:1", "celebahq"))].update(
        flipped=2, flipped_share=0.5)
    assert list(evasion.flipping(calm, "real")) == ["brightness:1"] and evasion.flipping(calm, "fake") == {}
    assert "reals flagged: celebahq 2/" in evasion.flip_list(calm)
    assert [item.split("**")[1] for item in evasion.limits(calm)] == ["Everyday edits flag real faces"]


def test_every_corruption_has_its_words_on_the_card():
    assert set(evasion.EDIT_WORDS) == set(CORRUPTION_NAMES)


def test_the_card_renders_the_section_and_parse_reads_every_table(measured):
    metrics = {**json.loads((BUNDLED_DIR / "card_metrics.json").read_text()), "evasion": measured}
    text = render_installed(BUNDLED_DIR, metrics)
    assert set(parse(text)) == {"decisions", "ranking", "wild", "backdrop", "evasion"}
    section = text.split("## Everyday edits", 1)[1].split("\n## ", 1)[0]
    assert evasion.markdown(measured) in section and "Measured by `a test`" in section
    assert "**For a screener.**" in section and "no evidence of a real photo" in section
    limits = text.split("## Known limits", 1)[1].split("\n## ", 1)[0]
    assert all(item in limits for item in evasion.limits(measured))


def test_card_only_completes_an_installed_release_and_measures_once(tiny_faces, tmp_path, monkeypatch):
    installed = tmp_path / "bundled"
    shutil.copytree(BUNDLED_DIR, installed)
    metrics = json.loads((installed / "card_metrics.json").read_text())
    del metrics["evasion"]
    fileio.write_json(installed / "card_metrics.json", metrics)
    monkeypatch.setattr(pipeline, "evasion_metrics",
                        lambda *a, **k: evasion.evasion_metrics(*a, **{**k, "edits": EDITS}))
    cfg = ReleaseConfig(data_root=str(tiny_faces), out=str(tmp_path / "out"), card_only=True,
                        previous=str(installed))
    run_release(cfg, progress=False)
    stored = json.loads((installed / "card_metrics.json").read_text())
    assert {k: v for k, v in stored.items() if k != "evasion"} == metrics          # the other tables kept
    assert stored["evasion"]["weights"] == {"winner": json.loads((installed / "release.json").read_text())
                                            ["weights"]["winner"]}
    assert stored["evasion"]["command"] == f"patchforensics release --card-only --previous {installed}"
    assert (installed / "MODEL_CARD.md").read_text() == render_installed(installed)
    assert list(parse((installed / "MODEL_CARD.md").read_text())["evasion"]) == ["none", *EDITS]

    # a table it holds is replaced only with --force, refused before any work; the same weights are not measured twice
    with pytest.raises(fileio.OutputExistsError, match="--force"):
        run_release(cfg, progress=False)
    monkeypatch.setattr(pipeline, "evasion_metrics", lambda *a, **k: pytest.fail("measured twice"))
    run_release(ReleaseConfig(**{**cfg.__dict__, "force": True}), progress=False)
    assert json.loads((installed / "card_metrics.json").read_text()) == stored
    with pytest.raises(ValueError, match="needs --previous"):
        run_release(ReleaseConfig(data_root=str(tiny_faces), out=str(tmp_path / "o2"), card_only=True))
