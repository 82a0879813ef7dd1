"""``probe``: every intervention on every face, scored against the face unchanged.

Each face is read and segmented once (region maps cached), its original scored once; each
intervention's edited faces are scored in the same fixed-shape batches
(:func:`~.measure.score_stream`), and the change of p(fake), edited - original, is
summarised per intervention and class (:func:`~.measure.summarise`), with the
transplant-vs-same contrast of each region from the per-image differences.
"""
from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..core import fileio
from ..core.config import ConfigError, require
from ..core.device import resolve_device
from ..core.imageio import NoUsableImagesError, SkipLog
from ..core.provenance import code_commit
from ..explain.segmenters import MediapipeSegmenter
from ..models.card import ModelCard
from ..scoring.engine import Engine
from ..scoring.runtime import FastPath
from .edits import SKIP_REASONS, edits
from .inputs import (CLASSES, PARTNER_KIND, Face, check_folder, data_digest, draw_pairs, image_files, load_faces,
                     names_ffhq, pair_rows, portable_folder, segment_faces)
from .measure import RESAMPLES, decision_threshold, mean_interval, score_stream, summarise
from .registry import CONTRAST, Intervention, parse_interventions

#: the segmenter of the region interventions (``regions``' default)
SEGMENTER = MediapipeSegmenter


@dataclass
class ProbeConfig:
    """Options of ``patchforensics probe``: ``real`` / ``fake`` folders of aligned faces, the model
    (``None``: the bundled detector), ``interventions`` (comma-separated names, ``None`` = all),
    ``pair_real`` (FFHQ reals the fakes' transplants come from; default ``real`` when it names
    FFHQ), at most ``n`` faces per class (drawn with ``seed``, which also draws the pairs and
    the bootstrap), ``feather_px`` of the transplant and occlusion masks."""

    real: str
    fake: str
    out: str
    model: str | None = None
    which_epoch: str | None = None
    interventions: str | None = None
    pair_real: str | None = None
    n: int | None = None
    seed: int = 0
    resamples: int = RESAMPLES
    feather_px: float = 2.0
    batch_size: int = 64
    backend: str = "auto"
    device: str = "auto"
    force: bool = False

    def validate(self) -> tuple[Intervention, ...]:
        """Every check that needs no model and no image; returns the interventions."""
        interventions = parse_interventions(self.interventions, SEGMENTER.regions)
        resolve_device(self.device)             # a device this machine lacks is refused here, in one line
        require(self.n is None or self.n > 0, "n", "must be > 0 faces per class")
        require(self.resamples > 0, "resamples", "must be > 0")
        require(self.batch_size > 0, "batch_size", "must be > 0")
        require(self.feather_px >= 0, "feather_px", "must be >= 0 pixels")
        check_folder(self.real, "--real")
        check_folder(self.fake, "--fake")
        if self.pair_real:
            check_folder(self.pair_real, "--pair-real")
        if any(i.paired for i in interventions) and not self.transplant_reals():
            raise ConfigError(f"--real {self.real} does not name FFHQ: fakes are paired only with FFHQ reals "
                              "(CelebA-HQ is framed differently); pass --pair-real DIR of FFHQ faces, or leave "
                              "the transplant interventions out")
        fileio.ensure_new_output(self.out, self.force)
        return interventions

    def transplant_reals(self) -> str | None:
        """The folder of reals the fakes' transplants come from (``None``: none FFHQ-framed)."""
        return self.pair_real or (self.real if names_ffhq(self.real) else None)

    def separate_pair_reals(self) -> bool:
        """Whether ``pair_real`` is a folder other than ``real`` (its faces are read and segmented too)."""
        return bool(self.pair_real) and Path(self.pair_real).resolve() != Path(self.real).resolve()

    def reals_framed(self) -> bool:
        """Whether the measured reals are FFHQ-framed (real-class transplants are made only then)."""
        return names_ffhq(self.real) or (bool(self.pair_real) and not self.separate_pair_reals())


@dataclass
class Prepared:
    """What a run works on: the engine and its threshold, the faces (segmented when a region
    intervention runs), the pairs, the classes each paired family is measured on."""

    engine: Engine
    threshold: dict
    interventions: tuple[Intervention, ...]
    faces: dict[str, list[Face]]
    pairs: dict[tuple[str, str], list[Face | None]]
    region_ids: dict[str, int]
    segmenter: str | None
    skipped: SkipLog = field(default_factory=SkipLog)
    notes: list[str] = field(default_factory=list)

    def classes(self, iv: Intervention) -> tuple[str, ...]:
        return tuple(c for c in CLASSES if not iv.paired or (c, PARTNER_KIND[iv.family]) in self.pairs)


