"""The evasion table with the bundled detector on shared test faces: greyscale takes StyleGAN2
fakes from flagged to passed (issue #29), an identity edit flips nothing, and every interval and
count comes from the run."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import FACES, listed
from patchforensics.data.corruptions import parse_corruption
from patchforensics.evaluation.evasion import UNEDITED, edited_p_fake, evasion_table
from patchforensics.scoring.engine import Engine

N = 20
EDITS = ["grey", "jpeg:75", "brightness:1"]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.load()


@pytest.fixture(scope="module")
def sets() -> tuple[dict, dict]:
    def load(folder):
        return [Image.open(FACES / p).convert("RGB") for p in listed(folder, N)]
    return {"ffhq": load("ffhq/test")}, {"tpdne-stylegan2": load("tpdne-stylegan2/test")}


@pytest.fixture(scope="module")
def table(engine, sets) -> tuple[list[dict], float]:
    cut = engine.card.default_cut()[1]
    return evasion_table(engine, *sets, EDITS, cut), cut


def test_one_row_per_condition_and_set_with_counts_and_intervals(table):
    rows, _ = table
    assert [(r["edit"], r["set"]) for r in rows] == [
        (e, s) for s in ("ffhq", "tpdne-stylegan2") for e in [UNEDITED, "grey", "jpeg:75", "brightness:1"]]
    for r in rows:
        assert r["n"] == N and r["class"] == ("real" if r["set"] == "ffhq" else "fake")
        assert r["measure"] == ("false_alarms" if r["class"] == "real" else "recall")
        assert r["flagged_share"] == r["flagged"] / N and r["flipped_share"] == r["flipped"] / N
        for key in ("flagged", "flipped", "mean_change"):
            point = r[f"{key}_share"] if key != "mean_change" else r[key]
            lo, hi = r[f"{key}_ci"]
            assert lo <= point + 1e-12 and point <= hi + 1e-12, (r["edit"], key, r)
    unedited = [r for r in rows if r["edit"] == UNEDITED]
    assert all(r["flipped"] == 0 and r["mean_change"] == 0 for r in unedited)


def test_greyscale_lets_stylegan2_fakes_pass_and_an_identity_edit_flips_nothing(table):
    rows, _ = table
    fake = {r["edit"]: r for r in rows if r["set"] == "tpdne-stylegan2"}
    # issue #29 measured 16 of 20 flagged in colour and 0 of 20 in greyscale
    assert fake[UNEDITED]["flagged"] >= 10
    assert fake["grey"]["flagged"] <= fake[UNEDITED]["flagged"] // 4
    assert fake["grey"]["flipped"] >= fake[UNEDITED]["flagged"] - fake["grey"]["flagged"]
    assert fake["grey"]["mean_change"] < 0 and fake["grey"]["mean_change_ci"][1] < 0
    for r in rows:
        if r["edit"] == "brightness:1":
            assert r["flipped"] == 0 and r["mean_change"] == 0.0, r


def test_the_numbers_are_the_scores_of_the_edited_images(engine, sets, table):
    rows, cut = table
    fakes = sets[1]["tpdne-stylegan2"]
    p = edited_p_fake(engine, fakes, parse_corruption("jpeg:75"), batch_size=7)     # batches do not matter
    row = next(r for r in rows if r["set"] == "tpdne-stylegan2" and r["edit"] == "jpeg:75")
    assert row["flagged"] == int(np.sum(p >= cut))
    assert row["mean_p_fake"] == pytest.approx(float(p.mean()), abs=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"edits": ["sepia"]}, "unknown corruption"),
    ({"threshold": 1.5}, r"\[0, 1\]"),
    ({"fakes": {"nothing": []}}, "nothing hold no images"),
])
def test_bad_input_is_refused_before_any_scoring(kwargs, message):
    args = {"engine": None, "reals": {"r": [Image.new("RGB", (128, 128))]}, "fakes": {}, "edits": ["grey"],
            "threshold": 0.5, **kwargs}
    with pytest.raises(ValueError, match=message):
        evasion_table(**args)       # engine None: refused before the engine is ever used
