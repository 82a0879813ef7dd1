"""The release's choice on validation: backdrops first, then recall, and greyscale as a tie-break
within the best candidate's recall interval."""
from __future__ import annotations

from patchforensics.release.pipeline import grey_ok, pick_winner


def _choice(recall, grey, backdrop_ok=True, se=0.03, ap=0.97):
    return {"mean_recall": recall, "mean_recall_se": se, "backdrop_ok": backdrop_ok, "val_ap": ap,
            "grey": {"mean_recall": grey}}


def test_greyscale_decides_only_within_the_best_recall_interval():
    assert not grey_ok(_choice(0.64, 0.06)) and grey_ok(_choice(0.60, 0.45))
    # within 1.96 x 0.03 of the best: the candidate greyscale does not defeat wins
    assert pick_winner({"colour": _choice(0.64, 0.06), "grey": _choice(0.60, 0.45)}) == "grey"
    # further below: recall decides, greyscale or not
    assert pick_winner({"colour": _choice(0.64, 0.06), "grey": _choice(0.55, 0.45)}) == "colour"
    # a backdrop failure is not bought back by greyscale
    assert pick_winner({"colour": _choice(0.64, 0.06), "grey": _choice(0.63, 0.6, backdrop_ok=False)}) == "colour"
    # when the best keeps its recall in grey, nothing changes
    assert pick_winner({"colour": _choice(0.64, 0.5), "grey": _choice(0.63, 0.6)}) == "colour"


def test_a_choice_measured_before_the_grey_check_counts_as_defeated():
    old = {"mean_recall": 0.64, "backdrop_ok": False, "val_ap": 0.97}
    assert not grey_ok(old)
    assert pick_winner({"old": old, "new": _choice(0.64, 0.5, backdrop_ok=False)}) == "new"   # no interval: no cost allowed
