"""``export-tfrecord``: NVIDIA ``dataset_tool`` TFRecords → PNG, without TensorFlow.

CelebA-HQ and FFHQ were distributed for the GAN papers as TFRecords written by
NVIDIA's ``dataset_tool.py``: one file per resolution level
(``<name>-r02.tfrecords`` … ``<name>-r10.tfrecords``, ``rNN`` = log2 of the
side), each record a ``tf.train.Example`` with two features, ``shape`` (int64
``[C, H, W]``) and ``data`` (one bytes value, uint8 pixels in C×H×W order).

This module reads that format without TensorFlow:

* record framing: ``uint64 length`` (little endian), ``uint32`` masked CRC-32C
  of the length bytes, ``length`` data bytes, ``uint32`` masked CRC-32C of the
  data; every checksum is verified (``verify=False`` skips the data checksums),
  with ``google-crc32c`` (hardware-accelerated CRC-32C);
* ``tf.train.Example`` decoded with ``protobuf``, from message descriptors built
  here with ``descriptor_pb2`` (the same fields and numbers as TensorFlow's
  ``example.proto``/``feature.proto``; no protoc, no generated code).

:func:`export_tfrecord` writes one level to ``OUT/{train,val,test}/NNNNN.png``
through :func:`patchforensics.data.prepare.standardize` when a ``size`` is given
(the seed's "real-tfr-1024-resized128"), byte-exact pixels otherwise.
"""
from __future__ import annotations

import csv
import functools
import io
import itertools
import re
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import google_crc32c
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..core import fileio
from ..core.config import require
from .prepare import SPLITS, assign_splits, png_bytes, standardize

# ---------------------------------------------------------------- CRC-32C
def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C (Castagnoli, as in iSCSI and TFRecord) of ``data``."""
    return google_crc32c.value(bytes(data) if isinstance(data, memoryview) else data)


def masked_crc32c(data: bytes | memoryview) -> int:
    """TFRecord's masked checksum: CRC-32C rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------- record framing
class TFRecordError(ValueError):
    """A TFRecord file whose framing cannot be followed past ``offset``."""

    def __init__(self, path: str | Path, offset: int, reason: str):
        super().__init__(f"{path}: byte {offset}: {reason}")
        self.path, self.offset, self.reason = str(path), offset, reason


@dataclass
class Record:
    """One framed record; ``error`` is set (and ``data`` is None) when its data checksum fails."""

    index: int
    offset: int
    data: bytes | None
    error: str | None = None


_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


