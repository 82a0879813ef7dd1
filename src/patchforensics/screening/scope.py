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
    """One sentence: what ``card``'s model was trained on, and what it does not detect.

    An adapted model (``patchforensics adapt``) names the generator it was taught and
    from how many samples; when the user said that generator is a diffusion model, the
    note says it flags that one's faces, not diffusion models in general."""
    real, fake = card.training_folders
    adapted = card.options.get("adapted") or {}
    if fake:
        trained = (f"trained on real faces ({', '.join(Path(f).name for f in real) or 'unnamed'}) vs "
                   f"faces made by {', '.join(Path(f).name for f in fake)}")
    else:
        trained = "training data not recorded"
    if adapted:
        trained += f", adapted to {adapted.get('generator')} from {adapted.get('samples')} of its samples"
    if adapted.get("diffusion"):
        limit = (f"of diffusion models it flags faces like {adapted.get('generator')}'s only: other diffusion "
                 "models' faces are not reliably detected")
    else:
        limit = "diffusion-generated faces are not detected"
    return (f"{trained}, aligned as FFHQ at {card.input_side} px; it flags faces like those fakes only: "
            f"{limit}")
