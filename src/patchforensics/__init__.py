"""patchforensics: patch-based detection of generated face images and an analysis
of what makes them detectable (after Chai, Bau, Lim & Isola, ECCV 2020).

Pipeline stages, one folder each, earlier ones never importing later ones:
:mod:`.core` → :mod:`.data` → :mod:`.models` (registry, :class:`~.models.card.ModelCard`)
→ :mod:`.scoring` (the inference :class:`~.scoring.engine.Engine`, metrics) →
:mod:`.evaluation` (``test``, ``test-suite``, ``calibrate``) → :mod:`.training` →
:mod:`.explain` (visualize, patches, regions, report) / :mod:`.screening`
(detect, serve). Models: :func:`patchforensics.models.create_model`.
"""
__version__ = "0.1.0"

import os as _os

# PyTorch's OpenMP worker threads sleep between operations instead of spinning:
# on a busy or shared CPU, spinning threads steal the time slices the others need
# (training ran 1.75x faster on a loaded 2-core machine; see docs/performance.md).
# libgomp reads this when torch is imported, so it must be set first; an explicit
# OMP_WAIT_POLICY in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
