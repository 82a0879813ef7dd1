"""``report``: one self-contained HTML page over a results folder.

It gathers what ``test``, ``visualize``, ``patches`` and ``regions`` wrote
under ``results/<name>/<partition>/epoch_<which>/<dataset>/``:

- a table of AP and accuracy per dataset × model × aggregation (vote,
  before_softmax, after_softmax, patch), best AP per dataset in bold, and a
  compact model × dataset AP table (the seed's tables notebook);
- per dataset: the PR curves, the average heatmaps with links to the
  galleries, the top-patch grids, and the region histograms with their counts
  and per-region patch grids (the seed's histograms notebook).

When the folder holds experiments (``experiment-<grid>/experiment.json``, written by
``patchforensics experiment``), a "Findings" section comes first, right under the title
and before the links to every result folder: the figures and summary tables that file
lists (AP against receptive field, the cross-generator table, validation curves, region
histograms per test generator). Each ``probe`` run found below the folder (a ``probe.json``,
written by ``patchforensics probe``) comes next: its figure and tables, as that file lists them.

Images are inlined as ``data:`` URIs, styles are inlined and nothing is
fetched from the network, so the page can be mailed or opened offline; only
the gallery links point to files next to it (relative links).
"""
from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from PIL import Image

from ..core import fileio
from ..core.config import require
from ..scoring.metrics import AGGREGATIONS
from ..core.heatmap import SCALE_TEXT
from .page import html_page
from .runs import CLASS_DIRS, GROUPS

TABLE_COLUMNS = (*AGGREGATIONS, "patch")
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


@dataclass
class ReportConfig:
    """Options of ``patchforensics report``."""

    results_dir: str
    output: str | None = None         # default <results_dir>/report.html
    title: str = "patchforensics report"
    force: bool = False

    def validate(self) -> None:
        if not Path(self.results_dir).is_dir():
            raise FileNotFoundError(f"{self.results_dir} is not a folder; pass the results folder written by "
                                    "'patchforensics test' (default: results)")
        require(not self.output or self.output.endswith((".html", ".htm")), "output",
                "give an .html file name, e.g. -o report.html")

    def output_path(self) -> Path:
        return Path(self.output) if self.output else Path(self.results_dir) / "report.html"


@dataclass
class DatasetResult:
    """What one ``results/<name>/<partition>/epoch_<which>/<dataset>/`` folder holds."""

    folder: Path
    name: str
    partition: str
    which_epoch: str
    dataset: str
    metrics: dict | None

    @property
    def label(self) -> str:
        return f"{self.name} / {self.dataset}"


