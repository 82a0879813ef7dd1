"""What a detector can be trusted on: one line for every place a verdict is shown.

A patch classifier learns the traces of the generators it was trained on; the
bundled one was never shown a diffusion-generated face, and it does not detect
them. Every output that gives verdicts (``detect``'s table and JSON, ``serve``'s
page and ``/api/info``, the screening report) carries this note.
"""
from __future__ import annotations

from pathlib import Path

from ..models.card import ModelCard


def scope_note(card: ModelCard) -> str:
    """One sentence: what ``card``'s model was trained on, and what it does not detect."""
    real, fake = card.training_folders
    if fake:
        trained = (f"trained on real faces ({', '.join(Path(f).name for f in real) or 'unnamed'}) vs "
                   f"faces made by {', '.join(Path(f).name for f in fake)}")
    else:
        trained = "training data not recorded"
    return (f"{trained}, aligned as FFHQ at {card.input_side} px; it flags faces like those fakes only: "
            "diffusion-generated faces are not detected")
