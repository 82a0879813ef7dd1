"""The inference engine: how images become logits and scores, for every stage.

Training's validation passes, ``test``, ``calibrate``, ``visualize``,
``patches``, ``detect`` and ``serve`` all score through one :class:`Engine`. It
owns the device, the backend and the fast paths (:class:`FastPath`): the
``backend`` option means the same everywhere, and ``auto`` picks ONNX Runtime on
a CPU and PyTorch on a GPU (:func:`~.runtime.inference_backend`). So the same
images scored by any command, on the same backend, give the same numbers.

An engine is opened from a checkpoint folder, an exported ``.onnx`` file or the
bundled detector (:meth:`Engine.load`), or wraps a model being trained
(:meth:`Engine.from_model`, which copies it: the model itself is not changed).
Images go in as ``(N, 3, S, S)`` float tensors in ``[-1, 1]`` (``S`` =
``card.input_side``, or any size for a patch model) and come out as
``(N, 2, H', W')`` float32 logits on the CPU, channel 0 = fake, 1 = real.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ..core.config import ConfigError
from ..core.device import resolve_device
from ..core.imageio import SkipLog
from ..data.dataset import ImageDataset, Sample, make_loader
from ..data.transforms import Corruption, eval_image, eval_transform, to_tensor
from ..models.card import ModelCard
from ..core.fileio import file_sha256
from ..models.checkpoint import BUNDLED_DIR, BUNDLED_WEIGHTS, load_model, weights_path
from .runtime import (FastPath, TorchInference, configure_runtime, effective_precision, fold_batchnorm,
                       inference_backend, memory_format, runtime_info)
from .metrics import Predictions, ScoreAccumulator
from .onnx_backend import is_onnx_file, load_onnx, onnx_runner

log = logging.getLogger(__name__)

Runner = Callable[[torch.Tensor], torch.Tensor]


class Engine:
    """One model, on one device and backend, turning images into logits and scores.

    ``backend`` is the resolved one (``torch`` | ``onnx``); ``device`` is where
    the model runs (the CPU for ONNX Runtime). ``meta`` and ``weights_file``
    describe the weights (epoch …; the file hashed to key cached results).
    """

    def __init__(self, card: ModelCard, runner: Runner, backend: str, device: torch.device,
                 meta: dict[str, Any] | None = None, weights_file: Path | None = None, precision: str = "fp32"):
        self.card, self.runner, self.backend, self.device = card, runner, backend, device
        self.precision = precision      # effective: fp32, or bf16 under autocast (PyTorch only)
        self.meta = dict(meta or {})
        self.weights_file = weights_file

    # ------------------------------------------------------------ opening
    @classmethod
    def from_model(cls, model: nn.Module, card: ModelCard, fast: FastPath | None = None,
                   device: str | torch.device = "cpu", meta: dict[str, Any] | None = None,
                   weights_file: Path | None = None) -> "Engine":
        """An engine over an in-memory ``model`` of architecture ``card.architecture``.

        The model is copied (exported to ONNX, or BatchNorm-folded for PyTorch), so it
        may be mid-training. When the ONNX export fails the engine warns and runs
        PyTorch instead.
        """
        fast = fast or FastPath()
        fast.validate()
        device = resolve_device(device)
        backend = inference_backend(fast, device)
        if backend == "onnx":
            if device.type != "cpu":
                raise ConfigError(f"backend: 'onnx' runs on the CPU; use --device cpu or --backend torch "
                                  f"(got device {device})")
            try:
                return cls(card, onnx_runner(model, card, torch.get_num_threads()), "onnx", device,
                           meta, weights_file)
            except Exception as e:   # exporter/runtime errors have many types; the torch path still works
                log.warning("ONNX Runtime path unavailable (%s); using PyTorch", e)
        net = fold_batchnorm(model) if fast.fold_bn else copy.deepcopy(model).eval()
        net = net.to(device=device, memory_format=memory_format(fast))
        return cls(card, TorchInference(net, fast, device).eval(), "torch", device, meta, weights_file,
                   effective_precision(fast, device))

    @classmethod
    def load(cls, source: str | os.PathLike | None = None, which: str | None = None,
             fast: FastPath | None = None, device: str | torch.device = "auto",
             local_processes: int = 1) -> "Engine":
        """Open a checkpoint folder (weights ``which``, default ``bestval``), an ``.onnx``
        file from ``export``, or (``source=None``) the bundled detector.

        Also sets this process's thread count (:func:`~.runtime.configure_runtime`,
        ``local_processes`` sharing the cores).
        """
        fast = fast or FastPath()
        fast.validate()
        device = resolve_device(device)
        configure_runtime(fast, device, local_processes)
        path = Path(source) if source is not None else BUNDLED_DIR
        if is_onnx_file(path):
            if fast.backend == "torch":
                raise ConfigError(f"backend: {path} is an ONNX file; use --backend onnx (or auto)")
            runner, card, meta = load_onnx(path, intra_op_threads=torch.get_num_threads())
            return cls(card, runner, "onnx", torch.device("cpu"), meta, path)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; pass a checkpoint folder (config.yaml + "
                                    "*.safetensors) or an .onnx file from 'patchforensics export'")
        which = which or (BUNDLED_WEIGHTS if source is None else "bestval")
        sidecar = _sidecar_onnx(path, which) if inference_backend(fast, device) == "onnx" else None
        if sidecar is not None:
            runner, _, meta = load_onnx(sidecar, intra_op_threads=torch.get_num_threads(), allow_spinning=False)
            return cls(ModelCard.read(path), runner, "onnx", torch.device("cpu"), meta, weights_path(path, which))
        loaded = load_model(path, which)
        return cls.from_model(loaded.model, loaded.card, fast, device, loaded.meta, loaded.weights_file)

    @property
    def runtime(self) -> dict[str, str]:
        """Effective precision, backend, device and CPU kind (scores depend on them)."""
        return runtime_info(self.precision, self.backend, self.device)

    # ------------------------------------------------------------ scoring
    @property
    def name(self) -> str:
        return self.card.name

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` images in ``[-1, 1]`` -> ``(N, 2, H', W')`` float32 logits on the CPU."""
        with torch.inference_mode():
            return self.runner(images).float().cpu()

    def score_images(self, images: Sequence[Image.Image]) -> tuple[list[Image.Image], torch.Tensor]:
        """RGB images of any size -> ``(inputs, logits)``: each image as the model saw it
        (``card.crop_rule``, ``S x S``) and the ``(N, 2, H', W')`` logits."""
        inputs = [eval_image(im, self.card.transform()) for im in images]
        if not inputs:
            return [], torch.zeros(0, 2, 1, 1)
        return inputs, self.logits(torch.stack([to_tensor(x) for x in inputs]))

    def batches(self, samples: Sequence[Sample], corruptions: Sequence[Corruption] = (), batch_size: int = 64,
                num_workers: int = 0, skipped: SkipLog | None = None, progress: bool = False,
                desc: str = "score", dataset: ImageDataset | None = None) -> Iterator[tuple[dict, torch.Tensor]]:
        """Yield ``(batch, logits)`` over ``samples`` through the card's evaluation transform.

        ``batch`` is :func:`~patchforensics.data.dataset.collate`'s dict (``image``
        ``(B, 3, S, S)``, ``label``, ``index`` into ``samples``, ``paths``); ``logits``
        ``(B, 2, H', W')``. Unreadable files are added to ``skipped``. ``dataset``
        replaces the default one over ``samples`` (e.g. a decoded-image cache).
        """
        if dataset is None:
            dataset = ImageDataset(samples, eval_transform(self.card.transform(), corruptions))
        for batch in tqdm(make_loader(dataset, batch_size, num_workers), desc=desc, disable=not progress,
                          unit="batch", leave=False):
            if skipped is not None:
                skipped.skipped.extend(batch["errors"])
            if batch["image"] is not None:
                yield batch, self.logits(batch["image"])

    def predict(self, samples: Sequence[Sample], corruptions: Sequence[Corruption] = (), batch_size: int = 64,
                num_workers: int = 0, progress: bool = True, desc: str = "predict",
                dataset: ImageDataset | None = None) -> Predictions:
        """Scores of every image of ``samples`` (unreadable files skipped and listed),
        in bounded memory (:class:`~.metrics.ScoreAccumulator`)."""
        acc = ScoreAccumulator()
        for batch, logits in self.batches(samples, corruptions, batch_size, num_workers, acc.skipped,
                                          progress, desc, dataset):
            acc.add(logits, batch["label"], batch["paths"], batch["index"])
        return acc.result()


def _sidecar_onnx(ckpt_dir: Path, which: str) -> Path | None:
    """``<which>.onnx`` beside ``<which>.safetensors`` when it was exported from exactly those
    weights (its metadata holds their SHA-256): opening the folder then exports nothing. The
    card is still the folder's ``config.yaml`` (thresholds may have been re-chosen since)."""
    weights = weights_path(ckpt_dir, which)
    onnx_file = weights.with_suffix(".onnx")
    if not (onnx_file.is_file() and weights.is_file()):
        return None
    try:
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(onnx_file), load_external_data=False).metadata_props}
        _, weights_meta = ModelCard.from_onnx_metadata(meta, str(onnx_file))
    except Exception:  # noqa: BLE001 - a damaged or foreign file is not used; the weights are
        return None
    return onnx_file if weights_meta.get("sha256") == file_sha256(weights) else None