def find_results(root: str | Path) -> list[DatasetResult]:
    """Every dataset folder under ``root`` (one with ``metrics.json``, ``vis/`` or ``patches/``),
    sorted by model then dataset. Gallery and patch folders are not walked into."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        outputs = {"vis", "patches"} & set(dirnames)
        if "metrics.json" not in filenames and not outputs:
            continue
        dirnames[:] = [d for d in dirnames if d not in outputs]
        folder = Path(dirpath)
        info = _read_json(folder / "metrics.json") or _read_json(folder / "vis" / "visualize.json") \
            or _read_json(folder / "patches" / "patches.json") or {}
        parts = folder.relative_to(root).parts
        guess = (["", "", "", ""] + list(parts))[-4:]       # <name>/<partition>/epoch_<which>/<dataset>
        found.append(DatasetResult(
            folder=folder, name=str(info.get("name") or guess[0]), partition=str(info.get("partition") or guess[1]),
            which_epoch=str(info.get("which_epoch") or guess[2].removeprefix("epoch_")),
            dataset=folder.name, metrics=info.get("metrics") if "metrics" in info else None))
    return sorted(found, key=lambda r: (r.name, r.partition, r.which_epoch, r.dataset))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def data_uri(path: Path) -> str:
    return f"data:{_MIME.get(path.suffix.lower(), 'application/octet-stream')};base64," \
           + base64.b64encode(path.read_bytes()).decode("ascii")


def _img(path: Path, alt: str, width: int | None = None, pixel: bool = False, min_width: int = 0,
         wide: bool = False) -> str:
    """An inlined image; ``pixel`` images (patch grids) are scaled up by whole factors to ``min_width``,
    ``wide`` figures (several panels) may take the page width."""
    if pixel and not width:
        with Image.open(path) as im:
            natural = im.size[0]
        width = natural * max(1, min_width // max(natural, 1))
    size = f' width="{width}"' if width else ""
    cls = ' class="pixel"' if pixel else ' class="wide"' if wide else ""
    return f'<img{cls} src="{data_uri(path)}" alt="{html.escape(alt)}"{size}>'


def _figure(content: str, caption: str) -> str:
    return f"<figure>{content}<figcaption>{caption}</figcaption></figure>"


def _fmt(v) -> str:
    return "–" if v is None or v != v else f"{v:.3f}"


# ------------------------------------------------------------------ tables
def metrics_table(results: list[DatasetResult]) -> str:
    """AP and accuracy per dataset × model × aggregation; best AP per dataset and column in bold."""
    scored = [r for r in results if r.metrics]
    if not scored:
        return '<p class="muted">No metrics.json found: run <code>patchforensics test</code> first.</p>'
    best: dict[tuple[str, str], float] = {}
    for r in scored:
        for col in TABLE_COLUMNS:
            ap = r.metrics.get(col, {}).get("ap")
            if ap is not None and ap == ap:
                best[(r.dataset, col)] = max(best.get((r.dataset, col), -1.0), ap)
    head = ('<tr><th class="text" rowspan="2">dataset</th><th class="text" rowspan="2">model</th>'
            '<th class="text" rowspan="2">partition</th><th class="text" rowspan="2">epoch</th>'
            '<th rowspan="2">n</th>' + "".join(f'<th colspan="2">{c}</th>' for c in TABLE_COLUMNS) + "</tr>\n<tr>"
            + "<th>AP</th><th>acc</th>" * len(TABLE_COLUMNS) + "</tr>")
    rows = []
    for r in sorted(scored, key=lambda r: (r.dataset, r.name)):
        cells = []
        for col in TABLE_COLUMNS:
            m = r.metrics.get(col, {})
            ap = m.get("ap")
            bold = ' class="best"' if ap is not None and len([s for s in scored if s.dataset == r.dataset]) > 1 \
                and ap == best.get((r.dataset, col)) else ""
            cells.append(f"<td{bold}>{_fmt(ap)}</td><td>{_fmt(m.get('acc'))}</td>")
        n = r.metrics.get("after_softmax", {}).get("n", "")
        rows.append(f'<tr><td class="text">{html.escape(r.dataset)}</td><td class="text">{html.escape(r.name)}</td>'
                    f'<td class="text">{html.escape(r.partition)}</td><td class="text">{html.escape(r.which_epoch)}'
                    f"</td><td>{n}</td>{''.join(cells)}</tr>")
    return f'<table id="metrics">\n{head}\n' + "\n".join(rows) + "\n</table>"


def ap_pivot(results: list[DatasetResult], aggregation: str = "after_softmax") -> str:
    """Compact model × dataset table of one aggregation's AP."""
    scored = [r for r in results if r.metrics]
    models = sorted({(r.name, r.partition, r.which_epoch) for r in scored})
    datasets = sorted({r.dataset for r in scored})
    if not scored or (len(models) < 2 and len(datasets) < 2):
        return ""
    ap = {((r.name, r.partition, r.which_epoch), r.dataset): r.metrics.get(aggregation, {}).get("ap")
          for r in scored}
    head = '<tr><th class="text">model (partition, epoch)</th>' + "".join(
        f"<th>{html.escape(d)}</th>" for d in datasets) + "</tr>"
    rows = [f'<tr><td class="text">{html.escape(m[0])} ({html.escape(m[1])}, {html.escape(m[2])})</td>'
            + "".join(f"<td>{_fmt(ap.get((m, d)))}</td>" for d in datasets) + "</tr>" for m in models]
    return (f"<h3>AP ({aggregation}) per model × dataset</h3>\n<table id=\"ap-pivot\">\n{head}\n"
            + "\n".join(rows) + "\n</table>")


