"""``detect --shard K/N`` and ``detect --merge``: one screening split over many processes, joined again.

The split is of the *expanded* inputs (every file a folder scan, pattern or list gives, in the
order ``detect`` scores them): the file at 0-based position ``i`` goes to shard ``i mod N + 1``,
so each shard gets every N-th file and shard sizes differ by at most one. A shard writes its
usual outputs into its ``--out`` folder (:func:`~.results.write_result_files`) and a record,
``shard.json``, written last (its presence says the shard finished): the run's options, the
digest of the whole input list, and its rows in full (every top patch); with ``--report``, its
faces' pictures in ``report_faces.json``. The merge checks that the shards are the N parts of one
run and gives what one run over every input gives: the same rows in the same order, the summary
recomputed, the heatmap files copied into its ``--heatmaps``, the report drawn from the merged rows.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from ..core import fileio
from ..core.config import ConfigError
from ..core.imageio import SkipLog
from .faces import Patch, ScoredFace
from .report import ReportFace, write_report
from .results import DetectResult, ImageResult, write_result_files

#: a shard's record in its ``--out`` folder, written last
SHARD_FILE = "shard.json"
#: a shard's report pictures (with ``--report``): ``[{"row", "face", "picture"}]``
REPORT_FACES_FILE = "report_faces.json"
#: what else every shard of one run shares: field of :class:`ShardRecord` -> what it is, in words
SHARED = {"n": "number of shards", "count": "number of inputs", "digest": "input list (SHA-256)"}
#: the fields of :class:`~.results.DetectResult` that every shard of one run shares
RESULT_FIELDS = ("model_name", "threshold_name", "p_fake_threshold", "scope", "false_alarm_rate")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``: shard K of N, ``1 <= K <= N``."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise ConfigError(f"shard: {text!r} is not K/N with 1 <= K <= N; give e.g. --shard 2/4")
    return k, n


def shard_indices(count: int, k: int, n: int) -> list[int]:
    """The positions (0-based) of shard ``k`` of ``n`` among ``count`` expanded inputs: ``i mod n == k - 1``."""
    return list(range(k - 1, count, n))


def inputs_digest(paths: Sequence[Path | str]) -> str:
    """SHA-256 of the expanded input list (one path a line): shards of one run share it."""
    return hashlib.sha256("\n".join(map(str, paths)).encode("utf-8", "backslashreplace")).hexdigest()


def _face_from(record: dict) -> ScoredFace:
    record = dict(record, maps=None, face_box=tuple(record["face_box"]))
    record["top_patches"] = [Patch(**{k: tuple(v) if isinstance(v, list) else v for k, v in p.items()})
                             for p in record["top_patches"]]
    return ScoredFace(**record)


def _row_from(record: dict) -> ImageResult:
    return ImageResult(**dict(record, faces=[_face_from(f) for f in record["faces"]]))


@dataclass
class ShardRecord:
    """What ``shard.json`` holds: shard ``k`` of ``n`` of a run over ``count`` inputs (``digest``),
    its ``options``, the ``result`` fields of :data:`RESULT_FIELDS`, its ``rows`` at ``positions``."""

    k: int
    n: int
    count: int
    digest: str
    options: dict
    result: dict
    positions: list[int]
    rows: list[dict]
    heatmaps: str | None = None                       # absolute folder of its heatmap files
    report_faces: bool = False                        # its report pictures are in REPORT_FACES_FILE
    folder: Path = field(default=Path("."), repr=False, compare=False)

    @classmethod
    def read(cls, folder: str | Path) -> "ShardRecord":
        path = Path(folder) / SHARD_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no {SHARD_FILE} (not a detect --shard output, or that shard "
                                    "has not finished: rerun it)")
        with open(path, encoding="utf-8") as f:
            return cls(**json.load(f), folder=Path(folder))


def write_shard(out: str | Path, k: int, n: int, everything: Sequence[Path], options: dict,
                result: DetectResult, heatmaps: str | None, cards: Sequence[ReportFace] | None) -> None:
    """Write shard ``k``/``n``'s record (and its report pictures when ``cards`` is given) into ``out``.

    ``result.images`` are the shard's rows, in the order of :func:`shard_indices`; ``everything``
    is the whole expanded input list."""
    positions = shard_indices(len(everything), k, n)
    if cards is not None:
        # a card holds its row's own face record: where that record is gives the card's place
        where = {id(f): (row, j) for row, im in zip(positions, result.images) for j, f in enumerate(im.faces)}
        fileio.write_json(Path(out) / REPORT_FACES_FILE,
                          [dict(zip(("row", "face"), where[id(c.face)]), picture=c.picture) for c in cards])
    record = ShardRecord(k, n, len(everything), inputs_digest(everything), options,
                         {name: getattr(result, name) for name in RESULT_FIELDS}, positions,
                         [asdict(im) for im in result.images],
                         str(Path(heatmaps).resolve()) if heatmaps else None, cards is not None)
    fileio.write_json(Path(out) / SHARD_FILE, {k: v for k, v in asdict(record).items() if k != "folder"})


def check_shards(shards: Sequence[ShardRecord]) -> None:
    """Refuse, in one line, shards that are not the N parts of one run: another run's options or
    inputs, a shard given twice, a shard missing."""
    first = shards[0]
    for s in shards[1:]:
        differ = [f"{key}={value!r} vs {first.options.get(key)!r}" for key, value in s.options.items()
                  if value != first.options.get(key)]
        differ += [f"{what}: {getattr(s, key)} vs {getattr(first, key)}" for key, what in SHARED.items()
                   if getattr(s, key) != getattr(first, key)]
        differ += [f"{key}={value!r} vs {first.result.get(key)!r}" for key, value in s.result.items()
                   if value != first.result.get(key)]
        if differ:
            raise ConfigError(f"merge: {s.folder} and {first.folder} are not shards of one run ({differ[0]}); "
                              "merge the shards of one detect run only")
    seen: dict[int, Path] = {}
    for s in shards:
        if s.k in seen:
            raise ConfigError(f"merge: {seen[s.k]} and {s.folder} are both shard {s.k}/{s.n}; give each shard once")
        seen[s.k] = s.folder
    missing = [k for k in range(1, first.n + 1) if k not in seen]
    if missing:
        raise ConfigError(f"merge: shard{'s' * (len(missing) > 1)} {', '.join(f'{k}/{first.n}' for k in missing)} "
                          f"missing (every shard's --out is needed)")


@dataclass
class MergeConfig:
    """Options of ``detect --merge``: the shards' ``--out`` folders and where the merged outputs go."""

    shards: list[str]
    out: str
    heatmaps: str | None = None      # copy the shards' heatmap files here
    report: str | None = None        # draw the report from the merged rows
    force: bool = False


