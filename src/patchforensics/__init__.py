"""patchforensics: patch-based detection of generated face images and an analysis
of what makes them detectable (after Chai, Bau, Lim & Isola, ECCV 2020).

Pipeline stages, one module each: :mod:`.prepare` → :mod:`.train` →
:mod:`.evaluate` (``test``) / :mod:`.suite` (``test-suite``) → explain → report
→ detect/serve. Models: :func:`patchforensics.models.create_model`.
"""
__version__ = "0.1.0"
