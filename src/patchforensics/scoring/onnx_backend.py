"""ONNX export of a checkpoint, and an ONNX Runtime runner with the same output.

``export_onnx(ckpt_dir, "model.onnx")`` writes the model with a dynamic batch
axis (and, for patch models, dynamic height and width: they are fully
convolutional). The checkpoint's model card (architecture name, input
geometry, calibrated thresholds) travels inside the file as ONNX metadata
(key ``patchforensics``, written and read by
:class:`~patchforensics.models.card.ModelCard`), so an ``.onnx`` file alone is
enough for ``detect``.

:class:`OnnxRunner` maps ``(N, 3, H, W)`` float32 images in ``[-1, 1]`` to
``(N, 2, H', W')`` logits exactly like the PyTorch model (channel 0 = fake,
1 = real); :class:`~patchforensics.scoring.engine.Engine` runs it for every stage.
"""
from __future__ import annotations

import copy
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core import fileio
from ..models.card import ONNX_METADATA_KEY, ModelCard
from ..models.checkpoint import load_model

INPUT_NAME, OUTPUT_NAME = "image", "logits"
OPSET = 17


def export_model(model: nn.Module, card: ModelCard, out_path: str | os.PathLike, opset: int = OPSET,
                 weights_meta: dict[str, Any] | None = None, weights_file: str | None = None) -> Path:
    """Write ``model`` (of architecture ``card.architecture``) as ONNX, with the card as
    metadata (atomically). ``model`` itself is not changed."""
    import onnx

    side = card.input_side
    dummy = torch.zeros(2, 3, side, side)
    axes: dict[str, dict[int, str]] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    if card.patch:
        axes[INPUT_NAME].update({2: "height", 3: "width"})
        axes[OUTPUT_NAME].update({2: "patches_y", 3: "patches_x"})
    buf = io.BytesIO()
    cpu_copy = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo=True, which needs
        # the onnxscript package; this model is plain convolutions, so either works
        warnings.simplefilter("ignore")
        torch.onnx.export(cpu_copy, (dummy,), buf, dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=opset)
    proto = onnx.load_from_string(buf.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, card.to_onnx_metadata(weights_meta, weights_file)
    proto.producer_name = "patchforensics"
    out_path = Path(out_path)
    fileio.write_bytes(out_path, proto.SerializeToString())
    return out_path


def export_onnx(ckpt_dir: str | os.PathLike, out_path: str | os.PathLike, which: str = "bestval",
                force: bool = False, opset: int = OPSET) -> Path:
    """Export checkpoint ``ckpt_dir`` (weights ``which``) to ``out_path``.

    Refuses to overwrite an existing file unless ``force``. Written as ``<which>.onnx`` inside
    the checkpoint folder, it is what :meth:`~.engine.Engine.load` runs (nothing is exported
    when the folder is opened).
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".onnx":
        raise ValueError(f"{out_path}: give an output file name ending in .onnx")
    if out_path.exists() and not force:
        raise fileio.OutputExistsError(f"{out_path} already exists; pass --force to overwrite it")
    loaded = load_model(ckpt_dir, which)
    # the weights' digest lets Engine.load use this file in place of the weights when it lies
    # beside them as <which>.onnx (and only while they are the weights it was made from)
    meta = {**loaded.meta, "sha256": fileio.file_sha256(loaded.weights_file)} if loaded.weights_file else loaded.meta
    return export_model(loaded.model, loaded.card, out_path, opset, meta,
                        loaded.weights_file.name if loaded.weights_file else None)


class OnnxRunner:
    """An ONNX Runtime session over an exported model.

    ``runner(images)`` takes ``(N, 3, H, W)`` images in ``[-1, 1]`` (torch or
    NumPy) and returns ``(N, 2, H', W')`` float32 logits as a torch tensor.
    ``metadata`` is the model's custom metadata map (read by
    :meth:`ModelCard.from_onnx_metadata`).
    """

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None,
                 intra_op_threads: int = 0, allow_spinning: bool = True):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; create it with 'patchforensics export CHECKPOINT_DIR {path}'")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads   # 0 = ONNX Runtime's default
        # spinning workers keep polling for work between runs; off, they leave the
        # cores to the rest of the process (data loading, PyTorch) in between
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as e:   # onnxruntime raises its own exception types for bad files
            raise ValueError(f"{path}: not a loadable ONNX model ({e})") from None
        self.path = path
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().float().numpy()
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})[0]
        return torch.from_numpy(out)


def load_onnx(path: str | os.PathLike, intra_op_threads: int = 0,
              allow_spinning: bool = True) -> tuple[OnnxRunner, ModelCard, dict[str, Any]]:
    """An exported ``.onnx`` file: its runner, its card and its weights' metadata."""
    runner = OnnxRunner(path, intra_op_threads=intra_op_threads, allow_spinning=allow_spinning)
    card, weights_meta = ModelCard.from_onnx_metadata(runner.metadata, str(path))
    return runner, card, weights_meta


def onnx_runner(model: nn.Module, card: ModelCard, intra_op_threads: int = 0) -> OnnxRunner:
    """``model`` exported to ONNX in a temporary folder and run by ONNX Runtime (which
    reads the whole file when it starts), without spinning threads: between batches
    the cores decode images and run PyTorch."""
    with tempfile.TemporaryDirectory(prefix="patchforensics-onnx-") as tmp:
        path = export_model(model, card, Path(tmp) / "model.onnx")
        return OnnxRunner(path, intra_op_threads=intra_op_threads, allow_spinning=False)


def is_onnx_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".onnx"
