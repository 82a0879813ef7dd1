"""``test-suite``: evaluate one checkpoint on a group of datasets, optionally each
under several corruptions, and write one table (the seed's ``test_runs.py``).

A suite file is YAML::

    name: faces128
    datasets:                      # folders relative to the data root
      - {name: tpdne-stylegan2, real: ffhq, fake: tpdne-stylegan2}
      - {name: generated-photos, real: ffhq, fake: generated-photos}
    corruptions: [[], [jpeg:75]]   # optional; [] = clean

The data root is ``--data-root`` if given, else the suite's ``root:`` key
(relative to the YAML file), else the YAML file's folder. Bundled suites (by
name, e.g. ``faces128``) use :func:`patchforensics.data.default_data_root`.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core import fileio
from ..core.config import ConfigError, bundled_yaml_names, require, yaml_file
from ..data.dataset import default_data_root
from ..scoring.engine import Engine
from ..scoring.runtime import FastPath
from .evaluate import TestConfig, run_test
from ..scoring.metrics import AGGREGATIONS
from ..data.transforms import parse_corruptions

TABLE_COLUMNS = ("dataset", "corruption", "aggregation", "ap", "ap_real_positive", "acc", "roc_auc", "real_acc",
                 "fake_acc", "n")


@dataclass(frozen=True)
class SuiteDataset:
    name: str
    real: str
    fake: str


@dataclass
class Suite:
    name: str
    datasets: list[SuiteDataset]
    corruptions: list[list[str]] = field(default_factory=lambda: [[]])

    def parts(self, tests: set[tuple[str, str]]) -> list["Suite"]:
        """This suite cut down to ``tests`` (``(dataset, corruption)``, corruption as in the rows:
        ``jpeg:75``, ``none``): one part per set of corruptions wanted, with the datasets wanting
        them, each named as this suite (so its rows are)."""
        wanted: dict[tuple, list[SuiteDataset]] = {}
        for ds in self.datasets:
            corruptions = tuple(tuple(c) for c in self.corruptions if (ds.name, ",".join(c) or "none") in tests)
            if corruptions:
                wanted.setdefault(corruptions, []).append(ds)
        return [Suite(self.name, datasets, [list(c) for c in corruptions]) for corruptions, datasets in wanted.items()]


def bundled_suites() -> list[str]:
    return bundled_yaml_names("patchforensics.suites")


def suite_path(path_or_name: str | os.PathLike) -> Path:
    """The YAML file of a suite: ``path_or_name`` itself, or the bundled suite of that name."""
    return yaml_file(path_or_name, "patchforensics.suites", "suite")


def load_suite(path_or_name: str | os.PathLike, data_root: str | os.PathLike | None = None) -> Suite:
    """Read a suite YAML (or a bundled suite by name, e.g. ``faces128``) and resolve
    its folders. Fails early on unknown keys, missing folders and bad corruptions."""
    path = suite_path(path_or_name)
    if not Path(path_or_name).is_file():
        data_root = default_data_root(data_root)
    spec = fileio.read_yaml(path) or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: expected a mapping with 'datasets'")
    unknown = set(spec) - {"name", "root", "datasets", "corruptions"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; use name, root, datasets, corruptions")
    if data_root is not None:
        root = Path(data_root)
    elif spec.get("root"):
        root = (path.parent / spec["root"]) if not Path(spec["root"]).is_absolute() else Path(spec["root"])
    else:
        root = path.parent
    datasets = []
    for i, d in enumerate(spec.get("datasets") or []):
        if not isinstance(d, dict) or set(d) != {"name", "real", "fake"}:
            raise ConfigError(f"{path}: datasets[{i}] needs exactly name, real and fake")
        ds = SuiteDataset(str(d["name"]), str(root / d["real"]), str(root / d["fake"]))
        for folder in (ds.real, ds.fake):
            if not Path(folder).is_dir():
                raise FileNotFoundError(f"suite {path.name}, dataset {ds.name}: {folder} is not a folder "
                                        "(pass --data-root to point at your data)")
        datasets.append(ds)
    require(bool(datasets), "datasets", f"{path} lists no datasets")
    corruptions = spec.get("corruptions") or [[]]
    try:
        for c in corruptions:
            parse_corruptions(c)
    except ValueError as e:
        raise ConfigError(f"{path}: corruptions: {e}") from None
    return Suite(str(spec.get("name") or path.stem), datasets, [list(c or []) for c in corruptions])


@dataclass
class SuiteResult:
    rows: list[dict]
    csv_path: Path
    markdown_path: Path

    def markdown(self) -> str:
        return self.markdown_path.read_text()


def run_suite(checkpoint: str | os.PathLike, suite: Suite, which_epoch: str = "bestval",
              partition: str = "test", results_dir: str = "results", batch_size: int = 64,
              num_workers: int = 0, device: str = "auto", force: bool = False,
              progress: bool = True, backend: str = "auto") -> SuiteResult:
    """Run ``test`` for every dataset × corruption and write
    ``results/<name>/<partition>/epoch_<which>/suite_<suite>.{csv,md}``."""
    engine = Engine.load(checkpoint, which_epoch, FastPath(backend=backend, cache_mb=0), device)
    rows = []
    out_dir = None
    for corruption in suite.corruptions:
        for ds in suite.datasets:
            cfg = TestConfig(checkpoint=str(checkpoint), real=[ds.real], fake=[ds.fake], dataset_name=ds.name,
                             which_epoch=which_epoch, partition=partition, corrupt=corruption,
                             results_dir=results_dir, batch_size=batch_size, num_workers=num_workers,
                             device=device, force=force, backend=backend)
            result, out_dir = run_test(cfg, engine=engine, progress=progress)
            for agg in AGGREGATIONS + ("patch",):
                m = result["metrics"][agg]
                rows.append({"dataset": ds.name, "corruption": ",".join(corruption) or "none",
                             "aggregation": agg, **{k: m[k] for k in TABLE_COLUMNS[3:]}})
    base = out_dir.parent / f"suite_{suite.name}"
    csv_path, md_path = base.with_suffix(".csv"), base.with_suffix(".md")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    fileio.write_text(csv_path, buf.getvalue())
    fileio.write_text(md_path, markdown_table(rows, title=f"{engine.name} ({which_epoch}) on suite "
                                                          f"{suite.name}, partition {partition}"))
    return SuiteResult(rows, csv_path, md_path)


def markdown_table(rows: list[dict], title: str = "") -> str:
    head = ("| dataset | corruption | aggregation | AP | seed AP | acc@0.5 | ROC-AUC | real acc | fake acc "
            "| n |")
    note = ("AP: fakes are the positive class, ranked by p(fake); seed AP: reals positive, ranked by "
            "P(real), as the paper's code")
    lines = ([f"**{title}** ({note})" if title else note, ""]) + [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['corruption']} | {r['aggregation']} | {r['ap']:.4f} | "
                     f"{r['ap_real_positive']:.4f} | {r['acc']:.4f} | {r['roc_auc']:.4f} | {r['real_acc']:.4f} | "
                     f"{r['fake_acc']:.4f} | {r['n']} |")
    return "\n".join(lines) + "\n"
