"""What a release trains and how it chooses: the data sets, the candidate recipes, the
held-out source and the false-alarm rate the candidates are compared at.

Its own module because the pipeline, the card and its tables all name them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..models.card import SCREENING_FPR

#: the folders of the shared faces a release trains on and a card reports, reals then fakes
REAL_SETS = ("ffhq", "celebahq")
FAKE_SETS = ("tpdne-stylegan2", "stylegan2-nvidia", "stylegan1", "generated-photos")
#: the second source of a generator the others also cover: left out once to measure transfer
HELD_OUT_SOURCE = "stylegan2-nvidia"
#: candidates are compared at the default decision's false-alarm rate
SELECTION_FPR = SCREENING_FPR
#: the share of its colour recall a candidate must keep on greyscaled validation fakes to count as
#: not defeated by greyscale (the bundled xb3_crop96 keeps 0.06 / 0.64: issue [probe])
GREY_KEPT = 0.5
#: the name of ``release --previous`` (an installed release) among the candidates of the choice
PREVIOUS = "previous"


@dataclass(frozen=True)
class Candidate:
    """One recipe: a registered model, the random-crop side it trains on (px), its length,
    whether every training folder of a class is drawn equally often (``balance_sources``) and the
    probability a training image is turned greyscale (``grey_prob``)."""

    name: str
    model: str
    fine_size: int
    max_epochs: int
    balance_sources: bool = False
    grey_prob: float = 0.0


#: the recipes compared (docs/recipe.md): a 91-px field on 96-px crops, which keeps some face in
#: every crop; the earlier 43-px field on 64-px crops, each long enough to converge; and the first
#: with the sources balanced (generated.photos, half the fakes, never has a near-white backdrop:
#: drawn as often as each other generator, it weighs less on what "fake" looks like); and the first
#: with a fifth of its training images greyscaled (greyscale takes the first's fakes to "real")
CANDIDATES = (Candidate("xb3_crop96", "xception_block3", 96, 50),
              Candidate("xb2_crop64", "xception_block2", 64, 60),
              Candidate("xb3_crop96_sources", "xception_block3", 96, 50, balance_sources=True),
              Candidate("xb3_crop96_grey", "xception_block3", 96, 50, grey_prob=0.2))