def _refuse_missing(shards: Sequence[ShardRecord], cfg: MergeConfig) -> None:
    for s in shards:
        if cfg.heatmaps and s.heatmaps is None:
            raise ConfigError(f"merge: shard {s.folder} was run without --heatmaps; rerun it with --heatmaps, "
                              "or merge without --heatmaps")
        if cfg.report and not s.report_faces:
            raise ConfigError(f"merge: shard {s.folder} was run without --report; rerun it with --report, "
                              "or merge without --report")


def _only_shards_inside(out: str | Path, shards: Sequence[ShardRecord]) -> bool:
    """Whether ``out`` holds nothing but (folders above) the shards being merged, as ``detect
    --executor slurm`` leaves it (``OUT/shards/K-of-N``): the merge may write there."""
    keep = {p for s in shards for p in (s.folder.resolve(), *s.folder.resolve().parents)}
    return Path(out).is_dir() and all(entry.resolve() in keep for entry in Path(out).iterdir())


def merge_shards(cfg: MergeConfig) -> DetectResult:
    """Join the shards of one ``detect`` run into its result (rows in input order), write it into
    ``cfg.out`` as one run would, copy the heatmaps and write the report when asked."""
    if not cfg.shards:
        raise ConfigError("merge: give the shards' --out folders")
    shards = [ShardRecord.read(folder) for folder in cfg.shards]     # fails before anything is written
    check_shards(shards)
    _refuse_missing(shards, cfg)
    fileio.ensure_new_output(cfg.out, cfg.force or _only_shards_inside(cfg.out, shards))
    if cfg.heatmaps:
        fileio.ensure_new_output(cfg.heatmaps, cfg.force)
    if cfg.report:
        fileio.ensure_new_file(cfg.report, cfg.force)
    placed: dict[int, tuple[ImageResult, ShardRecord]] = {}
    for s in shards:
        placed.update((pos, (_row_from(row), s)) for pos, row in zip(s.positions, s.rows))
    result = DetectResult([], **shards[0].result)
    for pos in sorted(placed):
        row, s = placed[pos]
        if row.heatmap and cfg.heatmaps:
            target = Path(cfg.heatmaps) / Path(row.heatmap).name
            with fileio.atomic_path(target) as tmp:
                shutil.copyfile(Path(s.heatmaps) / target.name, tmp)
            row.heatmap = str(target)
        result.images.append(row)
    result.skipped = SkipLog([(im.path, im.error) for im in result.images if im.error])
    write_result_files(cfg.out, result)
    if cfg.report:
        write_report(cfg.report, result, _merged_cards(shards, placed))
    return result


def _merged_cards(shards: Sequence[ShardRecord], placed: dict[int, tuple[ImageResult, ShardRecord]]
                  ) -> list[ReportFace]:
    """The report's face cards of every shard, in input order (rows, then faces)."""
    cards = []
    for s in shards:
        with open(s.folder / REPORT_FACES_FILE, encoding="utf-8") as f:
            cards += json.load(f)
    cards.sort(key=lambda c: (c["row"], c["face"]))
    return [ReportFace(placed[c["row"]][0].path, placed[c["row"]][0].faces[c["face"]], c["picture"]) for c in cards]
