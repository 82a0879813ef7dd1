"""``ModelCard``: what a trained model is, as one typed, frozen object.

A card says which registered architecture a checkpoint holds, whether it scores
patches or whole images (from the registry, not the name's spelling), the input
geometry it was trained with, its class ids, its receptive field and its
calibrated thresholds. It is the only code that reads or writes a checkpoint's
``config.yaml`` and the ``patchforensics`` metadata inside an exported ONNX file;
everything else asks the card.

Score convention: the networks' channel 0 is *fake* and 1 is *real* (the seed's
``fake_class_id = 0``). Everything a person reads shows ``p(fake)``;
:meth:`ModelCard.p_fake` turns logits into it. Thresholds are *stored* as the
seed stored them, on ``P(real)`` (an image is fake when ``P(real) <= t``);
:meth:`ModelCard.p_fake_threshold` gives the same cut on ``p(fake)``
(fake when ``p(fake) >= 1 - t``).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..core import fileio
from ..data.dataset import FAKE, REAL
from ..data.transforms import TransformConfig
from .receptive_field import ReceptiveField, architecture_field
from .registry import check_model_name, is_patch_model

CONFIG_FILE = "config.yaml"
#: keys of ``config.yaml`` that describe the model rather than a training option
CARD_KEYS = ("name", "class_ids", "created", "thresholds", "runtime")
#: training options renamed since they were first written (old name -> new name)
RENAMED_OPTIONS = {"inference_backend": "backend"}
CLASS_IDS = {"fake": FAKE, "real": REAL}
#: false-alarm targets on the validation reals of the two screening thresholds: the default
#: decision and the strict one (why 3%: evaluation/calibrate.py and docs/detect.md)
SCREENING_FPR, STRICT_FPR = 0.03, 0.01
EER = "eer"


def fpr_name(target_fpr: float) -> str:
    """Threshold name for a false-positive-rate target, e.g. ``0.01 -> 'fpr1pct'``."""
    return f"fpr{target_fpr * 100:g}pct"


#: names of the default decision threshold, first stored one wins: the screener's, then the
#: equal-error threshold of checkpoints calibrated before ``fpr3pct`` existed
DEFAULT_THRESHOLD_NAMES = (fpr_name(SCREENING_FPR), EER)
STRICT_THRESHOLD = fpr_name(STRICT_FPR)
#: the ONNX metadata key under which the card travels inside an exported model
ONNX_METADATA_KEY = "patchforensics"


def training_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The training options in a ``config.yaml``-style mapping: the card's own keys
    dropped and renamed options given their current name."""
    out = {RENAMED_OPTIONS.get(k, k): v for k, v in values.items() if k not in CARD_KEYS}
    if "name" in values and not values.get("suffix"):
        out["name"] = values["name"]   # a resolved name with a suffix already includes it
    return out