def region_counts_table(summary: dict, cls: str) -> str:
    c = summary["classes"][cls]
    rows = []
    for region in sorted(summary["regions"], key=lambda r: -c["counts"][r]["top"]):
        k = c["counts"][region]
        if k["top"] or k["random"]:
            rows.append(f'<tr><td class="text">{html.escape(region)}</td><td>{k["top"]}</td>'
                        f'<td>{k["top_share"]:.1%}</td><td>{k["random"]}</td><td>{k["random_share"]:.1%}</td></tr>')
    no_face = (f'<p class="muted">No face found in {c["no_face_images"]} {cls} images '
               f'({c["no_face_patches"]} top patches left out): '
               + ", ".join(html.escape(Path(f).name) for f in c["no_face_files"][:20])
               + (" …" if c["no_face_images"] > 20 else "") + "</p>") if c["no_face_images"] else ""
    return (f"<table class=\"regions\"><tr><th class=\"text\">{cls}: region</th><th>top</th><th>top share</th>"
            f"<th>random</th><th>random share</th></tr>\n" + "\n".join(rows) + f"</table>{no_face}")


# ---------------------------------------------------------------- sections
def _href(target: Path, page_dir: Path) -> str:
    return quote(Path(os.path.relpath(target, page_dir)).as_posix())


def dataset_section(r: DatasetResult, page_dir: Path, anchor: str) -> str:
    parts = [f'<h2 id="{anchor}">{html.escape(r.name)} — {html.escape(r.dataset)} '
             f'<span class="muted">({html.escape(r.partition)}, epoch {html.escape(r.which_epoch)})</span></h2>']
    pr = r.folder / "pr_curve.png"
    figs = []
    if pr.is_file():
        figs.append(_figure(_img(pr, "PR curve"), "precision–recall of finding the fakes (fake = positive, by p(fake)) per aggregation"))
    vis = r.folder / "vis"
    if (vis / "average_heatmaps.png").is_file():
        info = _read_json(vis / "visualize.json") or {}
        links = " · ".join(f'<a href="{_href(vis / c / g / "index.html", page_dir)}">{c} {g}</a>'
                           for c in CLASS_DIRS.values() for g in GROUPS if (vis / c / g / "index.html").is_file())
        figs.append(_figure(_img(vis / "average_heatmaps.png", "average heatmaps", wide=True),
                            f"average p(fake) maps ({html.escape(SCALE_TEXT)}) of the {info.get('topn', '')} easiest / "
                            "hardest images per class "
                            f"({html.escape(str(info.get('average_mode', '')))} ranking); galleries: {links}"))
    if figs:
        parts.append(f'<div class="figs">{"".join(figs)}</div>')

    patches = r.folder / "patches"
    meta = _read_json(patches / "patches.json")
    if meta:
        rf = meta["receptive_field"]
        grids = [_figure(_img(patches / f"{cls}_easiest_grid.png", f"{cls} top patches", pixel=True, min_width=400),
                         f"{cls}: top {meta['counts'][cls]['patches']} patches by P({cls[:-1]}) "
                         f"of {meta['counts'][cls]['images']} images, best first"
                         + (" (one per image)" if meta["unique"] else ""))
                 for cls in CLASS_DIRS.values() if (patches / f"{cls}_easiest_grid.png").is_file()]
        parts.append(f"<h3>Most predictive patches</h3>\n<p class=\"muted\">{html.escape(meta['model'])}: receptive "
                     f"field {rf['size'][0]}×{rf['size'][1]} px, stride {rf['stride'][0]}, "
                     f"{rf['output_size'][0]}×{rf['output_size'][1]} patches per {meta['input_size']} px image.</p>"
                     f'<div class="figs">{"".join(grids)}</div>')
        for regions_dir in sorted(p for p in patches.iterdir() if p.is_dir() and p.name.startswith("regions")):
            parts.append(regions_section(regions_dir))
    return "\n".join(parts)