def _read_header(f, path: Path, offset: int) -> int | None:
    """Length of the record starting at ``offset``; None at a clean end of file."""
    header = f.read(_HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        raise TFRecordError(path, offset, f"truncated record header ({len(header)} of {_HEADER.size} bytes)")
    length, length_crc = _HEADER.unpack(header)
    if masked_crc32c(header[:8]) != length_crc:
        raise TFRecordError(path, offset, "length checksum mismatch: not a TFRecord file, or corrupt")
    return length


def iter_records(path: str | Path, verify: bool = True) -> Iterator[Record]:
    """Records of a TFRecord file in order.

    A record whose data checksum fails is yielded with ``error`` set (the framing
    is still known, so reading goes on); a broken or truncated header raises
    :class:`TFRecordError`, since nothing after it can be located.
    """
    path = Path(path)
    with open(path, "rb") as f:
        index, offset = 0, 0
        while (length := _read_header(f, path, offset)) is not None:
            data = f.read(length)
            footer = f.read(_FOOTER.size)
            if len(data) < length or len(footer) < _FOOTER.size:
                raise TFRecordError(path, offset, f"truncated record {index} "
                                                  f"({len(data)} of {length} data bytes)")
            if verify and masked_crc32c(data) != _FOOTER.unpack(footer)[0]:
                yield Record(index, offset, None, "data checksum mismatch (corrupt record)")
            else:
                yield Record(index, offset, data)
            offset += _HEADER.size + length + _FOOTER.size
            index += 1


def count_records(path: str | Path) -> tuple[int, TFRecordError | None]:
    """Number of records that can be located (headers only, data is skipped)
    and the framing error that stopped the count, if any."""
    path = Path(path)
    size = path.stat().st_size
    n, offset = 0, 0
    with open(path, "rb") as f:
        try:
            while (length := _read_header(f, path, offset)) is not None:
                end = offset + _HEADER.size + length + _FOOTER.size
                if end > size:
                    raise TFRecordError(path, offset, f"truncated record {n} ({size - offset} bytes left, "
                                                      f"record needs {end - offset})")
                f.seek(end)
                offset, n = end, n + 1
        except TFRecordError as e:
            return n, e
    return n, None


# ---------------------------------------------------------------- tf.train.Example
@functools.lru_cache(maxsize=1)
def _example_class():
    """The ``tf.train.Example`` message class, built from descriptors (TensorFlow's
    field names and numbers) in a private pool, so nothing clashes with an installed
    TensorFlow and nothing has to be generated by protoc."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="patchforensics_tf_example.proto", package="tensorflow",
                                               syntax="proto3")

    def add(msg, number: int, name: str, kind: int, type_name: str = "", repeated: bool = False):
        field = msg.field.add(name=name, number=number, type=kind,
                              label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
        if type_name:
            field.type_name = f".tensorflow.{type_name}"
        return field

    # proto3: repeated numbers are packed, as TensorFlow's [packed = true]
    for name, kind in (("BytesList", F.TYPE_BYTES), ("FloatList", F.TYPE_FLOAT), ("Int64List", F.TYPE_INT64)):
        add(proto.message_type.add(name=name), 1, "value", kind, repeated=True)
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name, list_type in ((1, "bytes_list", "BytesList"), (2, "float_list", "FloatList"),
                                    (3, "int64_list", "Int64List")):
        add(feature, number, name, F.TYPE_MESSAGE, list_type).oneof_index = 0
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")       # map<string, Feature> feature = 1
    entry.options.map_entry = True
    add(entry, 1, "key", F.TYPE_STRING)
    add(entry, 2, "value", F.TYPE_MESSAGE, "Feature")
    add(features, 1, "feature", F.TYPE_MESSAGE, "Features.FeatureEntry", repeated=True)
    add(proto.message_type.add(name="Example"), 1, "features", F.TYPE_MESSAGE, "Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def parse_example(data: bytes | memoryview) -> dict[str, list]:
    """Decode a serialized ``tf.train.Example`` to ``{name: list of values}``.

    Raises ``ValueError`` for bytes that are not a well-formed Example.
    """
    from google.protobuf.message import DecodeError

    try:
        example = _example_class().FromString(bytes(data))
    except DecodeError as e:
        raise ValueError(f"not a tf.train.Example ({e})") from None
    features = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        features[key] = list(getattr(feature, kind).value) if kind else []
    return features


def decode_image(features: dict[str, list]) -> np.ndarray:
    """(H, W, C) uint8 pixels from dataset_tool's ``shape`` [C, H, W] and ``data`` features."""
    if "shape" not in features or "data" not in features:
        raise ValueError(f"record has features {sorted(features)}; expected 'shape' and 'data' "
                         "as written by dataset_tool")
    shape = [int(s) for s in features["shape"]]
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape) <= 0:
        raise ValueError(f"shape {shape} is not [C, H, W] with C = 1 or 3")
    data = features["data"][0] if features["data"] else b""
    if len(data) != shape[0] * shape[1] * shape[2]:
        raise ValueError(f"data has {len(data)} bytes, shape {shape} needs {np.prod(shape)}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape).transpose(1, 2, 0)


# ---------------------------------------------------------------- export
_LEVEL_NAME = re.compile(r"-r(\d\d)\.tfrecords$")


def find_levels(folder: str | Path) -> dict[int, Path]:
    """``{resolution in pixels: file}`` for dataset_tool's ``*-rNN.tfrecords`` files in ``folder``."""
    levels = {}
    for p in sorted(Path(folder).glob("*.tfrecords")):
        m = _LEVEL_NAME.search(p.name)
        if m:
            levels[2 ** int(m.group(1))] = p
    return levels


@dataclass
class ExportConfig:
    """Options of ``patchforensics export-tfrecord``.

    ``src`` is a ``.tfrecords`` file or a dataset_tool folder; ``resolution``
    picks the level in a folder (default: the highest); ``size`` resizes
    (centre crop + Lanczos, as ``prepare``), None keeps the pixels exactly;
    ``split_order`` 'shuffled' draws the split with ``seed`` like ``prepare``,
    'ordered' gives contiguous blocks by record index (the seed's FFHQ
    convention: first 60000 train, 5000 val, 5000 test); ``limit`` stops after
    that many records.
    """

    src: str
    out: str
    resolution: int | None = None
    size: int | None = None
    jpeg_quality: int | None = None
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    split_order: str = "shuffled"
    seed: int = 0
    verify: bool = True
    limit: int | None = None
    force: bool = False

    def validate(self) -> None:
        require(self.size is None or self.size >= 8, "size", "must be at least 8 pixels")
        require(self.jpeg_quality is None or 1 <= self.jpeg_quality <= 100, "jpeg_quality",
                "must be between 1 and 100")
        require(len(self.split) == 3 and all(f >= 0 for f in self.split) and abs(sum(self.split) - 1) < 1e-6,
                "split", "give three non-negative fractions summing to 1, e.g. 0.7,0.1,0.2")
        require(self.split_order in ("shuffled", "ordered"), "split_order", "must be 'shuffled' or 'ordered'")
        require(self.limit is None or self.limit > 0, "limit", "must be > 0")

    def tfrecord_file(self) -> Path:
        """The file to read; raises FileNotFoundError / ConfigError naming what exists."""
        src = Path(self.src)
        if not src.exists():
            raise FileNotFoundError(f"{src} does not exist; pass a .tfrecords file or a dataset_tool folder")
        if src.is_file():
            return src
        levels = find_levels(src)
        if not levels:
            raise FileNotFoundError(f"no dataset_tool files (*-rNN.tfrecords) in {src}")
        if self.resolution is None:
            return levels[max(levels)]
        require(self.resolution in levels, "resolution",
                f"no level {self.resolution} in {src}; available: {', '.join(map(str, sorted(levels)))}")
        return levels[self.resolution]


@dataclass
class ExportResult:
    out: Path
    source: Path
    counts: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)


