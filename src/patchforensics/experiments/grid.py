"""A grid file: one base training config, lists of options to vary, the suites to test on.

::

    name: rf-ablation
    data_root: null              # default: --data-root, $PATCHFORENSICS_DATA, ../shared/data/faces128
    base:                        # TrainConfig keys; real/fake are folders under the data root
      real: [ffhq]
      fake: [tpdne-stylegan2]
      max_epochs: 30
    vary:                        # every combination is one cell
      model: [xception_block1, xception_block2, xception]
      seed: [0, 1, 2]
    suites: [faces128]           # bundled names or YAML files (relative to the grid file)
    corruptions: [[], [jpeg:75], [blur:1]]   # replaces the suites' own list; [] = clean
    regions: {models: [xception_block2], seeds: [0, 1], topn: 100}   # optional (claim c)
    generators: {tpdne-stylegan2: stylegan2, stylegan2-nvidia: stylegan2}   # optional, see below

:func:`load_grid` checks everything (keys, types, model names, folders, corruptions)
and builds every cell's :class:`TrainConfig` before anything is trained, so a
broken grid fails in one line naming the key.

Every cell has a portable **key** (:func:`cell_key`): a hash of its training options with
the real/fake folders written relative to the data root, and of the names of the images it
trains and validates on (:func:`data_digest`), never of an absolute path. Two checkouts on
two machines, with the data anywhere, give a cell the same key, so a committed table of
finished cells (``docs/findings/cells.csv``) tells a fresh clone what not to train again.

``generators`` names the generator behind a fake folder where two folders hold the same
generator from different sources; a test set is then ``seen`` (the training folder),
``other-source`` (same generator, other folder) or ``unseen`` (another generator) for a cell.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.config import ConfigError, bundled_yaml_names, from_dict, load_yaml_file, require, to_dict, yaml_file
from ..core.fileio import file_sha256
from ..data.dataset import collect_samples, data_release, default_data_root, split_samples
from ..data.transforms import parse_corruptions
from ..evaluation.suite import Suite, load_suite
from ..models import is_patch_model
from ..models.checkpoint import weights_path
from ..training.train import TrainConfig

#: TrainConfig keys the experiment sets itself (one checkpoint folder per cell)
RESERVED_KEYS = ("name", "suffix", "prefix", "checkpoints_dir", "runs_dir")
#: TrainConfig keys that do not change what is trained (left out of a checkpoint's identity)
RESOURCE_KEYS = (*RESERVED_KEYS, "device", "num_workers", "threads", "cache_mb")


@dataclass
class RegionsSpec:
    """Which cells also get region histograms of their top patches (claim c), on every clean suite dataset."""

    models: list[str] = field(default_factory=list)   # empty: every patch model of the grid
    seeds: list[int] = field(default_factory=lambda: [0])
    topn: int = 100                                    # top patches per class, one per image

    def validate(self) -> None:
        require(self.topn > 0, "regions.topn", "must be > 0")
        for m in self.models:
            try:
                require(is_patch_model(m), "regions.models", f"{m} is a full-image model; regions need patches")
            except ValueError as e:
                raise ConfigError(f"regions.models: {e}") from None


@dataclass
class GridConfig:
    """The keys of a grid file."""

    name: str
    base: dict[str, Any] = field(default_factory=dict)
    vary: dict[str, list[Any]] = field(default_factory=dict)
    suites: list[str] = field(default_factory=lambda: ["faces128"])
    corruptions: list[list[str]] | None = None
    data_root: str | None = None
    which_epoch: str = "bestval"
    regions: RegionsSpec | None = None
    generators: dict[str, str] = field(default_factory=dict)   # fake folder -> generator (default: its name)

    def validate(self) -> None:
        require(re.fullmatch(r"[A-Za-z0-9._+-]+", self.name) is not None, "name",
                f"{self.name!r}: use letters, digits and . _ + - (it names the output folders)")
        require(bool(self.suites), "suites", "list at least one suite (e.g. [faces128])")
        for key in RESERVED_KEYS:
            require(key not in self.base and key not in self.vary, f"base.{key}" if key in self.base else
                    f"vary.{key}", "is set by the experiment (one checkpoint folder per cell); remove it")
        for key, values in self.vary.items():
            require(bool(values), f"vary.{key}", "give at least one value")
            require(key not in self.base, f"vary.{key}", "is also in base; keep it in one place")
        if self.corruptions is not None:
            for c in self.corruptions:
                try:
                    parse_corruptions(c)
                except ValueError as e:
                    raise ConfigError(f"corruptions: {e}") from None


@dataclass
class Cell:
    """One training run of the grid and the options that make it different from the others."""

    name: str
    options: dict[str, Any]          # the varied keys' values, as written in the grid
    train: TrainConfig               # its name is the checkpoint's: see checkpoint_name()
    key: str = ""                    # portable identity (cell_key), the same on every machine
    train_data: str = ""             # data_digest of the images it trains and validates on

    def label(self) -> str:
        return " ".join(f"{k}={_text(v)}" for k, v in self.options.items()) or "base"


@dataclass
class Grid:
    config: GridConfig
    data_root: Path
    cells: list[Cell]
    suites: list[Suite]
    out: Path                        # checkpoints, cell records, results
    test_data: dict[str, str] = field(default_factory=dict)   # suite dataset -> data_digest of its test images
    data_release: str | None = None  # the data root's release (its README's "Version"), if it says

    def spec(self) -> dict[str, Any]:
        """The effective grid (after ``--set`` overrides) as plain YAML-safe values."""
        return dataclasses.asdict(self.config)

    def generator(self, folder: str) -> str:
        """The generator behind a fake folder (by its name under the data root)."""
        return self.config.generators.get(folder, folder)

    def relation(self, train_fakes: list[str], test_fake: str) -> str:
        """``seen``, ``other-source`` or ``unseen``: how a test set's fakes relate to the training fakes."""
        if test_fake in train_fakes:
            return "seen"
        if self.generator(test_fake) in {self.generator(f) for f in train_fakes}:
            return "other-source"
        return "unseen"