def regions_section(regions_dir: Path) -> str:
    summary = _read_json(regions_dir / "regions.json")
    if not summary:
        return ""
    figs = [_figure(_img(regions_dir / "histogram.png", "region histogram", wide=True),
                    "share of top patches per face region vs one random patch per top patch (same images)")]
    if (regions_dir / "segmentation_examples.png").is_file():
        figs.append(_figure(_img(regions_dir / "segmentation_examples.png", "segmentation examples", wide=True),
                            "region maps of a few source images"))
    tables = "".join(region_counts_table(summary, cls) for cls in summary["classes"])
    grids = []
    for cls in summary["classes"]:
        for region in summary["regions"]:
            grid = regions_dir / cls / f"{region}.png"
            if grid.is_file():
                n = summary["classes"][cls]["counts"][region]["top"]
                grids.append(_figure(_img(grid, f"{cls} {region}", width=140, pixel=True),
                                     f"{cls} · {html.escape(region)} ({n})"))
    return (f"<h3>Face regions ({html.escape(summary['segmenter'])})</h3>\n"
            f'<div class="figs">{"".join(figs)}</div>\n<div class="figs">{tables}</div>\n'
            f'<div class="figs">{"".join(grids)}</div>')


# ---------------------------------------------------------------- findings
def find_experiments(root: str | Path) -> list[tuple[Path, dict]]:
    """``(folder, experiment.json)`` of every experiment written into ``root``
    (``root/experiment-<grid>/``, by ``patchforensics experiment``)."""
    found = []
    for path in sorted(Path(root).glob("experiment-*/experiment.json")):
        info = _read_json(path)
        if info and isinstance(info.get("tables"), list) and isinstance(info.get("figures"), list):
            found.append((path.parent, info))
    return found


def findings_section(folder: Path, info: dict, page_dir: Path) -> str:
    """An experiment's summary figures and tables, as listed in its experiment.json."""
    anchor = f"findings-{html.escape(str(info.get('name', folder.name)))}"
    parts = [f'<h2 id="{anchor}">Findings: experiment {html.escape(str(info.get("name", "")))}</h2>',
             f'<p class="meta">{info.get("cells", "?")} cells, seeds {html.escape(str(info.get("seeds", "")))}, '
             f'{html.escape(str(info.get("epochs", "?")))} epochs, training input '
             f'{html.escape(", ".join(info.get("crops", [])))}, {info.get("minutes", "?")} min of training on '
             f'{html.escape("; ".join(info.get("devices", [])))}; '
             f'models {html.escape(", ".join(info.get("models", [])))}; '
             f'trained on {html.escape(", ".join(info.get("train_fakes", [])))}. AP: fakes positive, '
             f'{html.escape(str(info.get("aggregation", "")))} aggregation. Every row: '
             f'<a href="{_href(folder / str(info.get("table", "table.csv")), page_dir)}">the long table</a>.</p>']
    figs = [_figure(_img(folder / f["file"], f["file"], wide=True), html.escape(f["caption"]))
            for f in info["figures"] if (folder / f["file"]).is_file()]
    if figs:
        parts.append(f'<div class="figs">{"".join(figs)}</div>')
    parts += [_table_html(t) for t in info["tables"]]
    return "\n".join(parts)