def model_identity(card: ModelCard, source: str | None) -> dict:
    """``{name, architecture, field, key, source}``: ``key`` is a grid cell's key when the
    checkpoint folder is named as ``experiment`` names them (``…_<12 hex>``), else the model's name."""
    folder = Path(source).name if source else ""
    cell = re.search(r"_([0-9a-f]{12})$", Path(folder).stem)
    return {"name": card.name, "architecture": card.architecture,
            "field": int(card.receptive_field().size[0]) if card.patch else "full",
            "key": cell.group(1) if cell else (card.name or folder), "source": source or "bundled"}


def prepare(cfg: ProbeConfig, interventions: tuple[Intervention, ...], segmenter=None,
            progress: bool = False) -> Prepared:
    """Open the model, read and segment the faces, draw the pairs."""
    engine = Engine.load(cfg.model, cfg.which_epoch, FastPath(backend=cfg.backend, cache_mb=0), cfg.device)
    transform = engine.card.transform()
    skipped = SkipLog()
    faces = {cls: load_faces(image_files(folder, cfg.n, cfg.seed, skipped), cls, transform, skipped)
             for cls, folder in (("real", cfg.real), ("fake", cfg.fake))}
    for cls in CLASSES:
        if not faces[cls]:
            raise NoUsableImagesError(f"no readable {cls} image under {getattr(cfg, cls)}")
    prep = Prepared(engine, decision_threshold(engine.card), interventions, faces, {}, {}, None, skipped)
    if not any(i.region for i in interventions):
        return prep
    own = segmenter is None
    segmenter = segmenter or SEGMENTER()
    try:
        pair_reals = faces["real"]
        if any(i.paired for i in interventions) and cfg.separate_pair_reals():
            pair_reals = load_faces(image_files(cfg.pair_real, cfg.n, cfg.seed, skipped), "real", transform, skipped)
            prep.notes.append(f"fakes' transplants come from the FFHQ reals of {cfg.pair_real}"
                              + ("" if cfg.reals_framed() else f"; the reals of {cfg.real} are not FFHQ-framed, so "
                                                               "no real-class transplant is made"))
        segment_faces([f for cls in CLASSES for f in faces[cls]]
                      + ([] if pair_reals is faces["real"] else pair_reals), segmenter, progress)
    finally:
        if own:
            segmenter.close()
    prep.segmenter = segmenter.name
    prep.region_ids = {name: i for i, name in enumerate(segmenter.regions)}
    if any(i.paired for i in interventions):
        prep.pairs = draw_pairs(faces, pair_reals, cfg.seed, CLASSES if cfg.reals_framed() else ("fake",))
    return prep


@dataclass
class Scores:
    """A run's scores: ``p[(name, cls)] = {face index: p(fake)}`` (name ``None``: the originals),
    ``area[(name, cls)] = {face index: share of the face's pixels the edit's mask covers}`` (1 for
    a whole-image edit) and ``skips[(name, cls)] = {reason: count}``."""

    p: dict = field(default_factory=lambda: defaultdict(dict))
    area: dict = field(default_factory=lambda: defaultdict(dict))
    skips: dict = field(default_factory=lambda: defaultdict(lambda: dict.fromkeys(SKIP_REASONS, 0)))


