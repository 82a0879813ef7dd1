"""export-tfrecord: reads NVIDIA dataset_tool TFRecords without TensorFlow.

The test writes its own files in exactly dataset_tool's format (one file per
resolution level, each record a tf.train.Example with int64 ``shape`` [C,H,W]
and bytes ``data``, CRC-framed) with an encoder written here independently of
the library (bitwise CRC, hand-assembled protobuf), from real FFHQ faces.
"""
from __future__ import annotations

import csv
import json
import os
import struct

import numpy as np
import pytest
from PIL import Image

from patchforensics.cli import main
from patchforensics.core.config import ConfigError
from patchforensics.core.fileio import OutputExistsError
from patchforensics.data.prepare import png_bytes, standardize
from patchforensics.data.tfrecord import (ExportConfig, count_records, crc32c, export_tfrecord, find_levels,
                                     masked_crc32c, parse_example)


# ----------------------------------------------------------------- independent writer
def bitwise_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def length_delimited(field_no: int, payload: bytes) -> bytes:
    return varint(field_no << 3 | 2) + varint(len(payload)) + payload


def example(features: dict[str, tuple[str, list]], packed: bool = True) -> bytes:
    """Serialize a tf.train.Example; values are ('int64'|'bytes'|'float', list)."""
    entries = b""
    for key, (kind, values) in features.items():
        if kind == "bytes":
            feature = length_delimited(1, b"".join(length_delimited(1, v) for v in values))
        elif kind == "float":
            feature = length_delimited(2, length_delimited(1, struct.pack(f"<{len(values)}f", *values)))
        elif packed:
            feature = length_delimited(3, length_delimited(1, b"".join(varint(v) for v in values)))
        else:
            feature = length_delimited(3, b"".join(varint(1 << 3 | 0) + varint(v) for v in values))
        entries += length_delimited(1, length_delimited(1, key.encode()) + length_delimited(2, feature))
    return length_delimited(1, entries)


def frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return (length + struct.pack("<I", mask(bitwise_crc32c(length))) + record
            + struct.pack("<I", mask(bitwise_crc32c(record))))


def write_dataset_tool_levels(folder, images: list[np.ndarray]) -> dict[int, list[np.ndarray]]:
    """dataset_tool layout: ``<name>-rNN.tfrecords`` for every level down to 4x4, each
    level the 2x2 box average of the one above. Returns the pixels per resolution."""
    folder.mkdir(parents=True, exist_ok=True)
    levels = {}
    current = [im.astype(np.float64) for im in images]
    while current[0].shape[0] >= 4:
        res = current[0].shape[0]
        quant = [np.rint(im).clip(0, 255).astype(np.uint8) for im in current]
        levels[res] = quant
        with open(folder / f"faces-r{int(np.log2(res)):02d}.tfrecords", "wb") as f:
            for q in quant:
                chw = q.transpose(2, 0, 1)
                f.write(frame(example({"shape": ("int64", list(chw.shape)), "data": ("bytes", [chw.tobytes()])})))
        current = [(im[0::2, 0::2] + im[1::2, 0::2] + im[0::2, 1::2] + im[1::2, 1::2]) / 4 for im in current]
    return levels


@pytest.fixture(scope="module")
def tfr_dir(tmp_path_factory, faces):
    paths = sorted((faces / "ffhq" / "train").glob("*.png"))[:12]
    images = [np.asarray(Image.open(p).convert("RGB").resize((32, 32), Image.Resampling.LANCZOS)) for p in paths]
    folder = tmp_path_factory.mktemp("tfr") / "ffhq-tfr"
    levels = write_dataset_tool_levels(folder, images)
    return folder, levels


# ----------------------------------------------------------------- tests
def test_crc32c_matches_reference_vectors_and_bitwise_crc():
    assert crc32c(b"123456789") == 0xE3069283          # RFC 3720 / iSCSI check value
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(b"") == 0
    rng = np.random.default_rng(0)
    for n in (1, 8191, 8192, 20011):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32c(data) == bitwise_crc32c(data), n
    assert masked_crc32c(b"abc") == mask(bitwise_crc32c(b"abc"))


def test_parse_example_handles_packed_unpacked_negative_and_float():
    raw = example({"shape": ("int64", [3, 7, -5]), "f": ("float", [0.5, -2.0]), "b": ("bytes", [b"x", b""])},
                  packed=False)
    assert parse_example(raw) == {"shape": [3, 7, -5], "f": [0.5, -2.0], "b": [b"x", b""]}
    assert parse_example(example({"shape": ("int64", [3, 1024, 1024])}))["shape"] == [3, 1024, 1024]
    with pytest.raises(ValueError):
        parse_example(b"\x0a\xff\x01")                   # a length running past the end


def test_example_descriptors_are_tensorflows_wire_format():
    """The Example class built from descriptors serializes exactly as the independent
    hand-assembled encoder above (TensorFlow's field numbers, packed int64 and float)."""
    from patchforensics.data.tfrecord import _example_class

    message = _example_class()()
    message.features.feature["data"].bytes_list.value.append(b"\x00\xff" * 3)
    message.features.feature["f"].float_list.value.extend([0.5, -2.0])
    message.features.feature["shape"].int64_list.value.extend([3, 1024, -5])
    assert message.SerializeToString(deterministic=True) == example(
        {"data": ("bytes", [b"\x00\xff" * 3]), "f": ("float", [0.5, -2.0]), "shape": ("int64", [3, 1024, -5])})


