"""``export-tfrecord``: NVIDIA ``dataset_tool`` TFRecords → PNG, without TensorFlow.

CelebA-HQ and FFHQ were distributed for the GAN papers as TFRecords written by
NVIDIA's ``dataset_tool.py``: one file per resolution level
(``<name>-r02.tfrecords`` … ``<name>-r10.tfrecords``, ``rNN`` = log2 of the
side), each record a ``tf.train.Example`` with two features, ``shape`` (int64
``[C, H, W]``) and ``data`` (one bytes value, uint8 pixels in C×H×W order).

This module reads that format directly:

* record framing: ``uint64 length`` (little endian), ``uint32`` masked CRC-32C
  of the length bytes, ``length`` data bytes, ``uint32`` masked CRC-32C of the
  data; every checksum is verified (``verify=False`` skips the data checksums);
* a minimal protocol-buffer wire-format decoder for ``Example → Features →
  map<string, Feature> → BytesList / FloatList / Int64List``;
* CRC-32C (Castagnoli) in NumPy, fast enough for 1024² records (see
  :func:`crc32c`).

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

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..core import fileio
from ..core.config import require
from .prepare import SPLITS, assign_splits, png_bytes, standardize

# ---------------------------------------------------------------- CRC-32C
_CASTAGNOLI_REFLECTED = 0x82F63B78


def _byte_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_CASTAGNOLI_REFLECTED), table >> 1)
    return table.astype(np.uint32)


_TABLE = _byte_table()
_TABLE_LIST = [int(v) for v in _TABLE]
#: Below this many bytes the plain byte loop is faster than the lane-parallel one.
_VECTOR_MIN_BYTES = 8192


def _update_loop(register: int, data) -> int:
    table = _TABLE_LIST
    for byte in data:
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


@functools.lru_cache(maxsize=16)
def _zero_feed_tables(n_bytes: int) -> tuple[list[int], ...]:
    """The linear map "feed ``n_bytes`` zero bytes into the CRC register", as
    four 256-entry lookup tables (one per register byte) whose XOR applies it."""
    basis = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    for _ in range(n_bytes):
        basis = _TABLE[basis & 0xFF] ^ (basis >> 8)
    values = np.arange(256)
    tables = []
    for byte_pos in range(4):
        tab = np.zeros(256, dtype=np.uint32)
        for bit in range(8):
            tab[(values >> bit) & 1 == 1] ^= basis[8 * byte_pos + bit]
        tables.append([int(v) for v in tab])
    return tuple(tables)


def _update(register: int, data: bytes | memoryview) -> int:
    """Advance the (un-inverted) CRC-32C register over ``data``.

    CRC is linear over GF(2): the register after ``head + c_1 … c_m`` equals the
    register after ``head`` pushed through ``len(c_i)`` zero bytes, XOR-ed with
    each chunk's own CRC from a zero register. The chunk CRCs are computed for
    all chunks at once (one NumPy lane per chunk), then folded in order with the
    precomputed zero-feed map; ~50 ms for a 1024×1024×3 record instead of ~1 s.
    """
    n = len(data)
    if n < _VECTOR_MIN_BYTES:
        return _update_loop(register, data)
    lanes = int(np.sqrt(10 * n))  # balances NumPy per-step overhead against the per-chunk fold
    chunk = n // lanes
    head = n - lanes * chunk
    register = _update_loop(register, bytes(data[:head]))
    columns = np.frombuffer(data, dtype=np.uint8, offset=head).reshape(lanes, chunk).T.astype(np.uint32)
    state = np.zeros(lanes, dtype=np.uint32)
    for column in columns:  # byte j of every chunk at once
        state = _TABLE[(state ^ column) & 0xFF] ^ (state >> 8)
    t0, t1, t2, t3 = _zero_feed_tables(chunk)
    for chunk_crc in state.tolist():
        register = (t0[register & 0xFF] ^ t1[(register >> 8) & 0xFF] ^ t2[(register >> 16) & 0xFF]
                    ^ t3[register >> 24] ^ chunk_crc)
    return register


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C (Castagnoli, as in iSCSI and TFRecord) of ``data``."""
    return _update(0xFFFFFFFF, data) ^ 0xFFFFFFFF


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
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of one protobuf message; LEN values are views."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _LEN:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError(f"field {number} runs past the end of its message")
            value, pos = buf[pos:pos + n], pos + n
        elif wire in (_FIXED32, _FIXED64):
            n = 4 if wire == _FIXED32 else 8
            value, pos = buf[pos:pos + n], pos + n
        else:
            raise ValueError(f"unsupported wire type {wire} (field {number})")
        yield number, wire, value


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _decode_feature(buf: memoryview) -> list:
    """Values of one ``Feature``: bytes, float or int list (repeated fields may be packed)."""
    values: list = []
    for kind, _, payload in _fields(buf):
        for number, wire, value in _fields(payload):
            if number != 1:
                continue
            if kind == 1:                                    # BytesList
                values.append(bytes(value))
            elif kind == 2:                                  # FloatList
                raw = bytes(value)
                values.extend(struct.unpack(f"<{len(raw) // 4}f", raw))
            elif kind == 3 and wire == _VARINT:              # Int64List, unpacked
                values.append(_int64(value))
            elif kind == 3:                                  # Int64List, packed
                pos = 0
                while pos < len(value):
                    v, pos = _varint(value, pos)
                    values.append(_int64(v))
    return values


def parse_example(data: bytes | memoryview) -> dict[str, list]:
    """Decode a serialized ``tf.train.Example`` to ``{name: list of values}``.

    Raises ``ValueError`` for bytes that are not a well-formed Example.
    """
    features: dict[str, list] = {}
    for number, wire, value in _fields(memoryview(data)):
        if number != 1 or wire != _LEN:           # Example.features
            continue
        for entry_no, entry_wire, entry in _fields(value):
            if entry_no != 1 or entry_wire != _LEN:    # Features.feature (map entry)
                continue
            key, feature = None, memoryview(b"")
            for k, _, v in _fields(entry):
                if k == 1:
                    key = bytes(v).decode("utf-8")
                elif k == 2:
                    feature = v
            if key is None:
                raise ValueError("feature map entry without a key")
            features[key] = _decode_feature(feature)
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
