"""Where a release came from: the weights each measurement was made on, and the data version,
git commit, machine, precision, wall time and validation curve of its runs, which
``release.json`` keeps and the card's provenance line shows."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..core import fileio
from ..core.imageio import list_images
from ..core.provenance import code_commit
from ..data.dataset import data_release
from ..scoring.runtime import cpu_kind
from ..training.summary import read_train_summary, training_minutes
from .recipe import FAKE_SETS, REAL_SETS

#: the validation curve keeps every this many epochs (and the last)
CURVE_EVERY = 5


def weights_digest(ckpt: Path, which: str = "bestval") -> str:
    """Short content hash of a run's ``which`` weights: what a measurement was made on."""
    return fileio.file_sha256(ckpt / f"{which}.safetensors")[:12]


def provenance(root: Path, ckpts: Sequence[Path], device: str) -> dict[str, Any]:
    """Data version and image counts, git commit, where and in which precision each run trained,
    its wall time and validation curve (every 5th epoch, :data:`CURVE_EVERY`, and the last)."""
    runs = {}
    for ckpt in ckpts:
        summary = read_train_summary(ckpt)
        history = summary.get("history", [])
        config = fileio.read_yaml(ckpt / "config.yaml")
        curve = [(h["epoch"], h["val_ap"]["after_softmax"]) for h in history
                 if h["epoch"] % CURVE_EVERY == 0 or h is history[-1]]
        runs[ckpt.name] = {"epochs": len(history), "best_epoch": summary.get("best_epoch"),
                           "train_minutes": round(training_minutes(history), 1),
                           "runtime": config.get("runtime", {}), "curve": curve}
    counts = {split: {d: len(list_images(root / d / split)) for d in REAL_SETS + FAKE_SETS}
              for split in ("train", "val", "test")}
    return {"data_version": data_release(root), "counts": counts, "commit": code_commit(), "cpu": cpu_kind(),
            "device": device, "runs": runs}


def release_summary(winner_name: str, weights: dict[str, str], onnx: Path, selection: dict[str, Any],
                    cross: dict[str, Any] | None, prov: dict[str, Any], minutes: float) -> dict[str, Any]:
    """What ``release.json`` holds: the winner, the weights each measurement was made on, the ONNX
    export's file name, the validation choice, the cross-source check, the provenance and the
    minutes this call took (a resumed release counts only its own)."""
    return {"winner": winner_name, "weights": weights, "onnx": onnx.name, "selection": selection,
            "cross_source": cross, "provenance": prov, "release_minutes_this_call": round(minutes, 1)}
