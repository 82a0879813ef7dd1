"""The bundled detector reproduces the numbers on its model card, through ``detect``."""
from __future__ import annotations

import pytest

from patchforensics.scoring.engine import Engine
from patchforensics.screening.card_metrics import ROWS, card_metrics, parse
from patchforensics.models.checkpoint import BUNDLED_DIR


@pytest.mark.slow
def test_detect_reproduces_the_model_card(faces):
    card = parse((BUNDLED_DIR / "MODEL_CARD.md").read_text())
    assert list(card) == [name for name, _, _ in ROWS]
    got = card_metrics(faces, engine=Engine.load())
    for name, expected in card.items():
        for key, value in expected.items():
            assert got[name][key] == pytest.approx(value, abs=6e-5), (name, key)
