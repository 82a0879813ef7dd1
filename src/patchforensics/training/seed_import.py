"""``import-seed``: turn a seed ``*_net_D.pth`` into a checkpoint folder.

The original code saves ``checkpoints/<name>/{bestval,latest,<epoch>}_net_D.pth``
(pickles) next to an ``opt.yml`` of its options. This module reads such a file
with :func:`patchforensics.models.checkpoint.read_legacy_pth` (``weights_only=True``:
a pickle that would run code is refused), renames the seed's layer names to
this package's, checks every tensor against the model it is meant for, and
writes ``config.yaml`` + ``<which>.safetensors``, so ``test``, ``detect`` and
the other commands use it like a checkpoint trained here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core import fileio
from ..core.config import ConfigError, require
from ..models import check_model_name, create_model
from ..models.card import CONFIG_FILE, ModelCard
from ..models.checkpoint import read_legacy_pth, save_tensors, weights_path
from .config import TrainConfig

#: seed file name -> which weights it holds
SEED_FILE_PATTERN = re.compile(r"(?P<which>bestval|latest|\d+)_net_D\.pth")
#: the seed's ``loadSize``/``fineSize`` defaults per family (options/base_options + networks.py)
SEED_DEFAULT_SIZES = {"xception": (333, 299), "resnet": (256, 224)}
#: seed WideNet is one ``nn.Sequential`` named ``model``; its parametrised positions here
_WIDENET_NAMES = {"0": "features.conv", "1": "features.bn", "4": "features.fc1",
                  "6": "features.fc2", "8": "head"}


@dataclass
class ImportSeedConfig:
    """Options of ``patchforensics import-seed``; ``None`` = read from the seed's
    ``opt.yml`` beside the file (or the file name / seed defaults)."""

    pth: str
    model: str | None = None          # [which_model_netD]
    load_size: int | None = None      # [loadSize]
    fine_size: int | None = None      # [fineSize]
    name: str | None = None
    which: str | None = None          # bestval | latest | an epoch number
    checkpoints_dir: str = "checkpoints"
    force: bool = False

    def validate(self) -> None:
        require(bool(self.pth), "pth", "give the seed checkpoint, e.g. checkpoints/gp1-gan-winversion/bestval_net_D.pth")
        if self.model is not None:
            try:
                check_model_name(self.model)
            except ValueError as e:
                raise ConfigError(f"model: {e}") from None
        for key in ("load_size", "fine_size"):
            value = getattr(self, key)
            require(value is None or value > 0, key, "must be > 0")
        if self.load_size and self.fine_size:
            require(self.fine_size <= self.load_size, "fine_size",
                    f"fine_size {self.fine_size} is larger than load_size {self.load_size}")
        require(self.which is None or self.which in ("bestval", "latest") or self.which.isdigit(),
                "which", "must be bestval, latest or an epoch number")
        require(self.name is None or (self.name and "/" not in self.name and self.name not in (".", "..")),
                "name", "must be a folder name without '/'")


@dataclass
class ImportResult:
    checkpoint_dir: Path
    weights_file: Path
    model: str
    which: str
    load_size: int
    fine_size: int
    seed_info: dict[str, Any]


def seed_key_to_ours(key: str, pointwise_parents: set[str]) -> str:
    """Rename one seed state-dict key to this package's layout.

    ``pointwise_parents``: module paths that own a ``pointwise`` conv, i.e. the
    seed's SeparableConv2d, whose depthwise conv it calls ``conv1``.
    """
    widenet = re.fullmatch(r"model\.(\d+)\.(.+)", key)
    if widenet and widenet.group(1) in _WIDENET_NAMES:
        return f"{_WIDENET_NAMES[widenet.group(1)]}.{widenet.group(2)}"
    if key.startswith("convout."):
        return "head." + key[len("convout."):]
    if key.startswith(("last_linear.", "fc.")):
        return "fc." + key.split(".", 1)[1]
    key = re.sub(r"^(block\d+)\.skip\.weight$", r"\1.skip.0.weight", key)
    key = re.sub(r"^(block\d+)\.skipbn\.", r"\1.skip.1.", key)
    parent, _, leaf = key.rpartition(".")
    if parent.endswith(".conv1") and parent[: -len(".conv1")] in pointwise_parents:
        key = f"{parent[: -len('.conv1')]}.depthwise.{leaf}"
    return "features." + key


def convert_seed_state_dict(state: dict[str, torch.Tensor], model_name: str) -> dict[str, torch.Tensor]:
    """Seed tensors renamed for ``create_model(model_name)``, checked name by name and
    shape by shape; ``ValueError`` listing the differences otherwise."""
    pointwise_parents = {k.rsplit(".", 2)[0] for k in state if k.endswith(".pointwise.weight")}
    converted = {seed_key_to_ours(k, pointwise_parents): v for k, v in state.items()}
    expected = create_model(model_name, seed=None).state_dict()
    missing = [k for k in expected if k not in converted]
    unexpected = [k for k in converted if k not in expected]
    wrong_shape = [f"{k} {tuple(converted[k].shape)} != {tuple(v.shape)}"
                   for k, v in expected.items() if k in converted and converted[k].shape != v.shape]
    if missing or unexpected or wrong_shape:
        parts = [f"{label}: {', '.join(items[:4])}{' …' if len(items) > 4 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected),
                                      ("wrong shape", wrong_shape)) if items]
        raise ValueError(f"the seed weights do not fit model {model_name!r} ({'; '.join(parts)}); "
                         "check --model (the seed's which_model_netD)")
    return {k: converted[k].to(expected[k].dtype) for k in expected}


def _seed_options(pth: Path) -> dict[str, Any]:
    """The seed's ``opt.yml`` beside ``pth`` (plain YAML only), or ``{}``."""
    opt_file = pth.parent / "opt.yml"
    if not opt_file.is_file():
        return {}
    try:
        opts = fileio.read_yaml(opt_file)
    except Exception:  # noqa: BLE001 - tags that would build Python objects, bad syntax
        return {}
    return opts if isinstance(opts, dict) else {}


