"""The files shipped in ``patchforensics/assets`` (CSS, scripts, page templates), read as text."""
from __future__ import annotations

from importlib import resources


def read_asset(name: str) -> str:
    """The text of ``assets/<name>`` from the installed package."""
    return resources.files("patchforensics").joinpath("assets", name).read_text(encoding="utf-8")