def ordered_splits(n: int, fractions) -> list[str]:
    """Contiguous split blocks by index: the first ``round(f_train*n)`` train, then val, then test."""
    n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    return ["train" if i < n_train else "val" if i < n_train + n_val else "test" for i in range(n)]


def export_tfrecord(cfg: ExportConfig, progress: bool = True) -> ExportResult:
    """Export one level of a dataset_tool TFRecord to ``cfg.out/{train,val,test}/NNNNN.png``
    plus ``manifest.csv`` (record, byte offset, shape, split, output) and
    ``summary.json`` (options, counts, skipped records with reasons).

    Records that fail their checksum or do not decode are skipped and listed;
    a broken header ends the export there (listed too).
    """
    cfg.validate()
    path = cfg.tfrecord_file()
    n, framing_error = count_records(path)
    if n == 0:
        raise ValueError(f"{path}: no readable records" + (f" ({framing_error.reason})" if framing_error else ""))
    with fileio.atomic_dir(cfg.out, cfg.force) as tmp:   # --force replaces OUT whole, never merges into it
        result = _export_into(cfg, path, n, framing_error, tmp, progress)
    return replace(result, out=Path(cfg.out))


def _export_into(cfg: ExportConfig, path: Path, n: int, framing_error, out: Path, progress: bool) -> ExportResult:
    n = min(n, cfg.limit or n)
    splits = (assign_splits(n, cfg.split, cfg.seed) if cfg.split_order == "shuffled"
              else ordered_splits(n, cfg.split))
    width = max(5, len(str(n - 1)))
    rows, skipped = [], []
    counts = {s: 0 for s in SPLITS}
    # islice: never ask the reader for the record past the count (it may be the broken one)
    records = itertools.islice(iter_records(path, verify=cfg.verify), n)
    for record in tqdm(records, total=n, desc="export-tfrecord", disable=not progress, unit="img"):
        where = f"{path.name} record {record.index} (byte {record.offset})"
        if record.error:
            skipped.append({"path": where, "reason": record.error})
            continue
        try:
            pixels = decode_image(parse_example(record.data))
        except ValueError as e:
            skipped.append({"path": where, "reason": f"cannot decode: {e}"})
            continue
        h, w, c = pixels.shape
        im = Image.fromarray(pixels[:, :, 0] if c == 1 else pixels).convert("RGB")
        if cfg.size is not None or cfg.jpeg_quality is not None:
            im = standardize(im, cfg.size or min(w, h), cfg.jpeg_quality)
        split = splits[record.index]
        name = f"{split}/{record.index:0{width}d}.png"
        fileio.write_bytes(out / name, png_bytes(im))
        counts[split] += 1
        rows.append([record.index, record.offset, f"{c}x{h}x{w}", split, name])
    if framing_error is not None and (cfg.limit is None or cfg.limit > n):
        skipped.append({"path": f"{path.name} from byte {framing_error.offset}",
                        "reason": f"{framing_error.reason}; the rest of the file cannot be read"})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["record", "offset", "shape_chw", "split", "output"])
    writer.writerows(rows)
    fileio.write_text(out / "manifest.csv", buf.getvalue())
    fileio.write_json(out / "summary.json", {
        "source": str(path), "records": n, "size": cfg.size, "jpeg_quality": cfg.jpeg_quality,
        "resampler": "lanczos" if cfg.size else None, "split": list(cfg.split), "split_order": cfg.split_order,
        "seed": cfg.seed, "checksums_verified": cfg.verify, "counts": counts, "skipped": skipped})
    return ExportResult(out, path, counts, skipped)
