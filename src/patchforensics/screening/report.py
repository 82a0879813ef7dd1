"""``detect --report OUT.html``: one offline page to look at a screened folder.

Every face is a card: what the model examined beside its heatmap, its p(fake)
and verdict, its file and face box; the cards are sorted by p(fake), most
fake-looking first. Above them: the model, its scope note, the decision rule
and that threshold's false-alarm rate on the validation reals; below them the
files with no face (no verdict) and the unreadable ones. Pictures are inlined
as data URLs and nothing is fetched: the file works offline and can be mailed.
"""
from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from ..core import fileio
from ..core.heatmap import scale_text
from .faces import ScoredFace
from .render import PATCH_LEGEND
from .results import CAVEAT_MARK, DetectResult, false_alarm_text, summary_line


def png_data_url(image: Image.Image) -> str:
    """A picture as a ``data:image/png;base64,…`` URL (inlined in pages and JSON)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class ReportFace:
    """One face card: its file, its row of ``detect``'s output, and its picture (a data URL)."""

    path: str
    face: ScoredFace
    picture: str


STYLE = """
 *{box-sizing:border-box}
 body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}
 h1{font-size:1.5em} .muted{color:#555;font-size:.92em} .scope{background:#fff8e1;padding:.6em .8em;
 border-left:4px solid #f0b400} .faces{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));
 gap:1em} .face{border:1px solid #ddd;border-radius:8px;padding:.6em;min-width:0}
 .face img{width:100%;height:auto;image-rendering:pixelated;border:1px solid #ccc}
 .verdict{font-weight:700;text-transform:uppercase} .fake{color:#c62828} .real{color:#2e7d32}
 .path{overflow-wrap:anywhere;font-size:.85em;color:#444} ul.files li{overflow-wrap:anywhere}
 .notes{font-size:.85em;color:#8a5a00}
 .caveat{font-size:.9em;font-weight:600;color:#7a1f00;background:#ffe9e0;padding:.2em .4em;border-radius:4px}
"""


def _card(item: ReportFace) -> str:
    f = item.face
    notes = f'<div class="notes">{html.escape(", ".join(f.notes))}</div>' if f.notes else ""
    caveat = f'<div class="caveat">{CAVEAT_MARK} {html.escape(f.caveat)}</div>' if f.caveat else ""
    return (f'<div class="face {f.verdict}" data-p-fake="{f.p_fake:.6f}">'
            f'<img src="{item.picture}" alt="face #{f.index} of {html.escape(item.path)} beside its heatmap">'
            f'<div><span class="verdict {f.verdict}">{f.verdict}{CAVEAT_MARK * bool(f.caveat)}</span> p(fake) = '
            f'<b class="pfake">{f.p_fake:.3f}</b></div>{caveat}'
            f'<div class="path">{html.escape(item.path)} · face #{f.index} · box (t,l,b,r) '
            f'{html.escape(str(tuple(f.face_box)))}</div>{notes}</div>')


def render_report(result: DetectResult, faces: Sequence[ReportFace]) -> str:
    """The page, as one HTML string (faces sorted by p(fake), highest first)."""
    ranked = sorted(faces, key=lambda item: -item.face.p_fake)
    no_face = "".join(f"<li>{html.escape(im.path)}</li>" for im in result.no_face)
    skipped = "".join(f"<li>{html.escape(s['path'])}: {html.escape(s['reason'])}</li>"
                      for s in result.skipped.as_list())
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>patchforensics screening: {len(ranked)} faces</title><style>{STYLE}</style></head><body>",
        "<h1>Screening report</h1>",
        f'<p id="model">Model <b>{html.escape(result.model_name)}</b>: a face is called fake when p(fake) &ge; '
        f"{result.p_fake_threshold:.4f} (threshold '{html.escape(result.threshold_name)}').</p>",
        f'<p class="scope" id="scope">{html.escape(result.scope)}</p>',
        f'<p id="false-alarms">False alarms at this threshold on validation: '
        f"<b>{html.escape(false_alarm_text(result))}</b>.</p>",
        f'<p class="muted" id="summary">{html.escape(summary_line(result))}</p>',
        f'<p class="muted">Each face: what the model examined (aligned) beside its per-patch heatmap ('
        f"{html.escape(scale_text(result.p_fake_threshold, result.threshold_name))}; fill outside the photo "
        f"washed grey). {html.escape(PATCH_LEGEND)} "
        f"A face marked {CAVEAT_MARK} has a caveat: its verdict is not reliable. Most fake-looking first.</p>",
        f'<div class="faces" id="faces">{"".join(_card(item) for item in ranked)}</div>',
        f'<h2>No face found: no verdict ({len(result.no_face)})</h2><ul class="files" id="no-face">{no_face}</ul>',
        f'<h2>Unreadable files, skipped ({len(result.skipped)})</h2><ul class="files" id="skipped">{skipped}</ul>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(path: str | os.PathLike, result: DetectResult, faces: Sequence[ReportFace]) -> None:
    """Write the page atomically (the caller checked that ``path`` may be written)."""
    fileio.write_text(path, render_report(result, faces))
