"""The HTML page shell of every explain output: shared CSS and the lightbox script inlined."""
from __future__ import annotations

import html

from ..core.assets import read_asset


def html_page(title: str, body: str, with_lightbox: bool = True) -> str:
    """A complete HTML page with the shared CSS (and lightbox script) inlined: no
    external requests, so it works from the file system and offline."""
    script = f"<script>\n{read_asset('gallery.js')}</script>\n" if with_lightbox else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>\n{read_asset('explain.css')}</style>\n"
            f"</head>\n<body>\n{body}\n{script}</body>\n</html>\n")
