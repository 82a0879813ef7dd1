"""Fast paths for training and inference, each on by default where it helps
and each switchable off.

- **channels_last** (NHWC) memory format for models and inputs: oneDNN's and
  cuDNN's fastest convolution kernels, including the depthwise convolutions of
  Xception, work in this layout (2-3x inference, ~1.3x training on an AVX2 CPU).
- **bf16 autocast** only where the hardware computes bf16 natively: CUDA GPUs
  with bf16 support, CPUs with AMX or AVX512-BF16. On other CPUs (AVX2) bf16 is
  emulated and 10-20x *slower*, so ``bf16="auto"`` leaves it off there.
- **BatchNorm folding** for inference: every ``Conv2d -> BatchNorm2d`` pair in
  the traced graph becomes one convolution with adjusted weights and bias.
- **ONNX Runtime** for CPU inference (through :mod:`.onnx_backend`, chosen by
  :func:`inference_backend`, used by :mod:`.engine`): its fused NCHWc kernels are
  ~2x faster than the best eager PyTorch path on CPU.
- **decoded-image cache**: each image is decoded and resized once and kept as
  ``uint8`` in memory (up to ``cache_mb``), so later epochs and validation passes
  spend the cores on convolutions rather than PNG decoding.
- **thread settings**: one intra-op thread per available core, divided among
  the processes of a ``torchrun`` job.

:meth:`FastPath.reference` turns everything off: the plain fp32 eager path the
benchmarks compare against.
"""
from __future__ import annotations

import copy
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from ..core.config import require
from ..data.dataset import ImageDataset, Sample
from ..core.imageio import ImageLoadError, load_rgb
from ..data.transforms import TransformConfig, resize_shorter

log = logging.getLogger(__name__)

BF16_CHOICES = ("auto", "on", "off")
#: ``1`` / ``0``: decide ``bf16="auto"`` on a CPU as if it had / lacked native bf16, so that one
#: machine can run the suite as the other CPU kind would (forced bf16 on AVX2 is emulated: slow,
#: and bf16 all the same, so tolerances that hold for one hold for the other). Unset: the hardware decides.
NATIVE_BF16_ENV = "PATCHFORENSICS_NATIVE_BF16"
BACKENDS = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class FastPath:
    """Which fast paths to use (defaults: every one that helps on this hardware).

    ``bf16``: ``auto`` (native bf16 hardware only) | ``on`` | ``off``.
    ``backend`` for inference: ``auto`` (ONNX Runtime on CPU, PyTorch on GPU)
    | ``torch`` | ``onnx``. ``cache_mb``: memory budget in
    MiB for decoded images (0 = decode on every access). ``threads``: intra-op
    threads per process (0 = one per core, shared among local processes).
    ``compile``: ``torch.compile`` the training forward pass (off by default:
    on a 2-core CPU it compiled for over 3 minutes and then ran slower).
    """

    channels_last: bool = True
    bf16: str = "auto"
    fold_bn: bool = True
    backend: str = "auto"
    cache_mb: int = 2048
    threads: int = 0
    compile: bool = False

    @classmethod
    def reference(cls) -> "FastPath":
        """The plain fp32 eager path: every fast path off."""
        return cls(channels_last=False, bf16="off", fold_bn=False, backend="torch", cache_mb=0,
                   threads=0, compile=False)

    def validate(self) -> None:
        require(self.bf16 in BF16_CHOICES, "bf16", f"must be one of {', '.join(BF16_CHOICES)}")
        require(self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}")
        require(self.cache_mb >= 0, "cache_mb", "must be >= 0 (0 turns the decoded-image cache off)")
        require(self.threads >= 0, "threads", "must be >= 0 (0 = one per core)")


# ------------------------------------------------------------------ hardware
def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AMX-BF16 or AVX512-BF16)."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)   # private but long-standing torch helpers
        if fn is not None and fn():
            return True
    return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})


