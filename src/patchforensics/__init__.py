"""patchforensics: patch-based detection of generated face images and an analysis
of what makes them detectable (after Chai, Bau, Lim & Isola, ECCV 2020).

Pipeline stages, one folder each, earlier ones never importing later ones:
:mod:`.core` → :mod:`.data` → :mod:`.models` (registry, :class:`~.models.card.ModelCard`)
→ :mod:`.scoring` (the inference :class:`~.scoring.engine.Engine`, metrics) →
:mod:`.evaluation` (``test``, ``test-suite``, ``calibrate``) → :mod:`.training` →
:mod:`.explain` (visualize, patches, regions, report) / :mod:`.screening`
(detect, serve) → :mod:`.release` / :mod:`.experiments` → :mod:`.adapt`.

The short path, as timm's (loaded on first use, so ``import patchforensics`` stays
light: no torch, no ONNX Runtime)::

    import patchforensics
    detector = patchforensics.open_detector()              # the bundled detector
    print(detector.screen_paths(["photo.jpg"])[0].faces[0].p_fake)
    model = patchforensics.create_model("xception_block2")  # (N, 3, H, W) -> (N, 2, H', W')
"""
__version__ = "0.1.0"

import os as _os

# PyTorch's OpenMP worker threads sleep between operations instead of spinning:
# on a busy or shared CPU, spinning threads steal the time slices the others need
# (training ran 1.75x faster on a loaded 2-core machine; see docs/performance.md).
# libgomp reads this when torch is imported, so it must be set first; an explicit
# OMP_WAIT_POLICY in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: the top-level API: name -> the module that defines it (imported on first access, PEP 562)
_LAZY = {
    "open_detector": "patchforensics.screening.detector",
    "create_model": "patchforensics.models.registry",
    "list_models": "patchforensics.models.registry",
    "receptive_field": "patchforensics.models.receptive_field",
    "train": "patchforensics.training.train",
    "TrainConfig": "patchforensics.training.config",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value          # later accesses skip this hook
        return value
    raise AttributeError(f"module 'patchforensics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