def score_all(prep: Prepared, cfg: ProbeConfig, progress: bool = False) -> Scores:
    """The originals, then every intervention's edited faces, through one stream of fixed-shape batches."""
    scores = Scores()
    total = sum(len(prep.faces[c]) * (1 + sum(c in prep.classes(iv) for iv in prep.interventions)) for c in CLASSES)
    bar = tqdm(total=total, desc="probe", unit="img", disable=not progress)

    def jobs():
        for cls in CLASSES:
            for i, face in enumerate(prep.faces[cls]):
                yield (None, cls, i), face.image
        for iv in prep.interventions:
            for cls in prep.classes(iv):
                partners = prep.pairs[(cls, PARTNER_KIND[iv.family])] if iv.paired else None
                for i, made in edits(iv, prep.faces[cls], partners, prep.region_ids, cfg.seed, cfg.feather_px):
                    if isinstance(made, str):
                        scores.skips[(iv.name, cls)][made] += 1
                        bar.update(1)
                        continue
                    scores.area[(iv.name, cls)][i] = 1.0 if made.mask is None else float(made.mask.mean())
                    yield (iv.name, cls, i), made.image

    with bar:
        for (name, cls, i), value in score_stream(prep.engine, jobs(), min(cfg.batch_size, total), bar.update):
            scores.p[(name, cls)][i] = value
    return scores


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def summary_rows(prep: Prepared, cfg: ProbeConfig, scores: Scores) -> list[dict]:
    """One row per intervention and class (registry order), then each region's contrast row."""
    cut, p = prep.threshold["p_fake"], scores.p
    rows = []
    for iv in prep.interventions:
        for cls in prep.classes(iv):
            done = p.get((iv.name, cls), {})
            idx = sorted(done)
            before = np.array([p[(None, cls)][i] for i in idx])
            why = scores.skips.get((iv.name, cls), dict.fromkeys(SKIP_REASONS, 0))
            rows.append({"intervention": iv.name, "family": iv.family, "region": iv.region or "", "class": cls,
                         **summarise(before, np.array([done[i] for i in idx]), cut, cfg.resamples, cfg.seed),
                         "area": _mean(scores.area[(iv.name, cls)].values()), "skipped": sum(why.values()), **why})
    for iv in prep.interventions:
        same = Intervention("transplant-same", iv.region)
        if iv.family != "transplant" or same not in prep.interventions:
            continue
        for cls in prep.classes(iv):
            a, b = p.get((iv.name, cls), {}), p.get((same.name, cls), {})
            both = sorted(set(a) & set(b))
            mean, lo, hi = mean_interval(np.array([a[i] - b[i] for i in both]), cfg.resamples, cfg.seed)
            nan = float("nan")
            rows.append({"intervention": f"{CONTRAST}:{iv.region}", "family": CONTRAST, "region": iv.region,
                         "class": cls, "n": len(both), "mean_change": mean, "lo": lo, "hi": hi, "flipped": nan,
                         "flagged_before": nan, "flagged_after": nan, "mean_p_before": nan, "mean_p_after": nan,
                         "area": _mean(scores.area[(iv.name, cls)][i] for i in both),
                         "skipped": len(prep.faces[cls]) - len(both), **dict.fromkeys(SKIP_REASONS, 0)})
    return rows


@dataclass
class ProbeResult:
    """A finished probe: ``summary`` is probe.json's content, ``out`` its folder."""

    summary: dict
    out: Path


def run_probe(cfg: ProbeConfig, segmenter=None, progress: bool = False) -> ProbeResult:
    """Run every intervention on the faces of ``cfg`` and write the results folder (:mod:`.writer`)."""
    from .writer import with_tables, write_results

    start = time.time()
    interventions = cfg.validate()
    prep = prepare(cfg, interventions, segmenter, progress)
    scores = score_all(prep, cfg, progress)
    card = prep.engine.card
    summary = with_tables({
        "command": "probe", "model": model_identity(card, cfg.model), "which_epoch": cfg.which_epoch,
        "threshold": prep.threshold, "seed": cfg.seed, "resamples": cfg.resamples, "feather_px": cfg.feather_px,
        "segmenter": prep.segmenter, "real": str(cfg.real), "fake": str(cfg.fake),
        "pair_real": cfg.transplant_reals() if prep.pairs else None,
        "real_folder": portable_folder(cfg.real), "fake_folder": portable_folder(cfg.fake),
        "test_data": data_digest(prep.faces), "n": {c: len(prep.faces[c]) for c in CLASSES},
        "no_face": {c: [f.path for f in prep.faces[c] if f.regions is None] if prep.segmenter else []
                    for c in CLASSES},
        "unreadable": prep.skipped.as_list(), "interventions": [i.name for i in interventions],
        "notes": prep.notes, "rows": summary_rows(prep, cfg, scores),
        "table": "probe.csv", "markdown": "probe.md", "figure": "probe.png", "pairs": "pairs.csv",
        "runtime": prep.engine.runtime, "commit": code_commit() or "",
        "seconds": round(time.time() - start, 1),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
    out = write_results(Path(cfg.out), summary, pair_rows(prep.faces, prep.pairs), cfg.force)
    return ProbeResult(summary, out)
