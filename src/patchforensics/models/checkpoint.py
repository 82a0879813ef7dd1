"""Checkpoint folders: ``config.yaml`` plus safetensors weights.

A checkpoint folder ``checkpoints/<name>/`` holds

- ``config.yaml``: the model card (:class:`~patchforensics.models.card.ModelCard`:
  architecture, input geometry, class ids, training options and, after
  calibration, decision thresholds);
- ``latest.safetensors``, ``bestval.safetensors``, ``epoch_<n>.safetensors``:
  model weights, with the epoch and validation metric in the metadata;
- ``resume.safetensors``: weights + optimizer + scheduler + progress for
  ``--resume``, written as one file so it is never out of step with itself.

Nothing here unpickles: safetensors and YAML only. A legacy seed ``.pth`` is
read with ``torch.load(weights_only=True)``, which refuses code objects.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save
from torch import nn

from ..core import fileio
from .card import ModelCard
from .registry import create_model

RESUME_FILE = "resume.safetensors"


def weights_path(ckpt_dir: str | os.PathLike, which: str) -> Path:
    """``which`` = ``latest`` | ``bestval`` | an epoch number."""
    which = str(which)
    stem = f"epoch_{which}" if which.isdigit() else which
    return Path(ckpt_dir) / f"{stem}.safetensors"


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                 meta: dict[str, Any] | None = None) -> None:
    """Atomically write tensors with JSON metadata (under the ``json`` key).

    Serialised in memory and written by :func:`fileio.write_bytes`: safetensors'
    own ``save_file`` (>= 0.6) goes through a ``.tmpXXXXXX`` file of its own that a
    killed run would leave behind, without the pid that lets a later run sweep it."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    fileio.write_bytes(path, save(tensors, metadata={"json": json.dumps(meta or {})}))


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON metadata of a safetensors file; ``ValueError`` if it is not one."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("json", "{}"))
        return load_file(str(path)), meta
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for bad headers
        raise ValueError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e}); "
                         "re-create it with 'patchforensics train' or 'patchforensics import-seed'") from None


def save_weights(path, model: nn.Module, **meta) -> None:
    save_tensors(path, _plain_state_dict(model), meta)


def _plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    return {k: v for k, v in model.state_dict().items()}


