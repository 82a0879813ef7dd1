"""``sample`` and ``invert``: fake datasets from a user's generator.

The seed sampled its fakes from TensorFlow generator pickles (PGAN, StyleGAN,
Glow) and made "inverted" fakes by passing reals through an encoder and the
generator. Here the networks come as files any framework can export:

* **ONNX** (``.onnx``, run with onnxruntime on the CPU), or
* **TorchScript** (``.pt``/``.ts``/``.torchscript``, from ``torch.jit.script`` or
  ``torch.jit.trace`` and ``.save``).

TorchScript archives carry the network's code: load only files you trust.
Plain pickles (``torch.save`` of a module) and ``torch.export`` ``.pt2`` archives
(whose loader may fall back to unrestricted unpickling) are refused.

A generator maps a latent batch ``(N, *latent_shape)`` float32 to images
``(N, C, H, W)`` (``layout='nhwc'`` for ``(N, H, W, C)``), C = 1 or 3, with
values in a declared range (``value_range``, e.g. ``(-1, 1)`` or ``(0, 1)``).
An encoder maps images in that same range and layout to latents.

Every generated image goes through :func:`patchforensics.data.prepare.standardize`,
the resize/format pipeline the reals went through, and the latents are saved
(``latents.npy``) so each image can be regenerated.
"""
from __future__ import annotations

import csv
import hashlib
import io
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..core import fileio
from ..core.config import require
from ..core.imageio import ImageLoadError, SkipLog, load_rgb, require_images
from .prepare import SPLITS, assign_splits, png_bytes, standardize

ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript", ".jit")


# ---------------------------------------------------------------- networks
class Network:
    """A user network from an ONNX or TorchScript file, called on float32 NumPy batches.

    ``input_shape`` is the per-sample input shape when the file declares it
    (ONNX with fixed dimensions), else None.
    """

    def __init__(self, path: str | Path, device: str = "auto"):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} does not exist; pass an .onnx or TorchScript file")
        suffix = self.path.suffix.lower()
        self.input_shape: tuple[int, ...] | None = None
        if suffix in ONNX_SUFFIXES:
            import onnxruntime as ort

            try:
                self._session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
            except Exception as e:  # onnxruntime raises its own exception types
                raise ValueError(f"{self.path}: not a loadable ONNX model ({e})") from None
            inputs = self._session.get_inputs()
            if len(inputs) != 1:
                raise ValueError(f"{self.path}: the network must take one input, it takes {len(inputs)}")
            self._input_name = inputs[0].name
            dims = inputs[0].shape[1:]
            if all(isinstance(d, int) and d > 0 for d in dims):
                self.input_shape = tuple(dims)
            self._run = lambda x: self._session.run(None, {self._input_name: x})[0]
        elif suffix in TORCHSCRIPT_SUFFIXES:
            import torch

            from ..core.device import resolve_device

            self._device = resolve_device(device)
            try:
                with warnings.catch_warnings():  # torch marks TorchScript deprecated; it still loads
                    warnings.simplefilter("ignore", DeprecationWarning)
                    module = torch.jit.load(str(self.path), map_location=self._device).eval()
            except (RuntimeError, ValueError, KeyError, OSError) as e:
                raise ValueError(f"{self.path}: not a TorchScript archive "
                                 f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); save the network "
                                 "with torch.jit.script(net).save(path) or export it to ONNX (plain torch.save "
                                 "pickles are refused)") from None
            self._module = module
            self._run = self._run_torch
        else:
            raise ValueError(f"{self.path}: unknown network format {suffix!r}; use .onnx or a TorchScript file "
                             f"({', '.join(TORCHSCRIPT_SUFFIXES)})")

    def _run_torch(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            y = self._module(torch.from_numpy(x).to(self._device))
        if isinstance(y, (tuple, list)):
            y = y[0]
        return y.float().cpu().numpy()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._run(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float32)


def to_unit_range(images: np.ndarray, value_range: tuple[float, float], layout: str) -> np.ndarray:
    """Network output → (N, H, W, 3) float32 with values 0..1 (clipped; NaN kept so it can be reported)."""
    if images.ndim != 4:
        raise ValueError(f"the generator returned shape {images.shape}; expected 4 dimensions "
                         f"({'N, C, H, W' if layout == 'nchw' else 'N, H, W, C'})")
    if layout == "nchw":
        images = images.transpose(0, 2, 3, 1)
    if images.shape[3] not in (1, 3):
        raise ValueError(f"the generator returned {images.shape[3]} channels (image shape {images.shape[1:]} "
                         f"as N,H,W,C); expected 1 or 3. Is --layout right?")
    if images.shape[3] == 1:
        images = np.repeat(images, 3, axis=3)
    lo, hi = value_range
    return np.clip((images - lo) / (hi - lo), 0.0, 1.0)


def from_unit_range(images: np.ndarray, value_range: tuple[float, float], layout: str) -> np.ndarray:
    """(N, H, W, 3) values 0..1 → network input in ``value_range`` and ``layout``."""
    lo, hi = value_range
    x = images * (hi - lo) + lo
    return x.transpose(0, 3, 1, 2) if layout == "nchw" else x


def _to_pil(image: np.ndarray) -> Image.Image:
    """(H, W, 3) 0..1 → 8-bit RGB (rounded)."""
    return Image.fromarray(np.rint(image * 255.0).astype(np.uint8), "RGB")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    fileio.write_text(path, buf.getvalue())


# ---------------------------------------------------------------- sampled datasets
@dataclass
class SampleResult:
    out: Path
    counts: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)


