"""The adapted checkpoint folder: weights, card, thresholds, ONNX file, numbers, model card.

Built in a temporary folder beside ``--out`` and swapped in when complete
(:func:`~patchforensics.core.fileio.atomic_dir`), so a failed run leaves nothing half
written and an existing ``--out`` is replaced only with ``--force``.
"""
from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core import fileio
from ..data.dataset import FAKE, REAL, Sample
from ..evaluation.calibrate import CALIBRATION_FILE, Calibration, choose_thresholds, fpr_threshold
from ..models.card import SCREENING_FPR, STRICT_FPR, ModelCard, fpr_name
from ..models.checkpoint import save_weights
from ..scoring.engine import Engine
from ..scoring.runtime import FastPath
from ..scoring.onnx_backend import export_onnx
from . import measure
from .card import card_markdown
from .config import AdaptConfig
from .data import Inputs

ADAPT_FILE = "adapt.json"
CARD_FILE = "MODEL_CARD.md"
WEIGHTS = "bestval"


def adapted_card(cfg: AdaptConfig, base_card: ModelCard, base_digest: str, n: int, out: Path) -> ModelCard:
    """The base's card under a new name, with what adaptation did under ``adapted``."""
    options = dict(base_card.options)
    options["adapted"] = {"generator": cfg.generator, "diffusion": cfg.diffusion, "samples": n,
                          "fake": [str(f) for f in cfg.fake], "method": cfg.method, "base": base_card.name,
                          "base_weights": base_digest, "replay": cfg.replay, "steps": cfg.steps, "lr": cfg.lr,
                          "l2sp": cfg.l2sp, "views": list(cfg.views), "seed": cfg.seed}
    options["name"] = out.name
    return replace(base_card, name=out.name, options=options, thresholds={},
                   created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"))


def _scores(engine: Engine, paths: list[str], label: int, batch: int) -> np.ndarray:
    preds = engine.predict([Sample(p, label) for p in paths], batch_size=batch, progress=False)
    return 1.0 - preds.scores["after_softmax"]


def choose(engine: Engine, inputs: Inputs, batch: int) -> Calibration:
    """Thresholds on the threshold reals (the base's validation fakes join them for ``eer``)."""
    reals = _scores(engine, inputs.threshold_real_paths, REAL, batch)
    if inputs.val_fake:
        fakes = _scores(engine, inputs.val_fake, FAKE, batch)
        labels = np.r_[np.full(len(reals), REAL), np.full(len(fakes), FAKE)]
        return choose_thresholds(1.0 - np.r_[reals, fakes], labels, (SCREENING_FPR, STRICT_FPR))
    thresholds = {fpr_name(t): fpr_threshold(1.0 - reals, np.full(len(reals), REAL), t)
                  for t in (SCREENING_FPR, STRICT_FPR)}
    return Calibration(thresholds, {"partition": "val", "n_real": len(reals), "n_fake": 0,
                                    "note": "no validation fakes: no eer threshold"})


def estimate_summary(est: dict[str, Any] | None) -> dict[str, Any] | None:
    """Held-back recall pooled over the folds, at each fold's own default and strict cuts."""
    if est is None:
        return None
    out = {"folds": est["folds"], "n": len(est["held_scores"])}
    for name in (fpr_name(SCREENING_FPR), fpr_name(STRICT_FPR)):
        out[name] = measure.rate([f for cut in est["cuts"] for f in cut[name + "_held"]])
    return out


def forgetting(base_engine: Engine, engine: Engine, base_card: ModelCard, card: ModelCard, replay,
               batch: int) -> list[dict[str, Any]]:
    sets = measure.test_sets(replay.real, replay.fake)
    if not sets:
        return []
    before = {s.name: _scores(base_engine, s.paths, s.label, batch) for s in sets}
    after = {s.name: _scores(engine, s.paths, s.label, batch) for s in sets}
    base_cut = base_card.default_cut()
    return measure.forgetting(sets, before, after, base_cut[1] if base_cut else 0.5, card.default_cut()[1])


def write_adapted(cfg: AdaptConfig, base, source: Path, model: torch.nn.Module, inputs: Inputs,
                  est: dict[str, Any] | None, losses: list[float], t0: float, progress: bool) -> dict[str, Any]:
    """Write the folder ``cfg.out``; returns what ``adapt.json`` holds."""
    out = Path(cfg.out)
    base_digest = fileio.file_sha256(base.weights_file)[:12] if base.weights_file else ""
    card = adapted_card(cfg, base.card, base_digest, len(inputs.fakes), out)
    fast = FastPath(cache_mb=0)
    engine = Engine.from_model(model, card, fast)
    calibration = choose(engine, inputs, cfg.batch_size)
    card = card.with_thresholds(calibration.thresholds)
    engine.card = card
    rows = forgetting(Engine.from_model(base.model, base.card, fast), engine, base.card, card,
                      inputs.replay, cfg.batch_size) if cfg.forgetting and inputs.replay and inputs.replay.available else []
    reals = _scores(engine, inputs.threshold_real_paths, REAL, cfg.batch_size)
    numbers = {
        "generator": cfg.generator, "diffusion": cfg.diffusion, "base": {"name": base.card.name,
                                                                         "source": str(source), "weights": base_digest},
        "method": cfg.method, "samples": {"used": len(inputs.fakes), "files": inputs.fakes.paths,
                                          "no_face": inputs.fakes.no_face,
                                          "unreadable": inputs.fakes.skipped.as_list()},
        "thresholds": {n: card.p_fake_threshold(n) for n in card.thresholds},
        "threshold_reals": {"n": len(reals), fpr_name(SCREENING_FPR): measure.rate(reals >= card.p_fake_threshold(
            fpr_name(SCREENING_FPR)))},
        "estimate": estimate_summary(est), "forgetting": rows, "notes": inputs.notes,
        "loss_end": float(np.mean(losses[-20:])) if losses else None,
    }
    with fileio.atomic_dir(out, cfg.force) as tmp:
        card.write(tmp)
        weights = tmp / f"{WEIGHTS}.safetensors"
        save_weights(weights, model, adapted=True, base=base.card.name)
        export_onnx(tmp, tmp / f"{WEIGHTS}.onnx", WEIGHTS)
        fileio.write_json(tmp / CALIBRATION_FILE, calibration.report)
        numbers["seconds"] = round(time.time() - t0, 1)
        fileio.write_json(tmp / ADAPT_FILE, numbers)
        fileio.write_text(tmp / CARD_FILE, card_markdown(card, numbers))
    return numbers