def read_legacy_pth(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a seed ``*_net_D.pth`` without executing anything it contains.

    The seed saves ``dict(state_dict=…, optimizer=…, scheduler=…, epoch=…,
    best_val_metric=…, best_val_ep=…)`` (or, for older files, the bare state
    dict). Only ``torch.load(weights_only=True)`` is used: tensors, containers
    and plain numbers (plus NumPy scalars, which the seed stores) are allowed, any
    other Python object (the way a malicious pickle runs code) is refused with a
    ``ValueError`` before it is built. Returns ``(state_dict, info)`` where
    ``info`` holds the plain-number fields (``epoch``, ``best_val_metric``, …).
    """
    import pickle

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass a seed checkpoint such as bestval_net_D.pth")
    # NumPy number scalars (the seed's best_val_metric) are plain data: a dtype and its bytes
    numpy_scalars = [np.core.multiarray.scalar, np.dtype, *{type(np.dtype(c)) for c in "?bhilqBHILQefd"}]
    try:
        with torch.serialization.safe_globals(numpy_scalars):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: refused to load: it holds Python objects, not just weights "
                         f"({_unpickler_reason(e)}). Only tensors and plain values are read from "
                         ".pth files; nothing in them is ever executed") from None
    except Exception as e:  # noqa: BLE001 - not a torch file at all (zip/pickle garbage)
        raise ValueError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    info: dict[str, Any] = {}
    state = obj
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state = obj["state_dict"]
        for k, v in obj.items():
            if isinstance(v, (bool, int, float, str, np.generic)):
                info[k] = v.item() if isinstance(v, np.generic) else v
    if (not isinstance(state, dict) or not state
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise ValueError(f"{path}: not a state dict of tensors (expected the seed's "
                         "dict(state_dict=...) or a bare state dict)")
    return {k.removeprefix("module."): v for k, v in state.items()}, info


def _unpickler_reason(e: Exception) -> str:
    """The informative sentence of torch's weights-only refusal, e.g. ``Unsupported global:
    GLOBAL posix.system was not an allowed global by default``: never torch's advice around
    it (re-running with ``weights_only=False``, or allow-listing the global), which would
    tell a user how to run the very code that was refused."""
    text = str(e)
    found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    detail = found.group(1) if found else next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    detail = detail.split(". ")[0].strip().rstrip(".")
    if not detail or re.search(r"weights_only|safe_globals|trust", detail):
        detail = type(e).__name__
    return detail[:200]


def load_legacy_pth(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a seed ``*_net_D.pth``, read safely (see :func:`read_legacy_pth`)."""
    return read_legacy_pth(path)[0]


#: The detector shipped with the package (see ``bundled/MODEL_CARD.md``) and its weights' name.
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "bundled"
BUNDLED_WEIGHTS = "weights"


@dataclass
class LoadedModel:
    """A checkpoint's weights in an eval-mode model, with its card."""

    model: nn.Module
    card: ModelCard
    meta: dict[str, Any] = field(default_factory=dict)      # the weights file's metadata (epoch …)
    weights_file: Path | None = None


def load_model(ckpt_dir: str | os.PathLike, which: str = "bestval",
               device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model of a checkpoint folder and load ``which`` weights (eval mode).

    Falls back from ``bestval`` to ``latest`` when no validation ever improved.
    """
    ckpt_dir = Path(ckpt_dir)
    card = ModelCard.read(ckpt_dir)
    path = weights_path(ckpt_dir, which)
    if not path.is_file() and str(which) == "bestval" and weights_path(ckpt_dir, "latest").is_file():
        path = weights_path(ckpt_dir, "latest")
    if not path.is_file():
        available = sorted(p.stem for p in ckpt_dir.glob("*.safetensors") if p.name != RESUME_FILE)
        raise FileNotFoundError(f"{path} not found; available: {', '.join(available) or 'none'}")
    state, meta = load_tensors(path)
    model = create_model(card.architecture, seed=None)
    model.load_state_dict(state)
    model.to(device).eval()
    return LoadedModel(model=model, card=card, meta=meta, weights_file=path)


# ------------------------------------------------------- training state
def _flatten(prefix: str, obj, tensors: dict, plain: dict) -> None:
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}", v, tensors, plain)
    elif isinstance(obj, (list, tuple)) and any(isinstance(v, (torch.Tensor, dict)) for v in obj):
        for i, v in enumerate(obj):
            _flatten(f"{prefix}.{i}", v, tensors, plain)
    else:
        plain[prefix] = obj


def save_training_state(path, model: nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler, progress: dict[str, Any]) -> None:
    """Everything ``--resume`` needs, in one atomically written safetensors file."""
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in _plain_state_dict(model).items()}
    opt_tensors: dict[str, torch.Tensor] = {}
    opt_plain: dict[str, Any] = {}
    opt_state = optimizer.state_dict()
    _flatten("optim.state", opt_state["state"], opt_tensors, opt_plain)
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"progress": progress, "optim_plain": opt_plain,
            "param_groups": opt_state["param_groups"],
            "scheduler": scheduler.state_dict() if scheduler is not None else None}
    save_tensors(path, tensors, meta)


def load_training_state(path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> dict:
    """Restore model/optimizer/scheduler/RNG from :func:`save_training_state`; returns progress."""
    tensors, meta = load_tensors(path)
    target = getattr(model, "module", model)
    target.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, v in list(tensors.items()) + list(meta["optim_plain"].items()):
        if key.startswith("optim.state."):
            _, _, idx, name = key.split(".", 3)
            state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if scheduler is not None and meta.get("scheduler") is not None:
        scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta["progress"]