def test_export_highest_level_is_byte_exact(tfr_dir, tmp_path):
    folder, levels = tfr_dir
    assert sorted(find_levels(folder)) == [4, 8, 16, 32]
    result = export_tfrecord(ExportConfig(src=str(folder), out=str(tmp_path / "out"), split=(0.5, 0.25, 0.25)),
                             progress=False)
    assert result.source.name == "faces-r05.tfrecords"
    assert result.counts == {"train": 6, "val": 3, "test": 3} and not result.skipped
    with open(tmp_path / "out" / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["record"]) for r in rows] == list(range(12))
    for row in rows:
        original = levels[32][int(row["record"])]
        out_file = tmp_path / "out" / row["output"]
        assert row["shape_chw"] == "3x32x32" and row["output"].startswith(row["split"] + "/")
        assert np.array_equal(np.asarray(Image.open(out_file)), original)
        assert out_file.read_bytes() == png_bytes(Image.fromarray(original))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["records"] == 12 and summary["checksums_verified"]


def test_export_lower_level_resized_and_ordered_split(tfr_dir, tmp_path):
    folder, levels = tfr_dir
    cfg = ExportConfig(src=str(folder), out=str(tmp_path / "out"), resolution=8, size=16,
                       split=(0.5, 0.25, 0.25), split_order="ordered")
    result = export_tfrecord(cfg, progress=False)
    assert result.source.name == "faces-r03.tfrecords"
    names = {s: sorted(p.name for p in (tmp_path / "out" / s).iterdir()) for s in ("train", "val", "test")}
    assert names == {"train": [f"{i:05d}.png" for i in range(6)], "val": ["00006.png", "00007.png", "00008.png"],
                     "test": ["00009.png", "00010.png", "00011.png"]}
    got = Image.open(tmp_path / "out" / "val" / "00007.png")
    assert got.size == (16, 16)
    assert got.tobytes() == standardize(Image.fromarray(levels[8][7]), 16).tobytes()


def test_corrupt_record_is_skipped_and_truncation_reported(tfr_dir, tmp_path):
    folder, _ = tfr_dir
    data = bytearray((folder / "faces-r04.tfrecords").read_bytes())
    record_size = len(data) // 12
    data[3 * record_size + 200] ^= 0xFF                  # inside record 3's pixels
    bad = tmp_path / "bad.tfrecords"
    bad.write_bytes(bytes(data[: 10 * record_size + 20]))  # record 10 cut inside its data
    assert count_records(bad)[0] == 10
    result = export_tfrecord(ExportConfig(src=str(bad), out=str(tmp_path / "out")), progress=False)
    assert sum(result.counts.values()) == 9
    reasons = [s["reason"] for s in result.skipped]
    assert "checksum" in reasons[0] and "record 3" in result.skipped[0]["path"]
    assert "truncated" in reasons[1] and "cannot be read" in reasons[1]


def test_bad_inputs_fail_before_writing(tfr_dir, tmp_path):
    folder, _ = tfr_dir
    junk = tmp_path / "junk.tfrecords"
    junk.write_bytes(os.urandom(100))
    with pytest.raises(ValueError, match="no readable records"):
        export_tfrecord(ExportConfig(src=str(junk), out=str(tmp_path / "o1")), progress=False)
    assert not (tmp_path / "o1").exists()
    with pytest.raises(ConfigError, match="available: 4, 8, 16, 32"):
        export_tfrecord(ExportConfig(src=str(folder), out=str(tmp_path / "o2"), resolution=64), progress=False)
    (tmp_path / "o3").mkdir()
    (tmp_path / "o3" / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        export_tfrecord(ExportConfig(src=str(folder), out=str(tmp_path / "o3")), progress=False)
    assert (tmp_path / "o3" / "keep.txt").read_text() == "x"


def test_cli(tfr_dir, tmp_path, capsys):
    folder, _ = tfr_dir
    assert main(["export-tfrecord", str(folder), str(tmp_path / "out"), "--resolution", "16", "--size", "8",
                 "--limit", "5"]) == 0
    assert "exported 5 images" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad_option:
        main(["export-tfrecord", str(folder), str(tmp_path / "out2"), "--split", "0.5,0.5"])
    assert bad_option.value.code == 2
    assert main(["export-tfrecord", str(tmp_path / "missing"), str(tmp_path / "out3")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_force_replaces_the_output_instead_of_merging_into_it(tfr_dir, tmp_path):
    from conftest import pngs

    folder, _ = tfr_dir
    out = tmp_path / "out"
    assert main(["export-tfrecord", str(folder), str(out), "--resolution", "16", "--seed", "0"]) == 0
    assert main(["export-tfrecord", str(folder), str(out), "--resolution", "16", "--seed", "1", "--force"]) == 0
    with open(out / "manifest.csv") as f:
        assert pngs(out) == sorted(r["output"] for r in csv.DictReader(f))   # 12, not 12 + stale ones