@dataclass(frozen=True)
class ModelCard:
    """Identity, geometry and thresholds of one trained model.

    ``architecture``: a registered model name (``xception_block2`` …).
    ``load_size``/``fine_size`` (px): the image's shorter side is resized to
    ``load_size``; a centred square of :attr:`input_side` is then cut (the whole
    ``load_size`` square for patch models, ``fine_size`` for full-image ones).
    ``thresholds``: calibrated cut points on ``P(real)``, by name (``eer`` …).
    ``options``: the training options as written (provenance, training folders).
    ``runtime``: what training really ran with (``precision`` fp32/bf16 as resolved from
    the ``bf16`` option, validation ``backend``, ``device``, ``cpu`` kind); empty for imports.
    """

    name: str
    architecture: str
    load_size: int
    fine_size: int
    thresholds: Mapping[str, float] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    created: str | None = None
    runtime: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_model_name(self.architecture)

    # ------------------------------------------------------------ geometry
    @property
    def patch(self) -> bool:
        """True for a patch model (a map of logits), False for a full-image model."""
        return is_patch_model(self.architecture)

    @property
    def input_side(self) -> int:
        """Side in px of the square the model sees."""
        return self.load_size if self.patch else self.fine_size

    @property
    def crop_rule(self) -> str:
        return (f"shorter side resized to {self.load_size} px (Lanczos), then the centred "
                f"{self.input_side} x {self.input_side} px square")

    def transform(self) -> TransformConfig:
        """The evaluation geometry as :func:`~patchforensics.data.transforms.eval_image` takes it."""
        return TransformConfig(load_size=self.load_size, fine_size=self.fine_size, patch_model=self.patch)

    def receptive_field(self, side: int | None = None) -> ReceptiveField:
        """The receptive field at a ``side`` px input (default :attr:`input_side`);
        ``ValueError`` for a full-image model."""
        if not self.patch:
            raise ValueError(f"{self.architecture} is a full-image model: it has no patch receptive field")
        return architecture_field(self.architecture, side or self.input_side)

    def patch_boxes(self, side: int | None = None) -> np.ndarray:
        """``(H', W', 4)`` int boxes ``(top, left, bottom, right)`` of the input pixels each
        output sees (clipped to the input); the whole input for a full-image model."""
        side = side or self.input_side
        if not self.patch:
            return np.array([[[0, 0, side, side]]], dtype=np.int64)
        return self.receptive_field(side).clipped_boxes()

    @property
    def training_folders(self) -> tuple[list[str], list[str]]:
        """``(real, fake)``: the folders the model was trained on (empty for an import)."""
        return list(self.options.get("real") or []), list(self.options.get("fake") or [])

    # -------------------------------------------------------------- scores
    @property
    def class_ids(self) -> dict[str, int]:
        return dict(CLASS_IDS)

    @staticmethod
    def p_fake(logits: torch.Tensor) -> torch.Tensor:
        """``(N, 2, H', W')`` logits -> ``(N, H', W')`` per-patch p(fake) (softmax, float32)."""
        return torch.softmax(logits.float(), dim=1)[:, FAKE]

    def p_fake_threshold(self, name: str) -> float:
        """The stored threshold ``name`` as a cut on p(fake): fake when ``p(fake) >=`` it."""
        return 1.0 - float(self.thresholds[name])

    def default_threshold(self) -> str | None:
        """The name of the stored threshold ``detect``, ``serve`` and ``visualize`` decide with by
        default (:data:`DEFAULT_THRESHOLD_NAMES`), or None when the card holds none of them."""
        return next((n for n in DEFAULT_THRESHOLD_NAMES if n in self.thresholds), None)

    def default_cut(self) -> tuple[str, float] | None:
        """``(name, p(fake) cut)`` of :meth:`default_threshold`, or None when uncalibrated."""
        name = self.default_threshold()
        return (name, self.p_fake_threshold(name)) if name else None

    def with_thresholds(self, thresholds: Mapping[str, float]) -> "ModelCard":
        return replace(self, thresholds={k: float(v) for k, v in thresholds.items()})

    # --------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """The ``config.yaml`` mapping: training options first, then the card's keys."""
        out = {**self.options, "model": self.architecture, "load_size": self.load_size,
               "fine_size": self.fine_size, "name": self.name, "class_ids": self.class_ids,
               "created": self.created or time.strftime("%Y-%m-%d %H:%M:%S")}
        if self.runtime:
            out["runtime"] = dict(self.runtime)
        if self.thresholds:
            out["thresholds"] = {k: float(v) for k, v in self.thresholds.items()}
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "config", default_name: str = "") -> "ModelCard":
        """A card from a ``config.yaml`` mapping; ``ValueError`` naming ``where`` when
        it is not one (no model, unknown architecture, other class ids)."""
        if not isinstance(values, Mapping) or "model" not in values:
            raise ValueError(f"{where} is not a patchforensics config (no 'model' key)")
        ids = values.get("class_ids", CLASS_IDS)
        if dict(ids) != CLASS_IDS:
            raise ValueError(f"{where}: class_ids {dict(ids)} are not supported (expected {CLASS_IDS})")
        options = {k: v for k, v in values.items()
                   if k not in CARD_KEYS and k not in ("model", "load_size", "fine_size")}
        try:
            return cls(name=str(values.get("name") or default_name), architecture=str(values["model"]),
                       load_size=int(values["load_size"]), fine_size=int(values["fine_size"]),
                       thresholds={k: float(v) for k, v in (values.get("thresholds") or {}).items()},
                       options=options, created=values.get("created"),
                       runtime={str(k): str(v) for k, v in (values.get("runtime") or {}).items()})
        except (KeyError, TypeError) as e:
            raise ValueError(f"{where}: missing or bad key {e}") from None

    @classmethod
    def read(cls, ckpt_dir: str | os.PathLike) -> "ModelCard":
        """The card of checkpoint folder ``ckpt_dir`` (its ``config.yaml``)."""
        path = Path(ckpt_dir) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {ckpt_dir} is not a checkpoint folder (expected "
                                    "config.yaml and *.safetensors written by 'patchforensics train')")
        return cls.from_dict(fileio.read_yaml(path), str(path), default_name=Path(ckpt_dir).name)

    def write(self, ckpt_dir: str | os.PathLike) -> Path:
        """Write ``config.yaml`` into ``ckpt_dir`` atomically; returns its path."""
        path = Path(ckpt_dir) / CONFIG_FILE
        fileio.write_yaml(path, self.to_dict())
        return path

    def to_onnx_metadata(self, weights_meta: Mapping[str, Any] | None = None,
                         weights_file: str | None = None) -> str:
        """The JSON stored under :data:`ONNX_METADATA_KEY` in an exported model."""
        return json.dumps({"config": self.to_dict(), "name": self.name,
                           "weights_meta": dict(weights_meta or {}), "weights_file": weights_file})

    @classmethod
    def from_onnx_metadata(cls, metadata: Mapping[str, str], where: str) -> tuple["ModelCard", dict[str, Any]]:
        """``(card, weights_meta)`` from an ONNX model's custom metadata map."""
        if ONNX_METADATA_KEY not in metadata:
            raise ValueError(f"{where} has no patchforensics metadata (input size, thresholds); "
                             "export it with 'patchforensics export CHECKPOINT_DIR model.onnx'")
        stored = json.loads(metadata[ONNX_METADATA_KEY])
        card = cls.from_dict(stored.get("config") or {}, where, default_name=Path(where).stem)
        if stored.get("name"):
            card = replace(card, name=str(stored["name"]))
        return card, dict(stored.get("weights_meta") or {})