def bundled_grids() -> list[str]:
    return bundled_yaml_names("patchforensics.grids")


def grid_path(path_or_name: str | os.PathLike) -> Path:
    """The YAML file of a grid: ``path_or_name`` itself, or the bundled grid of that name."""
    return yaml_file(path_or_name, "patchforensics.grids", "grid")


def apply_overrides(spec: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``KEY.PATH=VALUE`` items (values are YAML) set into a copy of ``spec``,
    e.g. ``base.max_epochs=4`` or ``vary.seed=[0,1]``."""
    spec = copy.deepcopy(spec)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. base.max_epochs=4 or vary.seed=[0,1]")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: {raw!r} is not a YAML value") from None
        node, parts = spec, key.split(".")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is not a mapping")
        node[parts[-1]] = value
    return spec


def _text(value: Any) -> str:
    return "+".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def cell_name(options: dict[str, Any]) -> str:
    """Path-safe folder name of a cell, e.g. ``model-xception_block2_seed-0``."""
    name = "_".join(f"{k}-{_text(v)}" for k, v in options.items()) or "base"
    return re.sub(r"[^A-Za-z0-9._+-]", "-", name)


def relative_folder(folder: str | os.PathLike, root: Path) -> str:
    """``folder`` as written relative to the data root (POSIX), or as given when it lies outside it."""
    try:
        return Path(folder).relative_to(root).as_posix()
    except ValueError:
        return str(folder)


def data_digest(paths: list[str], root: Path) -> str:
    """``<images>:<hash>`` of image paths relative to ``root``: which images, not their bytes.

    A data release that adds a folder leaves the digest of the others as it was; a faces128
    rebuilt from faces256 on another machine (scripts/device_grid.sh, pixel-identical, checked
    there) has the same names and so the same digest.
    """
    names = sorted(relative_folder(p, root) for p in paths)
    return f"{len(names)}:" + hashlib.sha256("\n".join(names).encode()).hexdigest()[:10]


def portable_options(cfg: TrainConfig, root: Path) -> dict[str, Any]:
    """The training options that decide what is trained, with folders relative to ``root``."""
    options = {k: v for k, v in to_dict(cfg).items() if k not in RESOURCE_KEYS}
    for key in ("real", "fake"):
        options[key] = [relative_folder(f, root) for f in options[key]]
    # starting weights enter the key by their digest, not their path; a run from scratch keeps
    # the key it had before --init-from existed (the committed cells stay found)
    init_from, which = options.pop("init_from", None), options.pop("init_from_epoch", None)
    if init_from is not None:
        options["init_from"] = file_sha256(weights_path(init_from, which))
    if not options.get("grey_prob"):        # likewise for runs without greyscale augmentation
        options.pop("grey_prob", None)
    return options


def cell_key(cfg: TrainConfig, root: Path, train_data: str) -> str:
    """12 hex digits identifying a training run on any machine: its portable options and the
    digest of the images it trains and validates on."""
    identity = {"options": portable_options(cfg, root), "train_data": train_data}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def checkpoint_name(cfg: TrainConfig, key: str) -> str:
    """``<model>_<fakes>_seed<seed>_<key>``: grids sharing an output folder share a checkpoint
    exactly when it is the same run (the key covers every option that changes what is trained)."""
    fakes = "+".join(Path(f).name for f in cfg.fake)
    return re.sub(r"[^A-Za-z0-9._+-]", "-", f"{cfg.model}_{fakes}_seed{cfg.seed}_{key}")


def _folders(value: Any, root: Path) -> Any:
    """Folder names of ``real``/``fake`` resolved under the data root (absolute paths kept)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return value                       # from_dict names the key and the wrong type
    return [str(root / str(v)) for v in items]


def load_grid(path_or_name: str | os.PathLike, overrides: list[str] | None = None,
              data_root: str | os.PathLike | None = None, out: str | os.PathLike | None = None) -> Grid:
    """Read, override and check a grid; build every cell's config (nothing is trained or written).

    Checkpoints go to ``<out>/checkpoints/<checkpoint_name>``, TensorBoard logs to ``<out>/runs``
    (``out`` defaults to ``experiments``; grids that share it share identical runs).
    """
    path = grid_path(path_or_name)
    spec = apply_overrides(load_yaml_file(path), overrides or [])
    try:
        cfg = from_dict(GridConfig, spec)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    root = Path(data_root) if data_root else Path(cfg.data_root) if cfg.data_root else None
    if root is not None and not root.is_absolute() and cfg.data_root and not data_root:
        root = path.parent / root     # a data_root written in the grid is relative to the grid file
    root = default_data_root(root)
    out = Path(out) if out else Path("experiments")
    cells = _cells(cfg, path, root, out)
    if cfg.regions is not None:
        models = {c.train.model for c in cells}
        missing = [m for m in cfg.regions.models if m not in models]
        require(not missing, "regions.models", f"{path}: {missing} are not models of this grid")
    suites = _suites(cfg, path, root)
    datasets = [d for suite in suites for d in suite.datasets]
    test_data = {d.name: data_digest([s.path for s in collect_samples([d.real], [d.fake], split="test")], root)
                 for d in datasets}
    return Grid(cfg, root, cells, suites, out, test_data, data_release(root))


def _cells(cfg: GridConfig, path: Path, root: Path, out: Path) -> list[Cell]:
    """Every combination of ``vary`` over ``base``, its training folders checked and its key computed."""
    cells = []
    train_digests: dict[tuple, str] = {}    # cells sharing their folders share one listing
    keys = list(cfg.vary)
    for values in itertools.product(*(cfg.vary[k] for k in keys)):
        options = dict(zip(keys, values))
        name = cell_name(options)
        train_cfg = _cell_train_config(cfg, options, name, path, root, out)
        for folder in train_cfg.real + train_cfg.fake:
            if not Path(folder).is_dir():
                raise FileNotFoundError(f"{path}: cell {name}: training folder {folder} not found "
                                        "(pass --data-root to point at your data)")
        folders = (tuple(train_cfg.real), tuple(train_cfg.fake), train_cfg.max_per_class)
        if folders not in train_digests:
            train, val = split_samples(train_cfg.real, train_cfg.fake, train_cfg.max_per_class)
            train_digests[folders] = data_digest([s.path for s in train + val], root)
        key = cell_key(train_cfg, root, train_digests[folders])
        train_cfg.name = checkpoint_name(train_cfg, key)
        cells.append(Cell(name, options, train_cfg, key, train_digests[folders]))
    return cells


def _cell_train_config(cfg: GridConfig, options: dict[str, Any], name: str, path: Path, root: Path,
                       out: Path) -> TrainConfig:
    """One cell's :class:`TrainConfig` (``base`` updated with its ``options``); an unknown or
    ill-typed key is refused naming its section (``base.`` or ``vary.``) and the cell."""
    merged = {**cfg.base, **options}
    for key in ("real", "fake"):
        if key in merged:
            merged[key] = _folders(merged[key], root)
    merged.update(name=name, checkpoints_dir=str(Path(out) / "checkpoints"), runs_dir=str(Path(out) / "runs"))
    train_fields = set(to_dict(TrainConfig()))
    for key in merged:
        if key not in train_fields:
            section = "vary" if key in options else "base"
            allowed = sorted(train_fields - set(RESERVED_KEYS))
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path}: unknown config key '{section}.{key}'{hint}; base and vary take the "
                              f"options of 'patchforensics train': {', '.join(allowed)}")
    try:
        train_cfg = from_dict(TrainConfig, merged)
    except ConfigError as e:
        key = str(e).split(":", 1)[0]
        section = "vary" if key in options else "base"
        where = "base" if not options else f"cell {name}"
        raise ConfigError(f"{path}: {section}.{e} ({where})") from None
    require(bool(train_cfg.real) and bool(train_cfg.fake), "base.real",
            f"{path}: every cell needs real and fake training folders (base.real/base.fake or vary)")
    return train_cfg


def _suites(cfg: GridConfig, path: Path, root: Path) -> list[Suite]:
    """The grid's suites (a name or a file next to the grid), with the grid's corruptions; suite and
    dataset names must be unique (the tables key rows by dataset name)."""
    suites = []
    for s in cfg.suites:
        local = path.parent / s
        try:
            suite = load_suite(local if local.is_file() else s, root)
        except ConfigError as e:
            raise ConfigError(f"{path}: suites: {e}") from None
        if cfg.corruptions is not None:
            suite.corruptions = [list(c or []) for c in cfg.corruptions]
        suites.append(suite)
    names = [s.name for s in suites]
    require(len(set(names)) == len(names), "suites", f"{path}: two suites are named alike ({names})")
    datasets = [d for suite in suites for d in suite.datasets]
    require(len({d.name for d in datasets}) == len(datasets), "suites",
            f"{path}: two suite datasets are named alike ({[d.name for d in datasets]}); the tables key rows "
            "by dataset name")
    return suites