def _table_html(t: dict) -> str:
    """A ``{id, title, columns, rows}`` table (experiment.json's, probe.json's) under its title."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in t["columns"])
    rows = "\n".join("<tr>" + "".join(_findings_cell(i, v) for i, v in enumerate(row)) + "</tr>" for row in t["rows"])
    return (f'<h3>{html.escape(t["title"])}</h3>\n<table class="findings" id="{html.escape(t["id"])}">'
            f"<tr>{head}</tr>\n{rows}\n</table>")


# ------------------------------------------------------------------- probes
def find_probes(root: str | Path) -> list[tuple[Path, dict]]:
    """``(folder, probe.json)`` of every ``patchforensics probe`` results folder under ``root``."""
    found = []
    for path in sorted(Path(root).rglob("probe.json")):
        info = _read_json(path)
        if info and info.get("command") == "probe" and isinstance(info.get("tables"), list):
            found.append((path.parent, info))
    return found


def probe_section(folder: Path, info: dict, page_dir: Path, anchor: str) -> str:
    """A probe run: what was probed, its figure (mean change per intervention and class) and tables."""
    parts = [f'<h2 id="{anchor}">What moves p(fake): probe of {html.escape(str(info["model"]["name"]))} '
             f'<span class="muted">({html.escape(str(info["real_folder"]))} vs '
             f'{html.escape(str(info["fake_folder"]))})</span></h2>',
             f'<p class="meta">{html.escape(str(info["header"]))} Every row: '
             f'<a href="{_href(folder / str(info["table"]), page_dir)}">probe.csv</a>.</p>',
             f'<p class="muted">{html.escape(str(info["meaning"])).replace("**", "")}</p>']
    parts += [f'<p class="muted">{html.escape(str(note))}</p>' for note in info.get("notes", [])]
    figure = folder / str(info["figure"])
    if figure.is_file():
        caption = ("mean change of p(fake), edited − original, with its 95% bootstrap interval over the faces; "
                   "red: toward fake, blue: toward real")
        parts.append(f'<div class="figs">{_figure(_img(figure, "probe", wide=True), caption)}</div>')
    parts += [_table_html(t) for t in info["tables"]]
    return "\n".join(parts)


def _findings_cell(column: int, value) -> str:
    cls = ' class="text"' if column == 0 else ""
    return f"<td{cls}>{html.escape(str(value))}</td>"


def build_report(results: list[DatasetResult], page_dir: Path, title: str, root: Path) -> str:
    toc = " · ".join(f'<a href="#r{i}">{html.escape(r.label)}</a>' for i, r in enumerate(results))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    experiments, probes = find_experiments(root), find_probes(root)
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="meta">{len(results)} result folders under <code>{html.escape(str(root))}</code>, '
            f"generated {now}. Scores are p(fake); AP treats the fakes as the positive class (the seed's "
            f"real-positive AP is <code>ap_real_positive</code> in metrics.json). Heatmaps: "
            f"{html.escape(SCALE_TEXT)}."
            + (" Findings first; every result folder below them." if experiments else "") + "</p>"]
    # the findings come before the list of result folders: a grid has hundreds of them
    body += [findings_section(folder, info, page_dir) for folder, info in experiments]
    body += [probe_section(folder, info, page_dir, f"probe{i}") for i, (folder, info) in enumerate(probes)]
    body += ["<h2>Detection metrics</h2>", f'<p class="meta" id="results-toc">{toc}</p>', metrics_table(results),
             ap_pivot(results)]
    body += [dataset_section(r, page_dir, f"r{i}") for i, r in enumerate(results)]
    return html_page(title, "\n".join(body), with_lightbox=False)


def run_report(cfg: ReportConfig) -> Path:
    """Write the report page; returns its path."""
    cfg.validate()
    out = cfg.output_path()
    if out.exists() and not cfg.force:
        raise fileio.OutputExistsError(f"{out} already exists; pass --force to overwrite it or -o another file")
    results = find_results(cfg.results_dir)
    if not results and not find_probes(cfg.results_dir):
        raise FileNotFoundError(f"no results under {cfg.results_dir}: run 'patchforensics test' (and visualize/"
                                "patches/regions) first")
    fileio.write_text(out, build_report(results, out.resolve().parent, cfg.title, Path(cfg.results_dir)))
    return out