def write_generated_dataset(out: Path, n: int, generate: Callable[[np.ndarray], np.ndarray], *, size: int | None,
                            jpeg_quality: int | None, split: tuple[float, float, float], seed: int,
                            batch_size: int, arrays: dict[str, np.ndarray], summary: dict,
                            progress: bool = True, desc: str = "sample") -> SampleResult:
    """Write ``n`` generated images to ``out/{train,val,test}/NNNNNN.png``.

    ``generate(indices)`` returns the images of those sample indices as
    (B, H, W, 3) float32 in 0..1; samples with non-finite values are skipped and
    listed. ``arrays`` (e.g. the latents, row i = sample i) are saved as
    ``<name>.npy``; ``summary`` is extended with counts and skips into
    ``summary.json``; ``manifest.csv`` maps sample index → split → file.
    Splits are drawn with :func:`patchforensics.data.prepare.assign_splits`.
    """
    for name, array in arrays.items():
        with fileio.atomic_path(out / f"{name}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, array, allow_pickle=False)
    splits = assign_splits(n, split, seed)
    width = max(6, len(str(n - 1)))
    counts = {s: 0 for s in SPLITS}
    rows, skipped = [], []
    with tqdm(total=n, desc=desc, disable=not progress, unit="img") as bar:
        for start in range(0, n, batch_size):
            indices = np.arange(start, min(start + batch_size, n))
            images = generate(indices)
            for i, image in zip(indices.tolist(), images):
                if not np.isfinite(image).all():
                    skipped.append({"path": f"sample {i}", "reason": "generator output has NaN or inf values"})
                    continue
                im = _to_pil(image)
                if size is not None or jpeg_quality is not None:
                    im = standardize(im, size or min(im.size), jpeg_quality)
                name = f"{splits[i]}/{i:0{width}d}.png"
                fileio.write_bytes(out / name, png_bytes(im))
                counts[splits[i]] += 1
                rows.append([i, splits[i], name])
            bar.update(len(indices))
    _write_csv(out / "manifest.csv", ["sample", "split", "output"], rows)
    fileio.write_json(out / "summary.json", {**summary, "n": n, "size": size, "jpeg_quality": jpeg_quality,
                                             "resampler": "lanczos", "split": list(split), "seed": seed,
                                             "saved_arrays": sorted(f"{k}.npy" for k in arrays),
                                             "counts": counts, "skipped": skipped})
    return SampleResult(out, counts, skipped)


def _validate_output_options(cfg) -> None:
    require(cfg.size is None or cfg.size >= 8, "size", "must be at least 8 pixels")
    require(cfg.jpeg_quality is None or 1 <= cfg.jpeg_quality <= 100, "jpeg_quality", "must be between 1 and 100")
    require(cfg.batch_size > 0, "batch_size", "must be > 0")
    require(len(cfg.value_range) == 2 and cfg.value_range[0] < cfg.value_range[1], "value_range",
            "give low,high with low < high, e.g. -1,1 or 0,1")
    require(cfg.layout in ("nchw", "nhwc"), "layout", "must be 'nchw' or 'nhwc'")


@dataclass
class SampleConfig:
    """Options of ``patchforensics sample``.

    ``latent_shape`` is the per-sample latent shape (needed for TorchScript;
    read from an ONNX file with fixed input dimensions); latents are standard
    normal draws from ``seed`` unless ``latents`` names a saved ``.npy``
    (then ``n`` is its length). ``size`` is the output side (None keeps the
    generator's resolution); ``split``/``seed`` assign samples to train/val/test.
    """

    generator: str
    out: str
    n: int = 1000
    seed: int = 0
    batch_size: int = 16
    size: int | None = 128
    value_range: tuple[float, float] = (-1.0, 1.0)
    layout: str = "nchw"
    latent_shape: tuple[int, ...] | None = None
    latents: str | None = None
    jpeg_quality: int | None = None
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    device: str = "auto"
    force: bool = False

    def validate(self) -> None:
        _validate_output_options(self)
        require(self.n > 0, "n", "must be > 0")
        require(self.latent_shape is None or all(d > 0 for d in self.latent_shape), "latent_shape",
                "give positive sizes, e.g. 512 or 512,1,1")
        require(len(self.split) == 3 and all(f >= 0 for f in self.split) and abs(sum(self.split) - 1) < 1e-6,
                "split", "give three non-negative fractions summing to 1, e.g. 0.7,0.1,0.2")


def sample(cfg: SampleConfig, progress: bool = True) -> SampleResult:
    """Sample ``cfg.n`` images from ``cfg.generator`` into ``cfg.out`` (see
    :func:`write_generated_dataset` for the layout; ``latents.npy`` has row i =
    latent of sample i)."""
    cfg.validate()
    if cfg.latents is not None:
        latents = np.load(cfg.latents, allow_pickle=False).astype(np.float32)
        require(latents.ndim >= 2 and len(latents) > 0, "latents", f"{cfg.latents} must hold a (N, …) array")
    net = Network(cfg.generator, cfg.device)
    if cfg.latents is None:
        shape = cfg.latent_shape or net.input_shape
        require(shape is not None, "latent_shape",
                f"{net.path.name} does not declare its input size; pass --latent-shape, e.g. 512")
        latents = np.random.default_rng(cfg.seed).standard_normal((cfg.n, *shape)).astype(np.float32)
    n = len(latents)
    with fileio.atomic_dir(cfg.out, cfg.force) as tmp:   # --force replaces OUT whole, never merges into it
        result = write_generated_dataset(
            tmp, n, lambda idx: to_unit_range(net(latents[idx]), cfg.value_range, cfg.layout),
            size=cfg.size, jpeg_quality=cfg.jpeg_quality, split=cfg.split, seed=cfg.seed,
            batch_size=cfg.batch_size, arrays={"latents": latents},
            summary={"generator": str(net.path), "generator_sha256": _sha256(net.path),
                     "value_range": list(cfg.value_range), "layout": cfg.layout,
                     "latent_shape": list(latents.shape[1:]),
                     "latent_source": cfg.latents or f"standard normal, seed {cfg.seed}"},
            progress=progress, desc="sample")
    return replace(result, out=Path(cfg.out))


# ---------------------------------------------------------------- inversion
@dataclass
class InvertConfig:
    """Options of ``patchforensics invert``.

    Each real under ``real`` is brought to ``input_size`` (the encoder's input
    side; read from an ONNX encoder with fixed dimensions when not given) with
    ``standardize``, mapped to ``value_range``/``layout``, encoded, decoded by
    the generator and written at ``size``, mirroring the reals' folders
    (``real/train/x.jpg`` → ``out/train/x.png``).
    """

    encoder: str
    generator: str
    real: str
    out: str
    input_size: int | None = None
    size: int | None = 128
    value_range: tuple[float, float] = (-1.0, 1.0)
    layout: str = "nchw"
    batch_size: int = 16
    jpeg_quality: int | None = None
    device: str = "auto"
    force: bool = False

    def validate(self) -> None:
        _validate_output_options(self)
        require(self.input_size is None or self.input_size >= 8, "input_size", "must be at least 8 pixels")
        require(Path(self.real).resolve() != Path(self.out).resolve(), "out", "must differ from the real folder")


def invert(cfg: InvertConfig, progress: bool = True) -> SampleResult:
    """Reconstruct every real through encoder → generator into ``cfg.out``.

    Writes the images, ``latents.npy`` (row = ``latent_row`` in the manifest),
    ``manifest.csv`` (source, latent_row, output) and ``summary.json`` (counts per
    split folder, skipped unreadable reals).
    """
    cfg.validate()
    real, out = Path(cfg.real), Path(cfg.out)
    paths = require_images(real)
    encoder, generator = Network(cfg.encoder, cfg.device), Network(cfg.generator, cfg.device)
    input_size = cfg.input_size
    if input_size is None and encoder.input_shape is not None:
        dims = encoder.input_shape[1:] if cfg.layout == "nchw" else encoder.input_shape[:2]
        input_size = dims[0] if dims[0] == dims[1] else None
    require(input_size is not None, "input_size",
            f"{encoder.path.name} does not declare a square input size; pass --input-size")
    with fileio.atomic_dir(out, cfg.force) as tmp:   # --force replaces OUT whole, never merges into it
        result = _invert_into(cfg, paths, encoder, generator, input_size, tmp, progress)
    return replace(result, out=out)


def _invert_into(cfg: InvertConfig, paths: list[Path], encoder: Network, generator: Network, input_size: int,
                 out: Path, progress: bool) -> SampleResult:
    real = Path(cfg.real)
    counts: dict[str, int] = {}
    skipped, rows, latent_rows = SkipLog(), [], []
    for start in tqdm(range(0, len(paths), cfg.batch_size), desc="invert", disable=not progress, unit="batch"):
        batch, names = [], []
        for path in paths[start:start + cfg.batch_size]:
            try:
                im = load_rgb(path)
            except ImageLoadError as e:
                skipped.add(e)
                continue
            batch.append(np.asarray(standardize(im, input_size), dtype=np.float32) / 255.0)
            names.append(path)
        if not batch:
            continue
        latents = encoder(from_unit_range(np.stack(batch), cfg.value_range, cfg.layout))
        images = to_unit_range(generator(latents), cfg.value_range, cfg.layout)
        for path, latent, image in zip(names, latents, images):
            rel = path.relative_to(real) if path != real else Path(path.name)
            if not np.isfinite(image).all():
                skipped.add(ImageLoadError(path, "reconstruction has NaN or inf values"))
                continue
            im = _to_pil(image)
            if cfg.size is not None or cfg.jpeg_quality is not None:
                im = standardize(im, cfg.size or min(im.size), cfg.jpeg_quality)
            name = rel.with_suffix(".png").as_posix()
            fileio.write_bytes(out / name, png_bytes(im))
            folder = rel.parent.as_posix()
            counts[folder] = counts.get(folder, 0) + 1
            rows.append([rel.as_posix(), len(latent_rows), name])
            latent_rows.append(latent)
    if latent_rows:
        with fileio.atomic_path(out / "latents.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.stack(latent_rows).astype(np.float32), allow_pickle=False)
    _write_csv(out / "manifest.csv", ["source", "latent_row", "output"], rows)
    fileio.write_json(out / "summary.json", {
        "source": str(real), "encoder": str(encoder.path), "encoder_sha256": _sha256(encoder.path),
        "generator": str(generator.path), "generator_sha256": _sha256(generator.path),
        "input_size": input_size, "size": cfg.size, "jpeg_quality": cfg.jpeg_quality, "resampler": "lanczos",
        "value_range": list(cfg.value_range), "layout": cfg.layout, "counts": counts,
        "skipped": skipped.as_list()})
    return SampleResult(out, counts, skipped.as_list())