def cpu_kind() -> str:
    """What the CPU computes natively, then its model name: ``amx_bf16``, ``avx512_bf16``,
    ``avx512f``, ``avx2`` or the machine type (e.g. ``avx2 (AMD EPYC 7B13)``). Results in fp32
    agree across kinds to a few decimals; bf16 autocast with ``bf16="auto"`` runs only on the first two."""
    import platform

    flags = _cpu_flags()
    isa = next((f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags), platform.machine())
    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        name = platform.processor()
    return f"{isa} ({name})" if name else isa


def runtime_info(precision: str, backend: str, device: torch.device) -> dict[str, str]:
    """What a run really used, for ``config.yaml`` and ``metrics.json``: the effective
    ``precision`` (``fp32`` | ``bf16``), ``backend`` (``torch`` | ``onnx``), ``device`` and CPU kind."""
    return {"precision": precision, "backend": backend, "device": str(device), "cpu": cpu_kind()}


def effective_precision(fast: FastPath, device: torch.device) -> str:
    """The effective precision of PyTorch computations under ``fast`` on ``device``."""
    return "bf16" if use_bf16(fast.bf16, device) else "fp32"


def auto_bf16_on_cpu() -> bool:
    """What ``bf16="auto"`` means on this CPU: native bf16 hardware, unless
    ``$PATCHFORENSICS_NATIVE_BF16`` (``1`` or ``0``) says otherwise."""
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if forced in ("1", "0"):
        return forced == "1"
    if forced:
        raise ValueError(f"${NATIVE_BF16_ENV}={forced!r}: set it to 1 (decide bf16=auto as on a CPU with "
                         "native bf16) or 0 (as on an AVX2 CPU), or unset it")
    return cpu_has_native_bf16()


def use_bf16(setting: str, device: torch.device) -> bool:
    """Resolve ``bf16`` (auto/on/off) for ``device``."""
    if setting == "off":
        return False
    if setting == "on":
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and auto_bf16_on_cpu()


