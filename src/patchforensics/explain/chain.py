"""The whole explain chain for one checkpoint and dataset: test, visualize, patches, regions, report."""
from __future__ import annotations

from pathlib import Path

from ..evaluation.evaluate import TestConfig, run_test
from ..models.card import ModelCard
from ..scoring.engine import Engine
from .runs import require_patch_model
from .patches import PatchesConfig, run_patches
from .regions import RegionsConfig, run_regions
from .report import ReportConfig, run_report
from .visualize import VisualizeConfig, run_visualize


def explain_checkpoint(ckpt_dir, real_dir, fake_dir, dataset_name: str, results_dir: str = "results",
                       partition: str = "test", which: str = "bestval", topn_images: int = 12,
                       topn_patches: int = 100, progress: bool = True, force: bool = False,
                       device: str = "auto") -> Path:
    """Run test (reused when up to date), visualize, patches (one per image), regions
    (mediapipe) and the report for one checkpoint and dataset; returns ``report.html``.

    ``real_dir``/``fake_dir``: a folder (or list of folders) with a ``partition``
    subfolder or the images themselves. The report covers all of ``results_dir``
    and is written to ``<results_dir>/report.html``. ``force`` replaces earlier
    explain outputs (without it an existing output is an error, as on the CLI).
    """
    as_list = (lambda d: [str(x) for x in d] if isinstance(d, (list, tuple)) else [str(d)])
    common = dict(checkpoint=str(ckpt_dir), real=as_list(real_dir), fake=as_list(fake_dir),
                  dataset_name=dataset_name, which_epoch=str(which), partition=partition,
                  results_dir=str(results_dir), device=device)
    require_patch_model(ModelCard.read(ckpt_dir), "explain")
    engine = Engine.load(ckpt_dir, str(which), TestConfig(**common).fast_path(), device)
    run_test(TestConfig(**common), engine=engine, progress=progress)
    run_visualize(VisualizeConfig(**common, topn=topn_images, force=force), engine=engine, progress=progress)
    patches_dir = run_patches(PatchesConfig(**common, topn=topn_patches, unique=True, force=force),
                              engine=engine, progress=progress)
    run_regions(RegionsConfig(str(patches_dir), force=force, device=device), progress=progress)
    return run_report(ReportConfig(str(results_dir), force=True))