def resolve(cfg: ImportSeedConfig) -> ImportSeedConfig:
    """``cfg`` with every ``None`` filled from ``opt.yml``, the file name or the seed
    defaults; ``ConfigError`` naming the option to pass when that is impossible."""
    pth = Path(cfg.pth)
    opts = _seed_options(pth)
    model = cfg.model or opts.get("which_model_netD")
    if not isinstance(model, str):
        raise ConfigError("model: no opt.yml with which_model_netD beside the .pth; "
                          "pass --model, e.g. --model xception_block2")
    try:
        check_model_name(model)
    except ValueError as e:
        raise ConfigError(f"model: {e}") from None
    family = next((f for f in SEED_DEFAULT_SIZES if model.startswith(f)), None)
    default_load, default_fine = SEED_DEFAULT_SIZES.get(family, (None, None))
    load_size = cfg.load_size or opts.get("loadSize") or default_load
    fine_size = cfg.fine_size or opts.get("fineSize") or default_fine
    if not isinstance(load_size, int) or not isinstance(fine_size, int):
        raise ConfigError("load_size: not in opt.yml and no seed default for this model; "
                          "pass --load-size and --fine-size")
    match = SEED_FILE_PATTERN.fullmatch(pth.name)
    which = cfg.which or (match.group("which") if match else None)
    if which is None:
        raise ConfigError(f"which: cannot tell from the file name {pth.name!r}; pass --which bestval|latest|N")
    name = cfg.name or opts.get("name") or pth.parent.name
    out = ImportSeedConfig(pth=str(pth), model=model, load_size=load_size, fine_size=fine_size,
                           name=str(name), which=str(which), checkpoints_dir=cfg.checkpoints_dir,
                           force=cfg.force)
    out.validate()
    return out


def import_seed(cfg: ImportSeedConfig) -> ImportResult:
    """Convert ``cfg.pth`` into ``<checkpoints_dir>/<name>/<which>.safetensors`` (+ config.yaml).

    Everything is checked before anything is written; an existing weights file
    is replaced only with ``force``, and a folder holding a different model is refused.
    """
    cfg.validate()
    cfg = resolve(cfg)
    state, seed_info = read_legacy_pth(cfg.pth)
    state = convert_seed_state_dict(state, cfg.model)
    model = create_model(cfg.model, seed=None)
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, cfg.fine_size, cfg.fine_size))
    if logits.ndim != 4 or logits.shape[1] != 2:
        raise ValueError(f"model {cfg.model} gives logits of shape {tuple(logits.shape)}, expected (1, 2, H', W')")

    ckpt_dir = Path(cfg.checkpoints_dir) / cfg.name
    out_file = weights_path(ckpt_dir, cfg.which)
    if out_file.exists() and not cfg.force:
        raise fileio.OutputExistsError(f"{out_file} already exists; pass --force to replace it")
    card = TrainConfig(model=cfg.model, load_size=cfg.load_size, fine_size=cfg.fine_size,
                       name=cfg.name).card(cfg.name)
    if (ckpt_dir / CONFIG_FILE).is_file():
        old = ModelCard.read(ckpt_dir)
        differs = [k for k in ("architecture", "load_size", "fine_size") if getattr(old, k) != getattr(card, k)]
        if differs and not cfg.force:
            raise fileio.OutputExistsError(
                f"{ckpt_dir / CONFIG_FILE} describes another model ({', '.join(differs)} differ); "
                "choose another --name or pass --force")
    card.write(ckpt_dir)
    meta = {"imported_from": str(cfg.pth), "source_sha256": fileio.file_sha256(cfg.pth),
            "epoch": seed_info.get("epoch"), "seed_info": seed_info}
    save_tensors(out_file, state, meta)
    return ImportResult(ckpt_dir, out_file, cfg.model, cfg.which, cfg.load_size, cfg.fine_size, seed_info)
