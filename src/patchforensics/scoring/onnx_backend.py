"""ONNX export of a checkpoint, and an ONNX Runtime runner with the same output.

``export_onnx(ckpt_dir, "model.onnx")`` writes the model with a dynamic batch
axis (and, for patch models, dynamic height and width: they are fully
convolutional). The checkpoint's ``config.yaml`` (architecture name, input
geometry, calibrated thresholds) travels inside the file as ONNX metadata
(key ``patchforensics``), so an ``.onnx`` file alone is enough for ``detect``.

:class:`OnnxRunner` maps ``(N, 3, H, W)`` float32 images in ``[-1, 1]`` to
``(N, 2, H', W')`` logits exactly like the PyTorch model (channel 0 = fake,
1 = real); :class:`OnnxModule` wraps it as an ``nn.Module`` so every function
that takes a model (``evaluate.predict``, ``detect``) runs on ONNX Runtime
unchanged.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core import fileio
from ..models.checkpoint import LoadedModel, load_model, transform_config

INPUT_NAME, OUTPUT_NAME = "image", "logits"
METADATA_KEY = "patchforensics"
OPSET = 17


def input_side(loaded: LoadedModel) -> int:
    """Side of the square model input in pixels (as ``transforms.eval_image`` makes it)."""
    t = loaded.transform
    return t.load_size if t.patch_model else t.fine_size


def export_model(loaded: LoadedModel, out_path: str | os.PathLike, opset: int = OPSET) -> Path:
    """Write ``loaded.model`` as ONNX with its config as metadata (atomically)."""
    import onnx

    side = input_side(loaded)
    dummy = torch.zeros(2, 3, side, side)
    axes: dict[str, dict[int, str]] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    if loaded.transform.patch_model:
        axes[INPUT_NAME].update({2: "height", 3: "width"})
        axes[OUTPUT_NAME].update({2: "patches_y", 3: "patches_x"})
    buf = io.BytesIO()
    model = loaded.model.cpu().eval()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo=True, which needs
        # the onnxscript package; this model is plain convolutions, so either works
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), buf, dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=opset)
    proto = onnx.load_from_string(buf.getvalue())
    meta = {"config": loaded.config, "name": loaded.name, "weights_meta": loaded.meta,
            "weights_file": loaded.weights_file.name if loaded.weights_file else None}
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    proto.producer_name = "patchforensics"
    out_path = Path(out_path)
    fileio.write_bytes(out_path, proto.SerializeToString())
    return out_path


def export_onnx(ckpt_dir: str | os.PathLike, out_path: str | os.PathLike, which: str = "bestval",
                force: bool = False, opset: int = OPSET) -> Path:
    """Export checkpoint ``ckpt_dir`` (weights ``which``) to ``out_path``.

    Refuses to overwrite an existing file unless ``force``.
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".onnx":
        raise ValueError(f"{out_path}: give an output file name ending in .onnx")
    if out_path.exists() and not force:
        raise fileio.OutputExistsError(f"{out_path} already exists; pass --force to overwrite it")
    return export_model(load_model(ckpt_dir, which), out_path, opset)


class OnnxRunner:
    """An ONNX Runtime session over an exported model.

    ``runner(images)`` takes ``(N, 3, H, W)`` images in ``[-1, 1]`` (torch or
    NumPy) and returns ``(N, 2, H', W')`` float32 logits as a torch tensor.
    ``config`` is the checkpoint config stored at export (``None`` for an ONNX
    file not written by :func:`export_model`).
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
        custom = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, Any] = json.loads(custom[METADATA_KEY]) if METADATA_KEY in custom else {}
        self.config: dict[str, Any] | None = self.metadata.get("config")

    def __call__(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().float().numpy()
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})[0]
        return torch.from_numpy(out)


class OnnxModule(nn.Module):
    """An :class:`OnnxRunner` behind the ``nn.Module`` interface (inference only)."""

    def __init__(self, runner: OnnxRunner):
        super().__init__()
        self.runner = runner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.runner(x).to(x.device)


def load_onnx(path: str | os.PathLike, providers: list[str] | None = None) -> LoadedModel:
    """An exported ``.onnx`` file as a :class:`LoadedModel` (config and thresholds from its metadata)."""
    runner = OnnxRunner(path, providers)
    cfg = runner.config
    if not cfg or "model" not in cfg:
        raise ValueError(f"{path} has no patchforensics metadata (input size, thresholds); "
                         "export it with 'patchforensics export CHECKPOINT_DIR model.onnx'")
    return LoadedModel(model=OnnxModule(runner).eval(), transform=transform_config(cfg), config=cfg,
                       meta=runner.metadata.get("weights_meta", {}),
                       thresholds=dict(cfg.get("thresholds") or {}),
                       name=runner.metadata.get("name") or cfg.get("name", Path(path).stem),
                       weights_file=Path(path))


def is_onnx_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".onnx"