def autocast(fast: FastPath, device: torch.device):
    """bf16 autocast context for ``device`` when :func:`use_bf16` says so, else a no-op."""
    if use_bf16(fast.bf16, device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def memory_format(fast: FastPath) -> torch.memory_format:
    return torch.channels_last if fast.channels_last else torch.contiguous_format


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def configure_runtime(fast: FastPath, device: torch.device, local_processes: int = 1) -> int:
    """Thread count and backend flags for this process; returns the intra-op threads.

    ``threads=0`` respects ``OMP_NUM_THREADS`` when set (torchrun sets it) and
    otherwise gives each of the ``local_processes`` on this machine an equal
    share of the cores, so processes do not fight over them.
    """
    if fast.threads > 0:
        torch.set_num_threads(fast.threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, available_cores() // max(1, local_processes)))
    if device.type == "cuda" and fast.channels_last:
        torch.backends.cudnn.benchmark = True   # fixed input sizes: pick the fastest kernels once
    return torch.get_num_threads()


# ------------------------------------------------------------- BN folding
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy of ``model`` with each ``Conv2d -> BatchNorm2d`` folded.

    The model is traced with ``torch.fx``; a BatchNorm whose input is a
    convolution used by nothing else is merged into that convolution (its
    eval-mode statistics become a per-channel scale and shift of the weights).
    Outputs equal the unfolded model's in eval mode up to float rounding. A
    model that cannot be traced is returned as an eval-mode copy, unfolded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    base = copy.deepcopy(model).eval()
    try:
        graph_module = torch.fx.symbolic_trace(base)
    except Exception as e:   # fx raises many types for untraceable code; folding is optional
        log.warning("BatchNorm folding skipped: %s cannot be traced (%s)", type(model).__name__, e)
        return base
    modules = dict(graph_module.named_modules())
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        src = node.args[0]
        if (not isinstance(src, torch.fx.Node) or src.op != "call_module"
                or not isinstance(modules[src.target], nn.Conv2d) or len(src.users) != 1):
            continue
        fused = fuse_conv_bn_eval(modules[src.target], modules[node.target])
        parent, _, leaf = src.target.rpartition(".")
        setattr(graph_module.get_submodule(parent) if parent else graph_module, leaf, fused)
        node.replace_all_uses_with(src)
        graph_module.graph.erase_node(node)
    graph_module.graph.eliminate_dead_code()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    return graph_module


# --------------------------------------------------------------- inference
class TorchInference(nn.Module):
    """An eval-mode model behind the fast inference path: ``(N, 3, H, W)`` images in
    ``[-1, 1]`` -> ``(N, 2, H', W')`` float32 logits, under ``inference_mode``, in
    channels_last and bf16 autocast where enabled."""

    def __init__(self, model: nn.Module, fast: FastPath, device: torch.device):
        super().__init__()
        self.net = model
        self.fast, self.device = fast, device
        self.format = memory_format(fast)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.format)
        with autocast(self.fast, self.device):
            return self.net(x).float()


def inference_backend(fast: FastPath, device: torch.device) -> str:
    """``torch`` or ``onnx``: what ``backend=auto`` picks on ``device``.

    On a CPU, ONNX Runtime: it was the fastest path measured on every CPU tried,
    AVX2 (about 2x the best eager PyTorch) and native-bf16 alike (256 img/s against
    234 for bf16 PyTorch at 128 px). On a GPU, PyTorch.
    """
    if fast.backend != "auto":
        return fast.backend
    return "onnx" if device.type == "cpu" else "torch"


# ---------------------------------------------------------------- data path
def cache_prefix(tcfg: TransformConfig, training: bool) -> Callable[[Image.Image], Image.Image]:
    """The deterministic first step of a pipeline, done once per image before caching.

    Both pipelines start with ``resize_shorter(im, load_size)``, which is a no-op
    on an image already of that size, so caching its result changes nothing
    downstream. Random resized crops work on the original image: cache it as is.
    """
    if training and tcfg.random_resized_crop:
        return lambda im: im
    return lambda im: resize_shorter(im, tcfg.load_size)


class CachedImageDataset(ImageDataset):
    """:class:`~patchforensics.data.ImageDataset` whose images are decoded once.

    :meth:`fill` decodes every image (through ``prefix``, e.g. the resize to
    ``load_size``) into ``uint8`` arrays until ``budget_mb`` is used up; later
    images are decoded on each access as usual. Unreadable files are remembered
    and reported the same way on every access. Items are identical to the
    uncached dataset's. Fill before creating DataLoader workers: forked workers
    then share the cache.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable, seed: int | None = None,
                 prefix: Callable[[Image.Image], Image.Image] = lambda im: im, budget_mb: int = 2048):
        super().__init__(samples, transform, seed)
        self.prefix = prefix
        self.budget_bytes = int(budget_mb) << 20
        self.cached_bytes = 0
        self._images: dict[int, np.ndarray] = {}
        self._errors: dict[int, ImageLoadError] = {}

    def fill(self, progress: bool = False, desc: str = "decode") -> "CachedImageDataset":
        for index in tqdm(range(len(self)), desc=desc, disable=not progress, unit="img", leave=False):
            if self.cached_bytes >= self.budget_bytes:
                break
            if index in self._images or index in self._errors:
                continue
            try:
                array = np.asarray(self.prefix(load_rgb(self.samples[index].path)), dtype=np.uint8)
            except ImageLoadError as e:
                self._errors[index] = e
                continue
            if self.cached_bytes + array.nbytes > self.budget_bytes:
                break
            self._images[index] = array
            self.cached_bytes += array.nbytes
        return self

    @property
    def n_cached(self) -> int:
        return len(self._images)

    def load_image(self, index: int) -> Image.Image:
        if index in self._errors:
            raise self._errors[index]
        array = self._images.get(index)
        if array is None:
            return super().load_image(index)
        return Image.fromarray(array)


def make_dataset(samples: Sequence[Sample], transform: Callable, tcfg: TransformConfig, fast: FastPath,
                 training: bool, seed: int | None = None, progress: bool = False,
                 desc: str = "decode") -> ImageDataset:
    """A dataset through ``transform``: cached (and filled) when ``fast.cache_mb > 0``."""
    if fast.cache_mb <= 0:
        return ImageDataset(samples, transform, seed=seed)
    return CachedImageDataset(samples, transform, seed, cache_prefix(tcfg, training),
                              fast.cache_mb).fill(progress, desc)
